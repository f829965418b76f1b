"""Display normalization of raw attention maps, and the heatmap colormap.

Raw maps (the engine's output) keep their method-specific sign and scale; they are stored
and summarized raw. Only for DISPLAY are they turned into [0, 1] heat, by ``RunningScale``:

    heat = clip(|map| / scale, 0, 1)

where ``scale`` is the median, over the last ``window`` replayed frames (this one included),
of each frame's ``percentile``-th percentile of |map|. So one frame's brightness is comparable
with its neighbours' (a frame that attends weakly looks weak, instead of being stretched to
full range as per-frame min-max would do), while the scale still follows slow drifts across a
drive. Heat is coloured with the perceptually uniform *inferno* colormap and alpha-blended
over the picture with alpha = ``opacity * heat``, so cold pixels (heat 0) leave the picture
untouched and the hottest pixels cover it by ``opacity`` (default 0.6).

Drawing works on uint8 throughout: heat is quantized to 256 levels once, at the map's own
(66, 200) size, and the blend is three OpenCV passes through lookup tables (no float image), so
its result is within 1.5 grey levels of the exact float blend at the quantized heat.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from functools import lru_cache

import cv2
import numpy as np

DEFAULT_OPACITY = 0.6
DEFAULT_PERCENTILE = 99.0
DEFAULT_WINDOW = 64


def _inferno_lut() -> np.ndarray:
    """OpenCV's inferno colormap as an RGB lookup table, uint8 (256, 1, 3)."""
    grey = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)
    return np.ascontiguousarray(bgr[:, :, ::-1])


HEAT_LUT = _inferno_lut()


class RunningScale:
    """Per-run display scale for one method's maps (see the module docstring).

    ``normalize(maps (N, h, w))`` -> (N, h, w) float32 heat in [0, 1]; frames are taken in
    replay order, each normalized with the scale that includes itself and the frames before it.
    """

    def __init__(self, window: int = DEFAULT_WINDOW,
                 percentile: float = DEFAULT_PERCENTILE) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, not {window}")
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {percentile}")
        self.percentile = percentile
        self._recent: deque[float] = deque(maxlen=window)
        self.scale = 0.0

    def normalize(self, maps: np.ndarray) -> np.ndarray:
        magnitude = np.abs(np.asarray(maps, dtype=np.float32))
        flat = magnitude.reshape(len(magnitude), -1)
        inverse = np.zeros(len(magnitude), np.float32)
        for i, level in enumerate(_percentiles(flat, self.percentile)):
            if np.isfinite(level):
                self._recent.append(float(level))
            self.scale = statistics.median(self._recent) if self._recent else 0.0
            if self.scale > 0:
                inverse[i] = 1.0 / self.scale
        magnitude *= inverse[:, None, None]
        np.fmax(magnitude, 0.0, out=magnitude)  # NaN -> 0
        return np.minimum(magnitude, 1.0, out=magnitude)


def _percentiles(flat: np.ndarray, percentile: float) -> np.ndarray:
    """Each row's ``percentile`` of ``flat`` (N, P) float32, as ``np.percentile`` computes it
    (linear interpolation; NaN when the row has a NaN) but by one partition around the two
    ranks it needs instead of a sort. Returns (N,) float64."""
    count, size = flat.shape
    if count == 0 or size == 0:
        return np.empty(0)
    rank = percentile / 100.0 * (size - 1)
    low = math.floor(rank)
    high = min(low + 1, size - 1)
    # One kth: everything after ``low`` is >= it, so the next rank is their minimum
    # (numpy's partition around two kth values is ~10x slower than around one).
    ranked = np.partition(flat, low, axis=1)
    below = ranked[:, low].astype(np.float64)
    above = ranked[:, high:].min(axis=1) if high > low else ranked[:, low]
    levels = below + (above - below) * (rank - low)
    levels[np.isnan(flat).any(axis=1)] = np.nan
    return levels


def heat_levels(heat: np.ndarray) -> np.ndarray:
    """Heat float (h, w) in [0, 1] -> uint8 (h, w) levels 0..255 (rounded; NaN -> 0)."""
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0)
    return (np.clip(heat, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@lru_cache(maxsize=8)
def _blend_luts(opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Per heat level l: kept share of the picture, 255 * (1 - a), uint8 (256,); and the
    colour's share, a * LUT[l], uint8 (256, 1, 3); with a = opacity * l / 255."""
    alpha = np.clip(opacity, 0.0, 1.0) * np.arange(256) / 255.0
    keep = np.round(255.0 * (1.0 - alpha)).astype(np.uint8)
    paint = np.round(alpha[:, None, None] * HEAT_LUT).astype(np.uint8)
    return keep, paint


def blend_levels(picture: np.ndarray, levels: np.ndarray, opacity: float = DEFAULT_OPACITY,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Alpha-blend inferno heat over RGB uint8 ``picture`` (h, w, 3), heat given as uint8
    ``levels`` (h, w) (``heat_levels``): alpha = opacity * level / 255 per pixel, so level-0
    pixels come back unchanged. Writes into ``out`` (may be ``picture`` itself) or a new array."""
    if picture.shape[:2] != levels.shape:
        raise ValueError(f"picture {picture.shape[:2]} and heat {levels.shape} differ in size")
    keep, paint = _blend_luts(float(opacity))
    keep3 = cv2.cvtColor(cv2.LUT(levels, keep), cv2.COLOR_GRAY2RGB)
    kept = cv2.multiply(picture, keep3, scale=1.0 / 255.0)
    return cv2.add(kept, cv2.applyColorMap(levels, paint), dst=out)


def blend_heat(picture: np.ndarray, heat: np.ndarray,
               opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """Alpha-blend heat float (h, w) in [0, 1] over RGB uint8 ``picture`` (h, w, 3), same size.

    alpha = opacity * heat per pixel: pixels with zero heat come back unchanged.
    Returns a new RGB uint8 (h, w, 3) array.
    """
    if picture.shape[:2] != np.shape(heat):
        raise ValueError(f"picture {picture.shape[:2]} and heat {np.shape(heat)} differ in size")
    return blend_levels(picture, heat_levels(heat), opacity)
