"""The one chart drawer: round ticks, series where their values say, axis titles drawn."""

from __future__ import annotations

import numpy as np
import pytest

from drive_viz.render.charts import BACKGROUND, DASHED_COLOR, color, line_chart, nice_ticks


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.0, 0.37, [0.0, 0.1, 0.2, 0.3, 0.4]),
    (-1.0, 1.0, [-1.0, -0.5, 0.0, 0.5, 1.0]),
    (1.0, 30.0, [0.0, 10.0, 20.0, 30.0]),
    # raw step 0.00003 -> 0.00005 (the first of 1, 2, 5 x 10^-5 that is at least as large)
    (0.00006, 0.00021, [0.00005, 0.0001, 0.00015, 0.0002, 0.00025]),
])
def test_nice_ticks_are_round_steps_covering_the_range(low, high, expected) -> None:
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9
    assert ticks[0] <= low and ticks[-1] >= high


def _rows_of(picture: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Rows where ``rgb`` appears inside the plot area (columns 84..410; the legend is right
    of it)."""
    area = picture[:, 84:410].astype(int)
    return np.flatnonzero((np.abs(area - rgb).sum(axis=2) < 10).any(axis=1))


def test_series_are_drawn_at_their_values_and_dashed_ones_in_grey() -> None:
    x = np.arange(5.0)
    picture = line_chart("t", x, {"high": [0.75] * 5, "low": [0.25] * 5, "ref": [0.5] * 5},
                         x_title="step", y_title="value", y_range=(0.0, 1.0), dashed=["ref"],
                         size=(600, 400))
    assert picture.shape == (400, 600, 3) and picture.dtype == np.uint8
    high, low, ref = _rows_of(picture, color(0)), _rows_of(picture, color(1)), _rows_of(
        picture, DASHED_COLOR)
    # Plot area rows 34..344 (top 34, bottom 56): 0.75 -> 111.5, 0.25 -> 266.5, 0.5 -> 189.
    assert abs(np.median(high) - 111.5) < 4 and abs(np.median(low) - 266.5) < 4
    assert any(abs(r - 189) < 3 for r in ref)
    # The y-axis title is drawn rotated at the left edge, the x title under the plot.
    assert (np.abs(picture[100:300, 4:28].astype(int) - BACKGROUND).sum(axis=2) > 60).any()
    assert (np.abs(picture[360:400, 250:450].astype(int) - BACKGROUND).sum(axis=2) > 60).any()


def test_nan_leaves_a_gap() -> None:
    x = np.arange(7.0)
    values = [0.5, 0.5, 0.5, np.nan, 0.5, 0.5, 0.5]
    picture = line_chart("gap", x, {"s": values}, x_title="x", y_title="y",
                         y_range=(0.0, 1.0), size=(600, 400))
    row = picture[189, 84:410].astype(int)
    on = (np.abs(row - color(0)).sum(axis=1) < 10)
    # x = 3 is at 84 + 3/6 * 326 = 247: no line there, but on both sides.
    assert not on[247 - 84 - 10:247 - 84 + 10].any()
    assert on[:60].any() and on[-60:].any()
