"""Is a run's steering plausible? Warnings that a model's input contract is probably wrong.

A model fed frames it was not trained on (wrong colour order, wrong scale, wrong crop) still
predicts numbers, and its maps still look like maps. Over a run, three checks catch most of
it (``plausibility_warnings``); each warning names its check:

- ``range``: more than ``OUTSIDE_SHARE`` of the predictions lie outside [-1, 1], the range
  of normalized steering;
- ``constant``: the predictions barely move: their standard deviation is below
  ``CONSTANT_RATIO`` times the recorded steering's (or below ``CONSTANT_STD`` when there is no
  recorded steering that varies);
- ``correlation``: the Pearson correlation with the recorded steering is below
  ``MIN_CORRELATION`` (negative: the model steers against the driver), computed only with at
  least ``MIN_FRAMES`` frames of both and recorded steering that varies (standard deviation at
  least ``MIN_RECORDED_STD``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OUTSIDE_SHARE = 0.5
CONSTANT_RATIO = 0.1
CONSTANT_STD = 0.005
MIN_CORRELATION = 0.2
MIN_FRAMES = 20
MIN_RECORDED_STD = 0.02
_ADVICE = "the model's input contract (crop, colour, scale, output decode) is probably wrong"


@dataclass(frozen=True)
class SteeringMoments:
    """What the checks read of a run: ``predictions`` finite predictions, ``outside`` of them
    with |p| > 1, ``largest`` max |p|, ``spread`` their standard deviation; ``paired`` frames
    with both a prediction and a recorded value, the recorded steering's standard deviation
    over them (``recorded_std``) and the Pearson ``correlation`` (None when either side is
    constant). Computable from running sums, so a run need not keep its rows."""

    predictions: int
    outside: int
    largest: float
    spread: float
    paired: int
    recorded_std: float
    correlation: float | None


def steering_moments(predicted: Sequence[float] | np.ndarray,
                     recorded: Sequence[float] | np.ndarray | None = None) -> SteeringMoments:
    """``SteeringMoments`` of predictions (N,) against the recorded steering (N,) (NaN or None
    where unknown)."""
    pred = np.asarray(predicted, np.float64).reshape(-1)
    true = (np.full_like(pred, np.nan) if recorded is None
            else np.asarray(recorded, np.float64).reshape(-1))
    if true.shape != pred.shape:
        raise ValueError(f"predicted {pred.shape} and recorded {true.shape} differ in length")
    finite = pred[np.isfinite(pred)]
    both = np.isfinite(pred) & np.isfinite(true)
    correlation = None
    if both.sum() >= 2 and np.std(pred[both]) > 0 and np.std(true[both]) > 0:
        correlation = float(np.corrcoef(pred[both], true[both])[0, 1])
    return SteeringMoments(
        predictions=len(finite), outside=int(np.sum(np.abs(finite) > 1.0)),
        largest=float(np.max(np.abs(finite))) if len(finite) else 0.0,
        spread=float(np.std(finite)) if len(finite) else 0.0, paired=int(both.sum()),
        recorded_std=float(np.std(true[both])) if both.sum() >= 2 else 0.0,
        correlation=correlation)


def plausibility_warnings(predicted: Sequence[float] | np.ndarray,
                          recorded: Sequence[float] | np.ndarray | None = None,
                          ) -> list[dict[str, Any]]:
    """Warnings about a run's predictions (N,) against the recorded steering (N,) (NaN or
    None where unknown): see ``judge``."""
    return judge(steering_moments(predicted, recorded))


def judge(moments: SteeringMoments) -> list[dict[str, Any]]:
    """The checks on a run's ``moments``: a list of ``{"check": "range" | "constant" |
    "correlation", "message": one line, "value": the measured number}``, empty when nothing
    fired."""
    m = moments
    warnings: list[dict[str, Any]] = []
    if m.predictions == 0:
        return warnings
    outside = m.outside / m.predictions
    if outside > OUTSIDE_SHARE:
        warnings.append(_warning("range", outside,
                                 f"{outside:.0%} of the predictions lie outside [-1, 1] "
                                 f"(largest {m.largest:.3g})"))
    varies = m.paired >= MIN_FRAMES and m.recorded_std >= MIN_RECORDED_STD
    if m.predictions >= MIN_FRAMES:
        limit = CONSTANT_RATIO * m.recorded_std if varies else CONSTANT_STD
        if m.spread < limit:
            against = (f" while the recorded steering's is {m.recorded_std:.3g}" if varies
                       else "")
            warnings.append(_warning("constant", m.spread,
                                     f"the predictions are nearly constant (standard "
                                     f"deviation {m.spread:.3g}{against})"))
    if varies and m.correlation is not None and m.correlation < MIN_CORRELATION:
        kind = "negative: the model steers against the recording" if m.correlation < 0 \
            else f"below {MIN_CORRELATION}"
        warnings.append(_warning("correlation", m.correlation,
                                 f"the predictions' correlation with the recorded "
                                 f"steering is {m.correlation:+.2f} ({kind})"))
    return warnings


def _warning(check: str, value: float, finding: str) -> dict[str, Any]:
    return {"check": check, "value": value,
            "message": f"implausible steering ({check}): {finding}; {_ADVICE}"}


def print_warnings(warnings: Sequence[dict[str, Any]]) -> None:
    """Print each warning on its own console line, ``warning: ...``."""
    for warning in warnings:
        print(f"warning: {warning['message']}")
