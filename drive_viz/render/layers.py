"""The per-layer view of one frame: every conv layer's activations beside its Grad-CAM map.

Layout (fixed; ``layers_image_size`` and ``row_top`` give the geometry):

- a header ``HEADER_HEIGHT`` pixels high: the network's input view zoomed ``ZOOM`` times
  at (``MARGIN``, ``MARGIN``) and, to its right, the frame, the target and steer true/pred;
- one row ``ROW_HEIGHT`` pixels high per conv layer, shallowest first, row k starting at
  ``row_top(k)``: the layer's name and shape in a ``LABEL_WIDTH`` column, its activation grid
  (``grids.tile_activations``, grey) fitted into a ``GRID_WIDTH`` x ``VIEW_HEIGHT`` box, and
  its Grad-CAM map blended over the input view (``VIEW_WIDTH`` x ``VIEW_HEIGHT``).

Activation grey levels: one ``LayerScale`` per layer fitted on this frame (white = the
layer's 99th percentile). Grad-CAM heat: each layer's map divided by its own maximum (the
row label gives that maximum in score units), since the layers' scales differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drive_viz.model.preprocess import INPUT_SHAPE
from drive_viz.render.colormap import DEFAULT_OPACITY, blend_heat
from drive_viz.render.overlay import BACKGROUND, DIM_TEXT, FONT, TEXT

ZOOM = 2
MARGIN = 8
#: The box the input view is fitted into (DAVE-2's 66x200 view at ZOOM: 132 x 400); other
#: input sizes keep their aspect ratio inside it.
VIEW_HEIGHT, VIEW_WIDTH = INPUT_SHAPE[0] * ZOOM, INPUT_SHAPE[1] * ZOOM
HEADER_HEIGHT = VIEW_HEIGHT + 2 * MARGIN
ROW_HEIGHT = VIEW_HEIGHT + 2 * MARGIN
LABEL_WIDTH = 120
GRID_WIDTH = 600


@dataclass(frozen=True)
class LayerRow:
    """One conv layer of the figure: ``grid`` (gh, gw) float32 in [0, 1] (the tiled
    activations), ``gradcam`` (H, W) float32 raw Grad-CAM map over the model's input (score
    units), ``shape``
    the layer's (h, w, channels)."""

    name: str
    shape: tuple[int, int, int]
    grid: np.ndarray
    gradcam: np.ndarray


def layers_image_size(layer_count: int) -> tuple[int, int]:
    """(height, width) in pixels of a figure with ``layer_count`` conv rows."""
    width = MARGIN + LABEL_WIDTH + GRID_WIDTH + MARGIN + VIEW_WIDTH + MARGIN
    return HEADER_HEIGHT + layer_count * ROW_HEIGHT, width


def row_top(index: int) -> int:
    """The first pixel row of conv row ``index`` (0 = the shallowest conv layer)."""
    return HEADER_HEIGHT + index * ROW_HEIGHT


def grid_box() -> tuple[int, int]:
    """(left, width) of the activation-grid column."""
    return MARGIN + LABEL_WIDTH, GRID_WIDTH


def view_box() -> tuple[int, int]:
    """(left, width) of the Grad-CAM column (and of nothing in the header)."""
    return MARGIN + LABEL_WIDTH + GRID_WIDTH + MARGIN, VIEW_WIDTH


def _text(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int] = TEXT,
          scale: float = 0.5) -> None:
    cv2.putText(canvas, text, (x, y), FONT, scale, color, 1, cv2.LINE_AA)


def draw_layers(view_rgb: np.ndarray, rows: Sequence[LayerRow], header: Sequence[str]
                ) -> np.ndarray:
    """The figure (see the module doc) as RGB uint8 (``layers_image_size(len(rows))``, 3).

    ``view_rgb``: the network's input view (H, W, 3) RGB uint8 (the model's input size);
    ``header``: text lines shown beside it (frame, target, steering).
    """
    height, width = layers_image_size(len(rows))
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    _paste_view(canvas, MARGIN, MARGIN, view_rgb)
    for number, line in enumerate(header):
        _text(canvas, line, 2 * MARGIN + VIEW_WIDTH, MARGIN + 20 + 24 * number, scale=0.55)
    grid_left, _ = grid_box()
    view_left, _ = view_box()
    _text(canvas, "activations (white = layer p99)", grid_left, HEADER_HEIGHT - 4, DIM_TEXT,
          0.42)
    _text(canvas, "Grad-CAM (per-layer max = 1)", view_left, HEADER_HEIGHT - 4, DIM_TEXT, 0.42)
    for index, row in enumerate(rows):
        top = row_top(index) + MARGIN
        h, w, channels = row.shape
        peak = float(np.max(row.gradcam))
        _text(canvas, row.name, MARGIN, top + 20, scale=0.6)
        _text(canvas, f"{h}x{w}x{channels}", MARGIN, top + 42, DIM_TEXT, 0.42)
        _text(canvas, f"cam max {peak:.2g}", MARGIN, top + 62, DIM_TEXT, 0.42)
        grid = np.clip(row.grid, 0.0, 1.0)
        zoom = min(GRID_WIDTH / grid.shape[1], VIEW_HEIGHT / grid.shape[0])
        size = (max(1, int(grid.shape[1] * zoom)), max(1, int(grid.shape[0] * zoom)))
        grey = cv2.resize((grid * 255).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        canvas[top:top + size[1], grid_left:grid_left + size[0]] = grey[..., None]
        heat = row.gradcam / peak if peak > 0 else np.zeros_like(row.gradcam)
        blended = blend_heat(view_rgb, heat.astype(np.float32), DEFAULT_OPACITY)
        _paste_view(canvas, top, view_left, blended)
    return canvas


def _paste_view(canvas: np.ndarray, top: int, left: int, view: np.ndarray) -> None:
    """``view`` (h, w, 3) uint8 scaled to fit the VIEW_WIDTH x VIEW_HEIGHT box at (top, left),
    aspect kept (nearest neighbour: input pixels stay crisp)."""
    zoom = min(VIEW_WIDTH / view.shape[1], VIEW_HEIGHT / view.shape[0])
    size = (max(1, round(view.shape[1] * zoom)), max(1, round(view.shape[0] * zoom)))
    canvas[top:top + size[1], left:left + size[0]] = cv2.resize(
        view, size, interpolation=cv2.INTER_NEAREST)
