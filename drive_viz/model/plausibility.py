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
from typing import Any

import numpy as np

OUTSIDE_SHARE = 0.5
CONSTANT_RATIO = 0.1
CONSTANT_STD = 0.005
MIN_CORRELATION = 0.2
MIN_FRAMES = 20
MIN_RECORDED_STD = 0.02
_ADVICE = "the model's input contract (crop, colour, scale, output decode) is probably wrong"


def plausibility_warnings(predicted: Sequence[float] | np.ndarray,
                          recorded: Sequence[float] | np.ndarray | None = None,
                          ) -> list[dict[str, Any]]:
    """Warnings about a run's predictions (N,) against the recorded steering (N,) (NaN or
    None where unknown): a list of ``{"check": "range" | "constant" | "correlation",
    "message": one line, "value": the measured number}``, empty when nothing fired."""
    pred = np.asarray(predicted, np.float64).reshape(-1)
    true = (np.full_like(pred, np.nan) if recorded is None
            else np.asarray(recorded, np.float64).reshape(-1))
    if true.shape != pred.shape:
        raise ValueError(f"predicted {pred.shape} and recorded {true.shape} differ in length")
    finite = pred[np.isfinite(pred)]
    warnings: list[dict[str, Any]] = []
    if len(finite) == 0:
        return warnings
    outside = float(np.mean(np.abs(finite) > 1.0))
    if outside > OUTSIDE_SHARE:
        warnings.append(_warning("range", outside,
                                 f"{outside:.0%} of the predictions lie outside [-1, 1] "
                                 f"(largest {np.max(np.abs(finite)):.3g})"))
    both = np.isfinite(pred) & np.isfinite(true)
    recorded_std = float(np.std(true[both])) if both.sum() >= 2 else 0.0
    varies = both.sum() >= MIN_FRAMES and recorded_std >= MIN_RECORDED_STD
    spread = float(np.std(finite))
    if len(finite) >= MIN_FRAMES:
        limit = CONSTANT_RATIO * recorded_std if varies else CONSTANT_STD
        if spread < limit:
            against = (f" while the recorded steering's is {recorded_std:.3g}" if varies
                       else "")
            warnings.append(_warning("constant", spread,
                                     f"the predictions are nearly constant (standard "
                                     f"deviation {spread:.3g}{against})"))
    if varies and np.std(pred[both]) > 0:
        correlation = float(np.corrcoef(pred[both], true[both])[0, 1])
        if correlation < MIN_CORRELATION:
            kind = "negative: the model steers against the recording" if correlation < 0 \
                else f"below {MIN_CORRELATION}"
            warnings.append(_warning("correlation", correlation,
                                     f"the predictions' correlation with the recorded "
                                     f"steering is {correlation:+.2f} ({kind})"))
    return warnings


def _warning(check: str, value: float, finding: str) -> dict[str, Any]:
    return {"check": check, "value": value,
            "message": f"implausible steering ({check}): {finding}; {_ADVICE}"}


def print_warnings(warnings: Sequence[dict[str, Any]]) -> None:
    """Print each warning on its own console line, ``warning: ...``."""
    for warning in warnings:
        print(f"warning: {warning['message']}")
