"""Per-frame statistics of attention maps and layer activations (pure numpy, batched).

Replay and live call :func:`map_statistics` on each batch of maps; every statistic is an
``(N,)`` float64 array, one value per frame.

The map as a distribution
-------------------------
A raw map ``m`` (any method, any sign) is read as a distribution over pixels
``p = |m| / sum(|m|)``. The absolute value, not ``relu(m)``, because for signed methods
(gradient, gradient x input, integrated gradients) a strongly negative pixel is as much
"looked at" as a strongly positive one: it pushes the steering the other way. Methods whose
maps are already non-negative (Grad-CAM, VisualBackProp, ...) are unaffected by the choice.

Pixel coordinates: column ``c`` in ``0..W-1``, row ``r`` in ``0..H-1`` of the (H, W) map
(the network's 66x200 view). ``x = c / (W - 1)`` and ``y = r / (H - 1)``, so the left column
is x = 0, the right column x = 1, the top row y = 0.

=================  ============================================================  ===========
name               definition                                                    range
=================  ============================================================  ===========
entropy            ``-sum p log p / log(H W)``: 0 = one pixel, 1 = uniform       [0, 1]
centroid_x         ``sum p x``                                                   [0, 1]
centroid_y         ``sum p y``                                                   [0, 1]
spread             RMS pixel distance from the centroid, ``sqrt(sum p d^2)``,    [0, 0.5]
                   divided by the image diagonal ``sqrt((W-1)^2 + (H-1)^2)``;
                   0.5 = all mass split between opposite corners
top5_share         mass of the ``ceil(0.05 H W)`` largest pixels of ``p``        [0.05, 1]
lr_balance         mass right of the vertical centre line minus mass left of it  [-1, 1]
                   (positive = right; a centre column of an odd width counts 0)
road_share         mass on road or lane-marking pixels of the mask               [0, 1]
marking_share      mass on lane-marking pixels                                   [0, 1]
distractor_share   mass on distractor pixels                                     [0, 1]
temporal_corr      Pearson correlation of the RAW map with the previous frame's  [-1, 1]
                   raw map (signed, so a sign flip gives -1)
=================  ============================================================  ===========

Undefined values are NaN, never a guess: a map that is zero everywhere (no attention at
all, which is not the same as uniform attention) gives NaN for every distribution statistic;
the mask shares are NaN for frames without a mask; ``temporal_corr`` is NaN for the first
frame when no ``previous_map`` is given and whenever either map is constant (zero variance).
Mask labels are :data:`drive_viz.recording.format.MASK_CLASSES`, in the network's view
(``drive_viz.model.preprocess.preprocess_mask``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from drive_viz.recording.format import MASK_CLASSES

#: Statistic names in the order :func:`map_statistics` returns them.
MAP_STATISTICS = ("entropy", "centroid_x", "centroid_y", "spread", "top5_share", "lr_balance",
                  "road_share", "marking_share", "distractor_share", "temporal_corr")
#: A filter is "dead" on a frame when its largest activation is at or below this value.
DEAD_THRESHOLD = 1e-3
TOP_FRACTION = 0.05
_BLOCK = 8

_ROAD = MASK_CLASSES["road"]
_MARKING = MASK_CLASSES["lane_marking"]
_DISTRACTOR = MASK_CLASSES["distractor"]


def map_statistics(maps: np.ndarray,
                   masks: np.ndarray | Sequence[np.ndarray | None] | None = None,
                   previous_map: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Statistics of a batch of attention maps (see the module table for definitions).

    ``maps``: (N, H, W) raw maps, any sign (normally (N, 66, 200) float32; other dtypes are
    read as float32).
    ``masks``: (N, H, W) uint8 class labels aligned with the maps, or a length-N sequence
    of (H, W) masks or None (frames without a mask), or None.
    ``previous_map``: (H, W) raw map of the frame before ``maps[0]``, or None.
    Returns a dict name -> (N,) float64, keys in :data:`MAP_STATISTICS` order.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    n, height, width = maps.shape
    flat = maps.reshape(n, height * width)
    labels, has_mask = _mask_labels(masks, n, (height, width))
    if previous_map is not None and np.size(previous_map) != height * width:
        raise ValueError(f"previous_map has {np.size(previous_map)} pixels, maps have "
                         f"{height * width}")
    stats = {name: np.empty(n) for name in MAP_STATISTICS}
    # Blocks of a few frames keep the temporaries in cache.
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        previous = previous_map if start == 0 else flat[start - 1]
        block = _block_statistics(flat[start:stop], (height, width),
                                  None if labels is None else labels[start:stop], previous)
        for name, values in block.items():
            stats[name][start:stop] = values
    for name in ("road_share", "marking_share", "distractor_share"):
        stats[name][~has_mask] = np.nan
    return stats


def _block_statistics(flat: np.ndarray, shape: tuple[int, int], labels: np.ndarray | None,
                      previous: np.ndarray | None) -> dict[str, np.ndarray]:
    """:func:`map_statistics` of (B, H*W) float32 maps; ``labels`` (B, H*W) or None.

    Pixel passes run in float32 on ``r = |m| / max|m|`` (1 at the peak, so a uniform map is
    exactly 1 everywhere and ``p = r / sum(r)``); sums over a whole map are pairwise and
    finished in float64, so the statistics agree with a float64 computation to ~1e-6.
    """
    n = flat.shape[0]
    height, width = shape
    pixels = height * width
    r = np.abs(flat)
    peak = r.max(axis=1)
    empty = ~(peak > 0)
    r *= (1.0 / np.where(empty, 1.0, peak)).astype(np.float32)[:, None]
    r_grid = r.reshape(n, height, width)
    r_cols = r_grid.sum(axis=1, dtype=np.float64)  # (B, W)
    r_rows = r_grid.sum(axis=2, dtype=np.float64)  # (B, H)
    total = np.where(empty, 1.0, r_cols.sum(axis=1))

    # -sum p log p = log R - sum(r log r) / R with R = sum(r)
    r_log_r = np.log(r, out=np.zeros_like(r), where=r > 0)
    r_log_r *= r
    entropy = (np.log(total) - r_log_r.sum(axis=1, dtype=np.float64) / total) / math.log(
        pixels) if pixels > 1 else np.zeros(n)

    p_cols = r_cols / total[:, None]
    p_rows = r_rows / total[:, None]
    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)
    mean_c = p_cols @ cols
    mean_r = p_rows @ rows
    variance = (p_cols @ cols**2 - mean_c**2) + (p_rows @ rows**2 - mean_r**2)
    diagonal = math.hypot(width - 1, height - 1) or 1.0

    top_k = max(1, math.ceil(TOP_FRACTION * pixels))
    top = np.partition(r, pixels - top_k, axis=1)[:, pixels - top_k:]

    stats = {
        "entropy": np.clip(entropy, 0.0, 1.0),
        "centroid_x": mean_c / max(width - 1, 1),
        "centroid_y": mean_r / max(height - 1, 1),
        "spread": np.sqrt(np.maximum(variance, 0.0)) / diagonal,
        "top5_share": top.sum(axis=1, dtype=np.float64) / total,
        "lr_balance": p_cols @ np.sign(cols - (width - 1) / 2.0),
    }
    if labels is None:
        shares = np.full((n, 3), np.nan)
    else:
        road, marking, distractor = (
            np.einsum("ij,ij->i", r, (labels == label).astype(np.float32)).astype(np.float64)
            / total for label in (_ROAD, _MARKING, _DISTRACTOR))
        shares = np.stack([road + marking, marking, distractor], axis=1)
    stats["road_share"], stats["marking_share"], stats["distractor_share"] = shares.T
    for values in stats.values():
        values[empty] = np.nan
    stats["temporal_corr"] = _temporal_correlation(flat, previous)
    return stats


def _mask_labels(masks: np.ndarray | Sequence[np.ndarray | None] | None, n: int,
                 shape: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray]:
    """Masks as (N, H*W) labels (zeros where a frame has none) and which frames have one."""
    if masks is None:
        return None, np.zeros(n, bool)
    if isinstance(masks, np.ndarray):
        if masks.shape != (n, *shape):
            raise ValueError(f"masks must be {(n, *shape)}, got {masks.shape}")
        return masks.reshape(n, -1), np.ones(n, bool)
    if len(masks) != n:
        raise ValueError(f"expected {n} masks (or None entries), got {len(masks)}")
    labels = np.zeros((n, shape[0] * shape[1]), np.uint8)
    has_mask = np.zeros(n, bool)
    for i, mask in enumerate(masks):
        if mask is None:
            continue
        if np.shape(mask) != shape:
            raise ValueError(f"mask {i} must be {shape}, got {np.shape(mask)}")
        labels[i] = np.asarray(mask).reshape(-1)
        has_mask[i] = True
    return labels, has_mask


def _temporal_correlation(flat: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Pearson correlation of each row of ``flat`` (B, P) float32 with the row before it;
    the first row's predecessor is ``previous`` (P,) or missing (NaN). Each row is centred
    once (float32, mean taken in float64); the sums of products are pairwise, in float64."""
    if previous is None:
        previous = np.full(flat.shape[1], np.nan, np.float32)
    rows = np.concatenate([np.asarray(previous, np.float32).reshape(1, -1), flat])
    rows -= rows.mean(axis=1, dtype=np.float64, keepdims=True).astype(np.float32)
    squares = np.square(rows).sum(axis=1, dtype=np.float64)
    products = (rows[1:] * rows[:-1]).sum(axis=1, dtype=np.float64)
    denominator = np.sqrt(squares[1:] * squares[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = products / denominator
    corr[~(denominator > 0)] = np.nan
    return np.clip(corr, -1.0, 1.0)


def activation_summary(acts: np.ndarray,
                       threshold: float = DEAD_THRESHOLD) -> dict[str, np.ndarray]:
    """Per-frame summary of one layer's activations ``acts`` (N, h, w, c) or (N, c).

    ``act_mean``: mean over all positions and channels; ``act_max``: largest value;
    ``dead_share``: share of the c filters whose largest activation on the frame is
    ``<= threshold`` (default :data:`DEAD_THRESHOLD`; with ELU a filter that is negative
    everywhere counts as dead on that frame). Each value is (N,) float64.
    """
    acts = np.asarray(acts)
    if acts.ndim not in (2, 4):
        raise ValueError(f"activations must be (N, h, w, c) or (N, c), got shape {acts.shape}")
    n, channels = acts.shape[0], acts.shape[-1]
    channel_max = _channel_max(acts.reshape(n, -1, channels)).astype(np.float64)
    return {
        "act_mean": acts.reshape(n, -1).sum(axis=1, dtype=np.float64) / (acts.size // n),
        "act_max": channel_max.max(axis=1),
        "dead_share": (channel_max <= threshold).mean(axis=1),
    }


def _channel_max(per_channel: np.ndarray) -> np.ndarray:
    """Largest value of each channel, (N, positions, c) -> (N, c): halves folded onto each
    other with elementwise maxima (contiguous SIMD passes; ``max(axis=1)`` over a short
    channel axis walks it one position at a time and is ~7x slower)."""
    while per_channel.shape[1] > 1:
        half = per_channel.shape[1] // 2
        folded = np.maximum(per_channel[:, :half], per_channel[:, half:2 * half])
        if per_channel.shape[1] % 2:
            np.maximum(folded[:, 0], per_channel[:, -1], out=folded[:, 0])
        per_channel = folded
    return per_channel[:, 0]
