"""The bootstrap interval of a MAE difference covers the truth about as often as it claims."""

from __future__ import annotations

import numpy as np

from drive_viz.runs.pairs import mae_difference_interval


def _ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    noise = rng.standard_normal(n)
    out = np.empty(n)
    out[0] = noise[0]
    for k in range(1, n):
        out[k] = rho * out[k - 1] + np.sqrt(1 - rho * rho) * noise[k]
    return out


def test_block_interval_covers_the_true_difference_on_correlated_errors() -> None:
    rng = np.random.default_rng(0)
    true_difference = 0.01
    covered = naive_covered = 0
    trials = 120
    for trial in range(trials):
        # Error differences that persist over ~20 frames, as on a drive (AR(1), rho 0.95).
        diff = true_difference + 0.05 * _ar1(rng, 600, 0.95)
        error_b = np.abs(rng.normal(0.05, 0.01, 600))
        error_a = error_b + diff
        mean, low, high = mae_difference_interval(error_a, error_b, block=40, samples=400,
                                                  seed=trial)
        assert low <= mean <= high
        covered += low <= true_difference <= high
        _, low1, high1 = mae_difference_interval(error_a, error_b, block=1, samples=400,
                                                 seed=trial)
        naive_covered += low1 <= true_difference <= high1
    # Blocks keep the nominal 95% roughly; resampling single frames is far too confident.
    assert covered / trials > 0.8
    assert naive_covered / trials < 0.6


def test_interval_of_identical_models_is_zero_and_nan_frames_are_ignored() -> None:
    errors = np.abs(np.random.default_rng(1).normal(size=100))
    assert mae_difference_interval(errors, errors, block=10) == (0.0, 0.0, 0.0)
    with_gap = errors.copy()
    with_gap[:10] = np.nan
    mean, _, _ = mae_difference_interval(with_gap, errors * 0, block=10)
    assert mean == errors[10:].mean()
