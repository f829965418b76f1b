"""How much two models' attention maps agree on the same camera frame.

Models may differ in input size and crop, so their maps (each (H, W) over that model's own
input) are first resampled onto one grid over the camera frame (``CameraGrid``): cell (i, j)
of a (rows, cols) grid covers the camera frame's pixels around ((i + 0.5) * fh / rows,
(j + 0.5) * fw / cols), and a model's map is sampled there bilinearly through its crop box, the
inverse of how ``preprocess_frame`` resizes the crop to the input. Cells outside a model's crop
box are not seen by it; agreement uses only the cells both models see.

Per frame, on the cells both see, with a = |map A| and b = |map B| (the statistics' mass):

- ``pearson``: Pearson correlation of a and b;
- ``spearman``: Spearman rank correlation (ties get their average rank: Grad-CAM maps hold
  many exact zeros);
- ``top5_iou``: intersection over union of the cells holding each map's top 5% of values;
- ``centroid_distance``: distance between the centres of mass of a / sum(a) and b / sum(b),
  in camera-frame diagonals.

A map that is zero (or constant) over the shared cells gives NaN for the correlations, and a
zero map NaN for the others: "no evidence" has no place to agree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Columns of a grid over the camera frame (rows follow the frame's aspect ratio).
GRID_COLUMNS = 160
TOP_SHARE = 0.05
AGREEMENT_STATISTICS = ("pearson", "spearman", "top5_iou", "centroid_distance")


@dataclass(frozen=True)
class CameraGrid:
    """A (rows, cols) grid over a camera frame ``frame_hw`` (height, width) in pixels."""

    frame_hw: tuple[int, int]
    rows: int
    cols: int

    @classmethod
    def for_frame(cls, height: int, width: int, cols: int = GRID_COLUMNS) -> CameraGrid:
        cols = min(cols, width)
        return cls((height, width), max(1, round(cols * height / width)), cols)

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame pixel coordinates (y (rows,), x (cols,)) of the cells' centres, in
        pixel-edge units (pixel k spans [k, k + 1))."""
        height, width = self.frame_hw
        return ((np.arange(self.rows) + 0.5) * height / self.rows,
                (np.arange(self.cols) + 0.5) * width / self.cols)


@dataclass(frozen=True)
class MapResampler:
    """Samples one model's maps onto a ``CameraGrid``.

    ``box``: the model's crop box (top, bottom, left, right) on the camera frame;
    ``input_hw``: the model's input size (rows, columns). ``seen`` (rows, cols) bool marks the
    cells inside the box.
    """

    grid: CameraGrid
    box: tuple[int, int, int, int]
    input_hw: tuple[int, int]
    map_y: np.ndarray
    map_x: np.ndarray
    seen: np.ndarray

    @classmethod
    def build(cls, grid: CameraGrid, box: tuple[int, int, int, int],
              input_hw: tuple[int, int]) -> MapResampler:
        top, bottom, left, right = box
        rows, cols = input_hw
        y, x = grid.cell_centres()
        # Inverse of resizing the crop to the input: input pixel centre k sits at crop
        # coordinate (k + 0.5) * crop / input.
        in_y = (y - top) * rows / (bottom - top) - 0.5
        in_x = (x - left) * cols / (right - left) - 0.5
        seen = ((y >= top) & (y < bottom))[:, None] & ((x >= left) & (x < right))[None, :]
        map_y = np.broadcast_to(in_y[:, None], (grid.rows, grid.cols)).astype(np.float32)
        map_x = np.broadcast_to(in_x[None, :], (grid.rows, grid.cols)).astype(np.float32)
        return cls(grid, box, input_hw, map_y, map_x, seen)

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        """(N, H, W) maps -> (N, rows, cols) float32 |map| on the grid (0 where not seen)."""
        out = np.empty((len(maps), self.grid.rows, self.grid.cols), np.float32)
        for k, single in enumerate(maps):
            out[k] = cv2.remap(np.abs(single).astype(np.float32), self.map_x, self.map_y,
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[:, ~self.seen] = 0.0
        return out


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``values`` (n,), ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends - 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _top_cells(values: np.ndarray, share: float) -> np.ndarray:
    count = max(1, int(round(share * len(values))))
    chosen = np.zeros(len(values), bool)
    chosen[np.argsort(-values, kind="stable")[:count]] = True
    return chosen


def map_agreement(a: np.ndarray, b: np.ndarray, shared: np.ndarray,
                  frame_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Agreement of (N, rows, cols) grid maps ``a`` and ``b`` (non-negative, from
    ``MapResampler``) on the ``shared`` (rows, cols) bool cells; each statistic (N,) float64."""
    n = len(a)
    out = {name: np.full(n, np.nan) for name in AGREEMENT_STATISTICS}
    if not shared.any():
        return out
    rows, cols = shared.shape
    height, width = frame_hw
    ys, xs = np.nonzero(shared)
    y = (ys + 0.5) * height / rows
    x = (xs + 0.5) * width / cols
    diagonal = float(np.hypot(height, width))
    for k in range(n):
        va = a[k][shared].astype(np.float64)
        vb = b[k][shared].astype(np.float64)
        out["pearson"][k] = _pearson(va, vb)
        out["spearman"][k] = _pearson(average_ranks(va), average_ranks(vb))
        sa, sb = va.sum(), vb.sum()
        if sa > 0 and sb > 0:
            top_a, top_b = _top_cells(va, TOP_SHARE), _top_cells(vb, TOP_SHARE)
            out["top5_iou"][k] = (top_a & top_b).sum() / (top_a | top_b).sum()
            ca = np.array([(va * y).sum(), (va * x).sum()]) / sa
            cb = np.array([(vb * y).sum(), (vb * x).sum()]) / sb
            out["centroid_distance"][k] = float(np.hypot(*(ca - cb))) / diagonal
    return out
