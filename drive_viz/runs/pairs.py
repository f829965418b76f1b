"""Which of two models steers better on a drive, with its uncertainty.

Frames of a drive are not independent: an error lasts as long as the situation that causes
it. ``mae_difference_interval`` therefore resamples whole blocks of consecutive frames (the
circular block bootstrap, Politis & Romano 1992) rather than single frames, which would give
intervals far too narrow on a drive where the models differ on a few long moments.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


def mae_difference_interval(error_a: np.ndarray, error_b: np.ndarray, block: int,
                            samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE,
                            seed: int = 0) -> tuple[float, float, float]:
    """MAE(A) - MAE(B) over the frames where both errors are finite, and its ``confidence``
    percentile interval from ``samples`` circular block-bootstrap resamples of ``block``
    consecutive frames. ``error_a``, ``error_b``: (N,) absolute errors in drive order.
    Returns (difference, low, high); NaNs without any shared frame."""
    diff = np.asarray(error_a, np.float64) - np.asarray(error_b, np.float64)
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    block = int(min(max(block, 1), n))
    blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(samples, blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(samples, -1)[:, :n] % n
    means = diff[index].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)
