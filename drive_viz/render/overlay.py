"""The one renderer: composes a 1280x720 annotated frame for the replay video and the live window.

Layout (pixels, at the default 1280x720)::

    +-------------------------------------------+-------------------------+
    | main panel: camera frame, the layout        | input view (66x200, x2) |
    | method's heat over the crop box the network | + the same heat         |
    | sees (InputContract.crop_box)               |-------------------------|
    |                                             | small panels: the other |
    |                                             | methods on the input    |
    +---------------------------+-----------+-----+-------------------------+
    | first conv activations    | steering  | frame, time, recorded,       |
    |                           | gauge     | predicted, error             |
    +---------------------------+-----------+------------------------------+
    | timeline: recorded (green) vs predicted (magenta) steering, cursor    |
    +-----------------------------------------------------------------------+

Heat is drawn as described in ``drive_viz.render.colormap`` (inferno, alpha = 0.6 * heat).
Given a frame's blobs (``replay --causal-blobs``), their outlines are drawn over the layout
heat on the main panel and the input view: causal blobs ``CAUSAL_COLOR`` 2 px, the others
``DIM_TEXT`` 1 px, with a legend above the input view.
A panel whose map is zero everywhere on the frame says NO_EVIDENCE in its top-right corner
(for a regression target that is a real answer: nothing pushes the output that way).
Steering is in [-1, 1], positive = right: the gauge's needles tilt right for positive steer and
the timeline plots positive steer above its centre line. A smaller ``size`` (e.g. 640x360 for
the live window) scales the whole layout.

Cost (a ~2 ms frame at 1280x720): static parts (panels, labels, gauge scale, the recorded
steering curve) are drawn once; the predicted curve is extended incrementally on a persistent
strip layer; each ``draw`` copies the background and pastes the frame's content. Heat is
quantized to uint8 at the map's 66x200 size and blended with lookup tables (no float image),
images are shrunk bilinearly (after exact 2x area halvings) and enlarged by whole factors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drive_viz.model.contract import DAVE2_CONTRACT, InputContract
from drive_viz.model.preprocess import input_to_rgb
from drive_viz.render.colormap import DEFAULT_OPACITY, blend_levels, heat_levels

FRAME_SIZE = (1280, 720)
BACKGROUND = (24, 24, 28)
PANEL_BACKGROUND = (40, 40, 46)
TEXT = (235, 235, 235)
DIM_TEXT = (150, 150, 160)
RECORDED_COLOR = (60, 220, 90)
PREDICTED_COLOR = (255, 60, 220)
CURSOR_COLOR = (255, 255, 255)
#: One colour per model in the compare layout (the first is the replay's predicted colour).
MODEL_COLORS = (PREDICTED_COLOR, (76, 201, 240), (255, 209, 102), (181, 228, 140))
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Shown over a panel whose map is zero everywhere on this frame.
NO_EVIDENCE = "no evidence for this target"
NO_EVIDENCE_BACKGROUND = (70, 70, 84)
#: Outline of a causal blob (cyan); other blobs are outlined in DIM_TEXT.
CAUSAL_COLOR = (0, 255, 255)
#: Steering difference below which the gauge's two labels are pushed apart.
NEEDLE_LABEL_GAP = 0.3


@dataclass(frozen=True)
class Box:
    """A rectangle in canvas pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def view(self, canvas: np.ndarray) -> np.ndarray:
        return canvas[self.y:self.y + self.h, self.x:self.x + self.w]

    def scaled(self, sx: float, sy: float) -> Box:
        """This box in a canvas scaled by ``sx`` horizontally and ``sy`` vertically."""
        return Box(round(self.x * sx), round(self.y * sy), max(1, round(self.w * sx)),
                   max(1, round(self.h * sy)))


TIMELINE_SPANS = (0.1, 0.2, 0.25, 0.5, 1.0)


class Timeline:
    """Recorded vs predicted steering over a replay, (n,) positions in replay order.

    ``recorded`` is known up front; ``predictions`` (series, n) (one series per model, 1 but
    for compare; ``predicted`` is the first) start as NaN and are filled with ``set`` as
    frames are replayed (NaN stays for skipped frames).
    """

    def __init__(self, recorded: Sequence[float] | np.ndarray, series: int = 1) -> None:
        self.recorded = np.asarray(recorded, dtype=np.float64)
        self.predictions = np.full((series, len(self.recorded)), np.nan)
        self.predicted = self.predictions[0]
        finite = np.abs(self.recorded[np.isfinite(self.recorded)])
        peak = float(finite.max()) if len(finite) else 0.0
        #: The steering at the strip's top (+) and bottom (-) edges: the smallest of
        #: TIMELINE_SPANS that holds the whole recorded drive, so gentle drives stay readable.
        self.span = next((s for s in TIMELINE_SPANS if peak <= s), 1.0)

    def __len__(self) -> int:
        return len(self.recorded)

    def set(self, position: int, predicted: float, series: int = 0) -> None:
        self.predictions[series, position] = predicted


class OverlayRenderer:
    """Draw one annotated frame: ``draw(...) -> RGB uint8 (height, width, 3)``, by default
    (720, 1280, 3).

    ``layout`` names the method shown large over the camera frame; the other ``methods`` get
    small panels (up to two). ``timeline`` is optional (the live window has none): when given,
    ``draw(position=i)`` marks replay position ``i`` and extends the predicted curve.
    ``size`` (width, height) in pixels scales the 1280x720 layout (e.g. (640, 360)).

    The compare layout (``panels``: (label, contract) of 2 to 4 models; draw with
    ``draw_compare``): the camera frame once per model, side by side (2) or in a 2x2 grid,
    each with that model's ``layout`` heat through its own contract, its prediction and error;
    below, one timeline strip with the recorded steering and every model's (``timeline`` with
    one series per model, colours ``MODEL_COLORS``).
    """

    def __init__(self, layout: str, methods: Sequence[str], *,
                 contract: InputContract = DAVE2_CONTRACT,
                 timeline: Timeline | None = None,
                 opacity: float = DEFAULT_OPACITY,
                 title: str = "",
                 size: tuple[int, int] = FRAME_SIZE,
                 panels: Sequence[tuple[str, InputContract]] | None = None) -> None:
        if layout not in methods:
            raise ValueError(f"layout {layout!r} is not one of the methods {list(methods)}")
        width, height = size
        if width < 160 or height < 90:
            raise ValueError(f"canvas size {width}x{height} is below the minimum 160x90")
        self.layout = layout
        self.small_methods = [m for m in methods if m != layout][:2]
        self.contract = contract
        self.timeline = timeline
        self.opacity = opacity
        self.size = (width, height)
        sx, sy = width / FRAME_SIZE[0], height / FRAME_SIZE[1]
        self._ui_scale = min(sx, sy)
        self.main = Box(8, 8, 840, 472).scaled(sx, sy)
        self.input_panel = Box(864, 28, 400, 132).scaled(sx, sy)
        self.small_panels = [Box(864, 188 + k * 160, 400, 132).scaled(sx, sy)
                             for k in range(len(self.small_methods))]
        self.grid = Box(8, 500, 600, 128).scaled(sx, sy)
        self.gauge = Box(620, 492, 280, 144).scaled(sx, sy)
        self.text = Box(912, 492, 360, 144).scaled(sx, sy)
        self.strip = Box(8, 648, FRAME_SIZE[0] - 16, 64).scaled(sx, sy)
        self.gauge_center = (self.gauge.x + self.gauge.w // 2,
                             self.gauge.y + self.gauge.h - self._px(16))
        self.gauge_radius = self._px(112)
        self.panels = list(panels or [])
        if self.panels:
            if not 2 <= len(self.panels) <= len(MODEL_COLORS):
                raise ValueError(f"the compare layout takes 2 to {len(MODEL_COLORS)} panels, "
                                 f"not {len(self.panels)}")
            rows = 1 if len(self.panels) == 2 else 2
            cell_h = (620 - 8 * (rows - 1)) // rows
            self.panel_boxes = [Box(8 + (k % 2) * 636, 8 + (k // 2) * (cell_h + 8), 628, cell_h)
                                .scaled(sx, sy) for k in range(len(self.panels))]
            self._background = self._draw_compare_background(title)
        else:
            self._background = self._draw_background(title)
        self._strip_layer = self.strip.view(self._background).copy()
        self._drawn_until = [-1] * (len(self.panels) or 1)

    def _px(self, length: float) -> int:
        """A length of the 1280x720 layout in this canvas's pixels (at least 1)."""
        return max(1, round(length * self._ui_scale))

    def _label(self, canvas: np.ndarray, text: str, x: int, y: int,
               color: tuple[int, int, int] = TEXT) -> None:
        cv2.putText(canvas, text, (x, y), FONT, 0.5 * self._ui_scale, color, 1, cv2.LINE_AA)

    # ---- static parts -------------------------------------------------------------------
    def _draw_background(self, title: str) -> np.ndarray:
        width, height = self.size
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = BACKGROUND
        for box in (self.main, self.input_panel, *self.small_panels, self.grid, self.strip):
            box.view(canvas)[:] = PANEL_BACKGROUND
        gap = self._px(6)
        self._label(canvas, f"input view: {self.layout}", self.input_panel.x,
                    self.input_panel.y - gap)
        for method, box in zip(self.small_methods, self.small_panels, strict=True):
            self._label(canvas, method, box.x, box.y - gap)
        self._label(canvas, "first conv activations", self.grid.x, self.grid.y - gap)
        if title:
            self._label(canvas, title[:48], self.text.x, self.text.y + self.text.h - 2, DIM_TEXT)
        cx, cy = self.gauge_center
        r = self.gauge_radius
        thick = self._px(2)
        cv2.ellipse(canvas, (cx, cy), (r, r), 0, 180, 360, DIM_TEXT, thick, cv2.LINE_AA)
        for steer in (-1.0, -0.5, 0.0, 0.5, 1.0):
            x0, y0 = self._needle_point(steer, r - self._px(10))
            x1, y1 = self._needle_point(steer, r)
            cv2.line(canvas, (x0, y0), (x1, y1), DIM_TEXT, thick, cv2.LINE_AA)
        self._label(canvas, "L", cx - r - self._px(4), cy + self._px(14), DIM_TEXT)
        self._label(canvas, "R", cx + r - self._px(6), cy + self._px(14), DIM_TEXT)
        self._label(canvas, "steering: recorded", self.strip.x, self.strip.y - gap,
                    RECORDED_COLOR)
        self._label(canvas, "predicted", self.strip.x + self._px(180), self.strip.y - gap,
                    PREDICTED_COLOR)
        if self.timeline is not None:
            self._label(canvas, f"edges: +/-{self.timeline.span:g}", self.strip.x
                        + self._px(300), self.strip.y - gap, DIM_TEXT)
        self._draw_strip_axis(canvas)
        return canvas

    def _draw_compare_background(self, title: str) -> np.ndarray:
        width, height = self.size
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = BACKGROUND
        for box in (*self.panel_boxes, self.strip):
            box.view(canvas)[:] = PANEL_BACKGROUND
        gap = self._px(6)
        self._label(canvas, "steering: recorded", self.strip.x, self.strip.y - gap,
                    RECORDED_COLOR)
        x = self.strip.x + self._px(170)
        for (label, _), color in zip(self.panels, MODEL_COLORS, strict=False):
            self._label(canvas, label[:24], x, self.strip.y - gap, color)
            x += self._px(16 + 9 * min(len(label), 24))
        if title:
            self._label(canvas, title[:48], self.strip.x + self.strip.w - self._px(420),
                        self.strip.y - gap, DIM_TEXT)
        self._draw_strip_axis(canvas)
        return canvas

    def _draw_strip_axis(self, canvas: np.ndarray) -> None:
        """The timeline strip's zero line and the whole recorded steering (drawn once, in the
        background every frame starts from)."""
        mid = self.strip.y + self.strip.h // 2
        cv2.line(canvas, (self.strip.x, mid), (self.strip.x + self.strip.w - 1, mid),
                 (70, 70, 80), 1)
        if self.timeline is not None and len(self.timeline):
            points = self._strip_points(np.arange(len(self.timeline)), self.timeline.recorded)
            for run in _finite_runs(points):
                cv2.polylines(canvas, [run], False, RECORDED_COLOR, 1, cv2.LINE_AA)

    def _needle_point(self, steer: float, length: float) -> tuple[int, int]:
        """Tip of a gauge needle: steer -1 points left, 0 up, +1 right."""
        angle = np.clip(steer, -1.0, 1.0) * np.pi / 2
        cx, cy = self.gauge_center
        return int(round(cx + length * np.sin(angle))), int(round(cy - length * np.cos(angle)))

    def strip_xy(self, position: int, steer: float) -> tuple[int, int]:
        """Canvas pixel of timeline ``position`` at steering ``steer`` (+span at the top edge)."""
        points = self._strip_points(np.array([position]), np.array([steer]))
        return int(points[0, 0]), int(points[0, 1])

    def _strip_points(self, positions: np.ndarray, steer: np.ndarray) -> np.ndarray:
        count = max(len(self.timeline) if self.timeline is not None else 1, 2)
        x = self.strip.x + positions * (self.strip.w - 1) / (count - 1)
        span = self.timeline.span if self.timeline is not None else 1.0
        half = (self.strip.h - 4) / 2
        y = self.strip.y + self.strip.h / 2 - np.clip(steer / span, -1.0, 1.0) * half
        return np.stack([x, y], axis=1)

    # ---- per frame ----------------------------------------------------------------------
    def draw(self, frame_rgb: np.ndarray, input_yuv: np.ndarray, heat: Mapping[str, np.ndarray],
             grid: np.ndarray | None, steer_true: float, steer_pred: float, frame: int,
             t: float, position: int | None = None,
             blobs: Sequence[tuple[np.ndarray, bool]] | None = None) -> np.ndarray:
        """One annotated frame, RGB uint8 (720, 1280, 3).

        ``frame_rgb``: camera frame RGB uint8 (H, W, 3); ``input_yuv``: the network input
        (H, W, 3) float32 (the model's input, shown through ``input_to_rgb`` and the contract);
        ``heat[method]``: display heat (H, W) float in [0, 1]
        (``RunningScale.normalize``); ``grid``: activation grid (h, w) float in [0, 1] or None;
        steering in [-1, 1] (NaN ``steer_true`` when unknown); ``frame``: frame number;
        ``t``: time in seconds; ``position``: index into the timeline; ``blobs``: the layout
        map's blobs as (mask (H, W) bool over the network input, causal), outlined on the main
        panel and the input view (None: no blobs, no legend).
        Returns a new array the caller owns.
        """
        canvas = self._background.copy()
        levels = {m: heat_levels(heat[m]) for m in (self.layout, *self.small_methods)
                  if m in heat}
        crop = self._draw_main(canvas, frame_rgb, levels[self.layout])
        empty = {m for m in levels if not np.any(heat[m])}
        if self.layout in empty:
            self._no_evidence(canvas, crop)
        view = input_to_rgb(input_yuv, self.contract)
        for method, box in ((self.layout, self.input_panel),
                            *zip(self.small_methods, self.small_panels, strict=True)):
            if method in levels:
                pasted = _paste_fit(canvas, box, blend_levels(view, levels[method],
                                                              self.opacity))
                if method in empty:
                    self._no_evidence(canvas, box)
                if method == self.layout and blobs is not None:
                    self._draw_blobs(canvas, blobs, (crop, pasted))
        if grid is not None:
            _paste_fit(canvas, self.grid, cv2.cvtColor(heat_levels(grid), cv2.COLOR_GRAY2RGB))
        self._draw_gauge(canvas, steer_true, steer_pred)
        self._draw_text(canvas, steer_true, steer_pred, frame, t)
        if self.timeline is not None and position is not None:
            self._draw_strip(canvas, position, steer_pred)
        return canvas

    def draw_compare(self, frame_rgb: np.ndarray, heat: Sequence[np.ndarray],
                     steer_pred: Sequence[float], steer_true: float, frame: int, t: float,
                     position: int | None = None) -> np.ndarray:
        """One annotated frame of the compare layout, RGB uint8 (height, width, 3).

        ``frame_rgb``: camera frame RGB uint8 (H, W, 3); ``heat[k]``: model k's display heat
        of the ``layout`` method over its own input (rows, columns) float in [0, 1];
        ``steer_pred[k]``: its prediction; ``steer_true``: recorded steering (NaN: unknown).
        """
        canvas = self._background.copy()
        for k, ((label, contract), box) in enumerate(zip(self.panels, self.panel_boxes,
                                                         strict=True)):
            color = MODEL_COLORS[k]
            header = self._px(34)
            image = Box(box.x, box.y + header, box.w, max(1, box.h - header))
            crop = self._draw_main(canvas, frame_rgb, heat_levels(heat[k]), image, contract)
            if not np.any(heat[k]):
                self._no_evidence(canvas, crop)
            error = abs(steer_pred[k] - steer_true)
            text = f"{label[:20]}  pred {steer_pred[k]:+.3f}  error {error:.3f}"
            cv2.putText(canvas, text, (box.x + self._px(8), box.y + self._px(24)), FONT,
                        0.6 * self._ui_scale, color, self._px(2), cv2.LINE_AA)
        if self.timeline is not None and position is not None:
            for k, steer in enumerate(steer_pred):
                self._draw_strip(canvas, position, steer, series=k)
        self._label(canvas, f"frame {frame}  t {t:.2f} s  recorded {steer_true:+.3f}",
                    self.strip.x + self.strip.w - self._px(330), self.strip.y + self._px(14),
                    TEXT)
        return canvas

    def _draw_blobs(self, canvas: np.ndarray, blobs: Sequence[tuple[np.ndarray, bool]],
                    boxes: Sequence[Box]) -> None:
        """Outline each blob (mask over the network input) in every box showing the network
        input (canvas pixels), pixel centres mapped as the heat's bilinear stretch maps them;
        causal ones last, so they stay on top; then the legend."""
        for mask, causal in sorted(blobs, key=lambda blob: blob[1]):
            contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            height, width = np.shape(mask)
            color, thick = (CAUSAL_COLOR, self._px(2)) if causal else (DIM_TEXT, 1)
            for box in boxes:
                sx, sy = box.w / width, box.h / height
                placed = [np.round(((c.reshape(-1, 2) + 0.5) * (sx, sy) - 0.5 + (box.x, box.y))
                                   * 4).astype(np.int32) for c in contours]
                cv2.polylines(canvas, placed, True, color, thick, cv2.LINE_AA, shift=2)
        gap = self._px(6)
        right = self.input_panel.x + self.input_panel.w
        for text, color in (("other", DIM_TEXT), ("causal blobs", CAUSAL_COLOR)):
            width = cv2.getTextSize(text, FONT, 0.5 * self._ui_scale, 1)[0][0]
            right -= width
            self._label(canvas, text, right, self.input_panel.y - gap, color)
            right -= self._px(12)

    def _draw_main(self, canvas: np.ndarray, frame_rgb: np.ndarray, levels: np.ndarray,
                   panel: Box | None = None, contract: InputContract | None = None) -> Box:
        """Camera frame fitted into the main panel (or ``panel``); heat over the crop box the
        network (of ``contract``, default the renderer's) sees, which is returned (canvas
        pixels)."""
        panel = panel or self.main
        height, width = frame_rgb.shape[:2]
        scale = min(panel.w / width, panel.h / height)
        disp_w, disp_h = max(1, round(width * scale)), max(1, round(height * scale))
        ox = panel.x + (panel.w - disp_w) // 2
        oy = panel.y + (panel.h - disp_h) // 2
        shown = canvas[oy:oy + disp_h, ox:ox + disp_w]
        y0, y1, x0, x1 = _levels_on_frame(frame_rgb, levels, contract or self.contract, shown,
                                          self.opacity)
        cv2.rectangle(canvas, (ox + x0, oy + y0), (ox + x1 - 1, oy + y1 - 1), DIM_TEXT, 1)
        return Box(ox + x0, oy + y0, max(1, x1 - x0), max(1, y1 - y0))

    def _no_evidence(self, canvas: np.ndarray, box: Box) -> None:
        """Say in ``box``'s top-right corner that its map is zero everywhere (e.g. Grad-CAM
        for steer when no feature pushes the output right), instead of a plain picture."""
        scale = 0.5 * self._ui_scale
        (width, height), base = cv2.getTextSize(NO_EVIDENCE, FONT, scale, 1)
        pad = self._px(5)
        x1, y0 = box.x + box.w - self._px(4), box.y + self._px(4)
        x0, y1 = max(box.x, x1 - width - 2 * pad), y0 + height + base + 2 * pad
        cv2.rectangle(canvas, (x0, y0), (x1, y1), NO_EVIDENCE_BACKGROUND, -1)
        cv2.putText(canvas, NO_EVIDENCE, (x0 + pad, y1 - pad - base), FONT, scale, TEXT, 1,
                    cv2.LINE_AA)

    def _draw_gauge(self, canvas: np.ndarray, steer_true: float, steer_pred: float) -> None:
        """Predicted: a wide magenta bar ending in a filled disc; recorded: a thin green line
        ending in a ring, drawn on top, so both stay visible when they coincide. Each is
        labelled at its tip; labels of close needles are pushed apart (the more-right one to
        the right)."""
        length = self.gauge_radius - self._px(14)
        if np.isfinite(steer_pred):
            tip = self._needle_point(steer_pred, length)
            cv2.line(canvas, self.gauge_center, tip, PREDICTED_COLOR, self._px(8), cv2.LINE_AA)
            cv2.circle(canvas, tip, self._px(7), PREDICTED_COLOR, -1, cv2.LINE_AA)
        if np.isfinite(steer_true):
            tip = self._needle_point(steer_true, length)
            cv2.line(canvas, self.gauge_center, tip, RECORDED_COLOR, self._px(2), cv2.LINE_AA)
            cv2.circle(canvas, tip, self._px(5), RECORDED_COLOR, self._px(2), cv2.LINE_AA)
        cv2.circle(canvas, self.gauge_center, self._px(6), TEXT, -1, cv2.LINE_AA)
        needles = [(s, label, color) for s, label, color in
                   ((steer_true, "rec", RECORDED_COLOR), (steer_pred, "pred", PREDICTED_COLOR))
                   if np.isfinite(s)]
        needles.sort(key=lambda needle: needle[0])
        close = len(needles) == 2 and needles[1][0] - needles[0][0] < NEEDLE_LABEL_GAP
        for k, (steer, label, color) in enumerate(needles):
            x, y = self._needle_point(steer, self.gauge_radius + self._px(4))
            width = cv2.getTextSize(label, FONT, 0.45 * self._ui_scale, 1)[0][0]
            shift = (-width - self._px(4) if k == 0 else self._px(4)) if close else -width // 2
            cv2.putText(canvas, label, (x + shift, y - self._px(2)), FONT, 0.45 * self._ui_scale,
                        color, 1, cv2.LINE_AA)

    def _draw_text(self, canvas: np.ndarray, steer_true: float, steer_pred: float,
                   frame: int, t: float) -> None:
        x, y = self.text.x, self.text.y + self._px(22)
        error = abs(steer_pred - steer_true)
        lines = ((f"frame {frame}   t {t:8.2f} s", TEXT),
                 (f"recorded  {steer_true:+.3f}", RECORDED_COLOR),
                 (f"predicted {steer_pred:+.3f}", PREDICTED_COLOR),
                 (f"error     {error:.3f}", TEXT))
        for k, (line, color) in enumerate(lines):
            cv2.putText(canvas, line, (x, y + self._px(30) * k), FONT, 0.7 * self._ui_scale,
                        color, self._px(2), cv2.LINE_AA)

    def _draw_strip(self, canvas: np.ndarray, position: int, steer_pred: float,
                    series: int = 0) -> None:
        """Extend the persistent predicted curve (of model ``series`` in the compare layout)
        up to ``position``, then mark it."""
        if self.timeline is None:
            return
        self.timeline.set(position, steer_pred, series)
        color = MODEL_COLORS[series] if self.panels else PREDICTED_COLOR
        if position > self._drawn_until[series]:
            first = max(self._drawn_until[series], 0)
            positions = np.arange(first, position + 1)
            points = self._strip_points(
                positions, self.timeline.predictions[series, first:position + 1])
            points -= (self.strip.x, self.strip.y)
            for run in _finite_runs(points):
                if len(run) == 1:
                    dot = (int(run[0, 0, 0]), int(run[0, 0, 1]))
                    cv2.circle(self._strip_layer, dot, 1, color, -1)
                else:
                    cv2.polylines(self._strip_layer, [run], False, color, 1, cv2.LINE_AA)
            self._drawn_until[series] = position
        self.strip.view(canvas)[:] = self._strip_layer
        x, _ = self.strip_xy(position, 0.0)
        cv2.line(canvas, (x, self.strip.y), (x, self.strip.y + self.strip.h - 1),
                 CURSOR_COLOR, 1)


def heat_on_frame(frame_rgb: np.ndarray, heat: np.ndarray, contract: InputContract,
                  size: tuple[int, int], opacity: float = DEFAULT_OPACITY,
                  ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The camera frame RGB uint8 (H, W, 3) resized to ``size`` (width, height), with ``heat``
    (rows, columns) float in [0, 1] (the model's input size) stretched bilinearly over the
    crop box ``contract.crop_box(H, W)`` (the pixels the network sees) and blended there.
    Returns the picture and the crop box in it, (top, bottom, left, right) as in
    ``crop_box``."""
    disp_w, disp_h = size
    shown = np.empty((disp_h, disp_w, 3), np.uint8)
    box = _levels_on_frame(frame_rgb, heat_levels(heat), contract, shown, opacity)
    return shown, box


def _levels_on_frame(frame_rgb: np.ndarray, levels: np.ndarray, contract: InputContract,
                     shown: np.ndarray, opacity: float) -> tuple[int, int, int, int]:
    """``heat_on_frame`` drawn into ``shown`` (disp_h, disp_w, 3) uint8, with heat given as
    uint8 levels (rows, columns); returns the crop box (top, bottom, left, right) in
    ``shown``."""
    height, width = frame_rgb.shape[:2]
    disp_h, disp_w = shown.shape[:2]
    _resize_into(frame_rgb, shown)
    top, bottom, left, right = contract.crop_box(height, width)
    y0, x0 = round(top * disp_h / height), round(left * disp_w / width)
    y1 = min(disp_h, round(bottom * disp_h / height))
    x1 = min(disp_w, round(right * disp_w / width))
    if y1 > y0 and x1 > x0:
        box = shown[y0:y1, x0:x1]
        box_levels = cv2.resize(levels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        if x1 - x0 == disp_w:  # rows of a C-contiguous image: blend in place
            blend_levels(box, box_levels, opacity, out=box)
        else:
            box[:] = blend_levels(box, box_levels, opacity)
    return y0, y1, x0, x1


def _resize_into(image: np.ndarray, out: np.ndarray) -> None:
    """Resize ``image`` (h, w, 3) uint8 to fill ``out`` (H, W, 3) uint8: exact 2x area halvings
    while at least twice too large (cheap, anti-aliased), then bilinear."""
    out_h, out_w = out.shape[:2]
    while image.shape[0] >= 2 * out_h and image.shape[1] >= 2 * out_w:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2),
                           interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (out_h, out_w):
        out[:] = image
    else:
        cv2.resize(image, (out_w, out_h), dst=out, interpolation=cv2.INTER_LINEAR)


def _paste_fit(canvas: np.ndarray, box: Box, image: np.ndarray) -> Box:
    """Paste ``image`` (h, w, 3) uint8 centred in ``box``: enlarged by the largest whole factor
    that fits (nearest neighbour: pixels stay crisp), or shrunk to fit (aspect kept). Returns
    where it went (canvas pixels)."""
    height, width = image.shape[:2]
    scale = min(box.w / width, box.h / height)
    if scale >= 1:
        factor = int(scale)
        size = (width * factor, height * factor)
        if factor > 1:
            image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
    else:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ox = box.x + (box.w - size[0]) // 2
    oy = box.y + (box.h - size[1]) // 2
    target = canvas[oy:oy + size[1], ox:ox + size[0]]
    if scale >= 1:
        target[:] = image
    else:
        _resize_into(image, target)
    return Box(ox, oy, size[0], size[1])


def _finite_runs(points: np.ndarray) -> list[np.ndarray]:
    """Split (n, 2) float points at NaNs into int32 polylines."""
    finite = np.isfinite(points).all(axis=1)
    runs, start = [], None
    for i, ok in enumerate(finite):
        if ok and start is None:
            start = i
        if not ok and start is not None:
            runs.append(points[start:i])
            start = None
    if start is not None:
        runs.append(points[start:])
    return [np.round(run).astype(np.int32).reshape(-1, 1, 2) for run in runs]
