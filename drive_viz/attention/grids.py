"""Activation grids: a layer's feature maps tiled into one grey image per frame.

Layout (fixed, so a tile means the same channel in every frame and every video): the c
channels fill ``rows x cols`` tiles from :func:`grid_layout`, channel ``k`` at tile row
``k // cols``, tile column ``k % cols``, with 1-pixel separators between tiles. A (h, w)
feature map therefore sits at ``top = (k // cols) * (h + 1)``, ``left = (k % cols) * (w + 1)``
of an image ``rows * h + rows - 1`` high and ``cols * w + cols - 1`` wide. Unused tiles and
separators hold the ``separator`` value.

Normalization: grey levels are comparable across frames. A :class:`LayerScale` is fitted once
on a calibration batch (the 99th percentile of the activations, per layer or per channel)
and then held fixed: ``grey = clip(a / high, 0, 1)``, so one activation value has one grey
level in every frame (negative ELU outputs show black). ``mode="frame"`` instead min-max
normalizes each frame over all its channels; use it only when asked, since a frame's grey
levels then say nothing about another frame's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("layer", "frame")
#: Above this width-to-height ratio of tiles a factor pair is too elongated (e.g. 1 x 7).
_MAX_GRID_ASPECT = 4


def grid_layout(channels: int) -> tuple[int, int]:
    """(rows, cols) for ``channels`` tiles: the factor pair rows x cols = channels closest to
    square with rows <= cols (24 -> 4 x 6, 36 -> 6 x 6, 48 -> 6 x 8, 64 -> 8 x 8); when that
    pair is more than 4 times wider than high (prime counts), a near-square grid with empty
    tiles at the end (7 -> 3 x 3)."""
    if channels < 1:
        raise ValueError(f"need at least one channel, got {channels}")
    rows = max(r for r in range(1, math.isqrt(channels) + 1) if channels % r == 0)
    cols = channels // rows
    if cols > _MAX_GRID_ASPECT * rows:
        cols = math.ceil(math.sqrt(channels))
        rows = math.ceil(channels / cols)
    return rows, cols


@dataclass(frozen=True)
class LayerScale:
    """Fixed grey scale of one layer: ``high`` (c,) float32 is the activation shown as white
    for each channel (all equal when fitted per layer)."""

    high: np.ndarray

    @classmethod
    def fit(cls, acts: np.ndarray, per: str = "layer", percentile: float = 99.0) -> LayerScale:
        """Fit on a calibration batch ``acts`` (N, h, w, c): ``high`` is the ``percentile``
        of all activations (``per="layer"``) or of each channel's (``per="channel"``). A
        channel silent in the calibration batch falls back to the layer's value, and a silent
        layer to 1.0, so the scale is always positive."""
        acts = np.asarray(acts, dtype=np.float32)
        if acts.ndim != 4:
            raise ValueError(f"activations must be (N, h, w, c), got shape {acts.shape}")
        if per not in ("layer", "channel"):
            raise ValueError(f"per must be 'layer' or 'channel', not {per!r}")
        channels = acts.shape[-1]
        layer_high = float(np.percentile(acts, percentile))
        if not layer_high > 0:
            layer_high = 1.0
        if per == "layer":
            high = np.full(channels, layer_high, np.float32)
        else:
            high = np.percentile(acts.reshape(-1, channels), percentile, axis=0)
            high = np.where(high > 0, high, layer_high).astype(np.float32)
        return cls(high=high)

    def to_json(self) -> dict[str, Any]:
        return {"high": [float(v) for v in self.high]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerScale:
        return cls(high=np.asarray(data["high"], np.float32))


def tile_activations(acts: np.ndarray, scale: LayerScale | None = None, *, mode: str = "layer",
                     separator: float = 1.0,
                     grid: tuple[int, int] | None = None) -> np.ndarray:
    """Tile ``acts`` (N, h, w, c) into (N, rows*h + rows-1, cols*w + cols-1) float32 in [0, 1].

    ``mode="layer"`` needs ``scale`` (see :class:`LayerScale`); ``mode="frame"`` min-max
    normalizes each frame. ``grid`` overrides :func:`grid_layout`'s (rows, cols).
    """
    acts = np.asarray(acts, dtype=np.float32)
    if acts.ndim != 4:
        raise ValueError(f"activations must be (N, h, w, c), got shape {acts.shape}")
    n, h, w, channels = acts.shape
    if mode == "layer":
        if scale is None:
            raise ValueError("mode='layer' needs a LayerScale (LayerScale.fit on a calibration "
                             "batch); pass mode='frame' for per-frame min-max")
        if scale.high.shape != (channels,):
            raise ValueError(f"scale has {scale.high.shape[0]} channels, activations {channels}")
        grey = np.clip(acts / scale.high, 0.0, 1.0)
    elif mode == "frame":
        low = acts.min(axis=(1, 2, 3), keepdims=True)
        span = acts.max(axis=(1, 2, 3), keepdims=True) - low
        grey = (acts - low) / np.where(span > 0, span, 1.0)
    else:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    rows, cols = grid or grid_layout(channels)
    if rows * cols < channels:
        raise ValueError(f"a {rows} x {cols} grid cannot hold {channels} channels")
    if rows * cols > channels:
        grey = np.concatenate(
            [grey, np.full((n, h, w, rows * cols - channels), separator, np.float32)], axis=3)
    # One strided copy from channel-last into the tile layout, seen as (N, rows, h+1, cols, w+1).
    padded = np.full((n, rows * (h + 1), cols * (w + 1)), separator, np.float32)
    tiles = padded.reshape(n, rows, h + 1, cols, w + 1)[:, :, :h, :, :w]
    tiles[...] = grey.reshape(n, h, w, rows, cols).transpose(0, 3, 1, 4, 2)
    return np.ascontiguousarray(padded[:, :-1, :-1])
