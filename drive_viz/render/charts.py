"""The one drawer of line charts as pictures (training curves, evaluation plots).

``line_chart`` returns RGB uint8 (height, width, 3): a title, axis titles, round-valued ticks
(1, 2 or 5 x 10^n steps, ``nice_ticks``) with gridlines, one line per series in ``PALETTE``
order (NaN points leave a gap), dashed series in grey, optional vertical markers, and a legend.
Every chart drawn by drive-viz uses these colours and this layout; the HTML report draws its
interactive plots with uPlot (``drive_viz.report``) in the same palette.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

#: Series colours (RGB), in order.
PALETTE = ((76, 201, 240), (247, 37, 133), (181, 228, 140), (255, 209, 102), (199, 125, 255),
           (240, 176, 48), (60, 220, 90), (255, 60, 220), (23, 200, 215), (255, 255, 255))
DASHED_COLOR = (160, 160, 160)
MARKER_COLOR = (150, 150, 160)
BACKGROUND = (28, 28, 32)
GRID_COLOR = (58, 58, 64)
FRAME_COLOR = (150, 150, 158)
TEXT_COLOR = (225, 225, 230)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def color(index: int) -> tuple[int, int, int]:
    """The ``index``-th series colour (RGB)."""
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values covering [low, high]: multiples of a step of 1, 2 or
    5 x 10^n, from the largest multiple <= low to the smallest >= high."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return np.round(np.arange(first, last + 1) * step, 12)


def _tick_text(value: float) -> str:
    return f"{value:.6g}"


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.42,
          rgb: tuple[int, int, int] = TEXT_COLOR) -> None:
    cv2.putText(canvas, text, (x, y), FONT, scale, rgb, 1, cv2.LINE_AA)


def line_chart(title: str, x: Sequence[float], series: Mapping[str, Sequence[float]], *,
               x_title: str, y_title: str, y_range: tuple[float, float] | None = None,
               x_labels: Sequence[str] | None = None, dashed: Sequence[str] = (),
               log_y: bool = False, markers: Mapping[float, str] | None = None,
               size: tuple[int, int] = (640, 420)) -> np.ndarray:
    """A line chart as RGB uint8 (height, width, 3), ``size`` = (width, height).

    ``x``: (n,) x values; ``series[name]``: (n,) y values (NaN/None = gap); ``y_range``:
    fixed y limits (default: round limits around the data); ``x_labels``: text under each x
    instead of numeric ticks; ``dashed``: series drawn dashed in grey (references such as a
    random order); ``log_y``: logarithmic y axis (values must be positive); ``markers``:
    vertical lines at x values with a label each.
    """
    width, height = size
    left, right, top = 84, 190, 34
    bottom = 70 if x_labels else 56
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    _text(canvas, title, left, 22, 0.55)
    xs = np.asarray(x, np.float64)
    ys = {name: np.array([np.nan if v is None else v for v in values], np.float64)
          for name, values in series.items()}
    if log_y:
        ys = {name: np.log10(np.where(v > 0, v, np.nan)) for name, v in ys.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in ys.values()] + [np.zeros(0)])
    if y_range is not None:
        y0, y1 = (math.log10(y_range[0]), math.log10(y_range[1])) if log_y else y_range
        y_ticks = nice_ticks(y0, y1) if not log_y else np.arange(math.floor(y0),
                                                                 math.ceil(y1) + 1.0)
        y_ticks = y_ticks[(y_ticks >= y0 - 1e-9) & (y_ticks <= y1 + 1e-9)]
    elif log_y:
        low = float(finite.min()) if len(finite) else 0.0
        high = float(finite.max()) if len(finite) else 1.0
        y0, y1 = math.floor(low), max(math.ceil(high), math.floor(low) + 1)
        y_ticks = np.arange(y0, y1 + 1.0)
    else:
        low = float(finite.min()) if len(finite) else 0.0
        high = float(finite.max()) if len(finite) else 1.0
        y_ticks = nice_ticks(low, high)
        y0, y1 = float(y_ticks[0]), float(y_ticks[-1])
    x0, x1 = float(xs.min()), float(xs.max())
    x_ticks = xs if x_labels else nice_ticks(x0, x1)
    if not x_labels:
        x0, x1 = min(x0, float(x_ticks[0])), max(x1, float(x_ticks[-1]))
    x_span, y_span = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    plot_right, plot_bottom = width - right, height - bottom

    def point(xv: float, yv: float) -> tuple[int, int]:
        px = left + (xv - x0) / x_span * (plot_right - left)
        py = plot_bottom - (yv - y0) / y_span * (plot_bottom - top)
        return int(round(px)), int(round(py))

    for value in y_ticks:
        _, py = point(x0, float(value))
        cv2.line(canvas, (left, py), (plot_right, py), GRID_COLOR, 1)
        label = _tick_text(10.0 ** value) if log_y else _tick_text(float(value))
        label_width = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
        _text(canvas, label, left - 6 - label_width, py + 4, 0.4)
    for k, value in enumerate(x_ticks):
        px, _ = point(float(value), y0)
        cv2.line(canvas, (px, top), (px, plot_bottom), GRID_COLOR, 1)
        label = x_labels[k] if x_labels else _tick_text(float(value))
        _text(canvas, label, px - 4 * len(label), plot_bottom + 16 + (12 * (k % 2) if x_labels
                                                                      else 0), 0.38)
    cv2.rectangle(canvas, (left, top), (plot_right, plot_bottom), FRAME_COLOR, 1)
    for value, label in (markers or {}).items():
        px, _ = point(float(value), y0)
        cv2.line(canvas, (px, top), (px, plot_bottom), MARKER_COLOR, 1)
        _text(canvas, label, min(px + 4, plot_right - 8 * len(label)), top + 14, 0.38,
              MARKER_COLOR)
    _text(canvas, x_title, left + (plot_right - left) // 2 - 4 * len(x_title), height - 10, 0.45)
    y_label = np.zeros((24, 8 * len(y_title) + 8, 3), np.uint8)
    y_label[:] = BACKGROUND
    _text(y_label, y_title, 2, 17, 0.45)
    rotated = cv2.rotate(y_label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y_top = max(0, top + (plot_bottom - top - rotated.shape[0]) // 2)
    visible = min(rotated.shape[0], height - y_top)
    canvas[y_top:y_top + visible, 4:4 + rotated.shape[1]] = rotated[:visible]
    for index, (name, values) in enumerate(ys.items()):
        rgb = DASHED_COLOR if name in dashed else color(index)
        clipped = np.clip(values, y0, y1)
        run: list[tuple[int, int]] = []
        runs = [run]
        for xv, yv in zip(xs, clipped, strict=True):
            if np.isfinite(yv):
                run.append(point(float(xv), float(yv)))
            elif run:
                run = []
                runs.append(run)
        for points in runs:
            for a, b in zip(points, points[1:], strict=False):
                if name in dashed:
                    for t in np.linspace(0, 1, 8)[::2]:
                        start = np.add(a, np.subtract(b, a) * t).astype(int)
                        end = np.add(a, np.subtract(b, a) * (t + 1 / 7)).astype(int)
                        cv2.line(canvas, tuple(start.tolist()), tuple(end.tolist()), rgb, 2,
                                 cv2.LINE_AA)
                else:
                    cv2.line(canvas, a, b, rgb, 2, cv2.LINE_AA)
            for p in points:
                cv2.circle(canvas, p, 3, rgb, -1, cv2.LINE_AA)
        legend_y = top + 14 + 18 * index
        cv2.line(canvas, (plot_right + 10, legend_y - 4), (plot_right + 30, legend_y - 4), rgb, 2)
        _text(canvas, name[:24], plot_right + 36, legend_y, 0.4, rgb)
    return canvas
