"""Causal tests of attention maps: the shift test, causal blobs and ROAD.

Every test edits frames and asks the model again through ``predict`` ((M, H, W, 3) float32
inputs -> (M,) steering; ``evaluate`` passes its one traced predictor), so nothing here runs
the network itself. Maps are (N, H, W) over the network input; pixels are ranked by ``|m|``.

Noisy linear imputation (ROAD, Rong et al. 2022)
    A removed pixel becomes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct
    ones, 1/12 for the diagonals; neighbours outside the frame are dropped and the weights
    renormalized), removed neighbours included, so all removed pixels are solved together as
    one sparse linear system (scipy's SuperLU, all channels at once); then Gaussian noise of
    std ``noise`` YUV levels is added to them. The removed region's shape does not leak into
    the frame (a constant or blurred fill draws its outline). Exact on linear images: an
    interior removed region of a linear ramp is reconstructed exactly.

The shift test (Bojarski et al. 2017)
    A frame's salient region is the top ``area`` share (default 10%) of its pixels by
    ``|m|``, dilated by ``dilate`` pixels (default 2). The frame is shifted sideways by
    ``+shift`` and ``-shift`` pixels (default 4) three ways: the whole frame, only the salient
    pixels, only the rest. Shifting a part moves that part's pixels (and only them) ``shift``
    columns over, on top of what is there; the pixels it leaves uncovered, and the columns
    at the frame edge with nothing to shift in, are filled by linear imputation (no noise).
    Reported per method: mean |delta steer| of each, and ``salient_ratio`` = mean |delta
    salient| / mean |delta whole| and ``rest_ratio`` likewise. A map that finds what the
    model steers by has salient_ratio near 1 and rest_ratio near 0.

Causal blobs (Kim & Canny 2017)
    The top ``area`` share (default 20%) of a frame's pixels by ``|m|`` is split into
    8-connected blobs; blobs under ``min_pixels`` (default 8) are dropped. Each blob is removed
    by noisy linear imputation (seeded) and kept as causal when |delta steer| >
    ``threshold`` (default 0.005 of the [-1, 1] range, about 0.14 degrees at 28 degrees full
    lock). Reported per method: ``causal_mass_share``, the mean over frames of the share of
    the map's total ``|m|`` that lies in causal blobs; ``blob_mass_share``, the share in any
    blob; blobs and causal blobs per frame. ``frame_blobs`` does one frame: ``evaluate
    --causal-blobs`` and ``replay --causal-blobs`` (on the layout method's map, drawn on the
    video) both call it.

ROAD (Rong et al. 2022)
    Remove the ``fractions`` (default 0.1, 0.3, 0.5, 0.7, 0.9) of pixels most relevant first
    (MoRF) and least relevant first (LeRF) with noisy linear imputation (noise 0.01 x 255,
    seeded), track mean |delta steer| over frames. MoRF should rise fast, LeRF stay low:
    ``gap`` = mean(MoRF) - mean(LeRF), higher is better. ROAD favours smooth maps, so each
    method is compared with a blur-matched random map (``random:<method>``): seeded uniform
    white noise blurred with a Gaussian whose sigma gives the same autocorrelation half-width
    as the method's maps (``correlation_scale``; a Gaussian-blurred white noise of sigma s has
    autocorrelation exp(-d^2 / (4 s^2)), half-width 2 s sqrt(ln 2)).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]

#: ROAD's neighbour weights: (row offset, column offset, weight).
_NEIGHBOURS = tuple((dr, dc, 1 / 12 if dr and dc else 1 / 6)
                    for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)
ROAD_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
ROAD_NOISE = 0.01 * 255
#: Causal blobs' defaults: share of the pixels clustered, smallest blob, |delta steer| cut.
BLOB_AREA = 0.2
BLOB_MIN_PIXELS = 8
BLOB_THRESHOLD = 0.005


def linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` (H, W, C) with the ``removed`` (H, W) bool pixels replaced by noisy linear
    imputation (see the module doc) -> (H, W, C) float32. ``noise`` > 0 needs ``rng``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    image = np.asarray(image, np.float32)
    removed = np.asarray(removed, bool)
    height, width, channels = image.shape
    if removed.shape != (height, width):
        raise ValueError(f"removed mask {removed.shape} does not match the image "
                         f"{(height, width)}")
    unknown = np.flatnonzero(removed)
    count = unknown.size
    out = image.copy()
    if count == 0:
        return out
    if count == height * width:
        raise ValueError("cannot impute: every pixel is removed")
    flat = image.reshape(-1, channels).astype(np.float64)
    ids = np.full(height * width, -1, np.int64)
    ids[unknown] = np.arange(count)
    r, c = np.divmod(unknown, width)
    inside = [((r + dr >= 0) & (r + dr < height) & (c + dc >= 0) & (c + dc < width), dr, dc, w)
              for dr, dc, w in _NEIGHBOURS]
    total = sum(w * valid for valid, _, _, w in inside)
    rows, cols, values = [np.arange(count)], [np.arange(count)], [np.ones(count)]
    rhs = np.zeros((count, channels))
    for valid, dr, dc, w in inside:
        at = np.flatnonzero(valid)
        neighbour = (r[at] + dr) * width + c[at] + dc
        weight = w / total[at]
        other = ids[neighbour]
        solved = other >= 0
        rows.append(at[solved])
        cols.append(other[solved])
        values.append(-weight[solved])
        np.add.at(rhs, at[~solved], weight[~solved, None] * flat[neighbour[~solved]])
    system = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(count, count)).tocsc()
    solution = splu(system).solve(rhs)
    if noise > 0:
        solution = solution + rng.normal(0.0, noise, solution.shape)
    out.reshape(-1, channels)[unknown] = solution
    return out


def top_area_mask(saliency: np.ndarray, area: float) -> np.ndarray:
    """(H, W) bool: the ``round(area * H * W)`` pixels of largest ``|saliency|`` (ties by
    position); empty where the map is zero."""
    magnitude = np.abs(np.asarray(saliency, np.float64)).reshape(-1)
    count = int(round(area * magnitude.size))
    chosen = np.zeros(magnitude.size, bool)
    order = np.argsort(-magnitude, kind="stable")[:count]
    chosen[order[magnitude[order] > 0]] = True
    return chosen.reshape(np.shape(saliency))


def shift_part(image: np.ndarray, part: np.ndarray, shift: int) -> np.ndarray:
    """``image`` (H, W, C) with the ``part`` (H, W) bool pixels moved ``shift`` columns to the
    right (left if negative) over the rest; uncovered pixels imputed (no noise) -> (H, W, C)."""
    moved = np.roll(image, shift, axis=1)
    landed = np.roll(part, shift, axis=1)
    if shift > 0:
        landed[:, :shift] = False
    elif shift < 0:
        landed[:, shift:] = False
    out = np.where(landed[..., None], moved, image)
    return linear_imputation(out, part & ~landed)


def shift_test(predict: Predict, inputs: np.ndarray, maps: Mapping[str, np.ndarray], *,
               area: float = 0.1, dilate: int = 2, shift: int = 4) -> dict[str, Any]:
    """The shift test (module doc) on ``inputs`` (N, H, W, 3) for each map (N, H, W)."""
    inputs = np.asarray(inputs, np.float32)
    everything = np.ones(inputs.shape[1:3], bool)
    kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
    reference = predict(inputs)
    whole = np.stack([shift_part(x, everything, s) for s in (shift, -shift) for x in inputs])
    whole_change = float(np.mean(np.abs(predict(whole) - np.tile(reference, 2))))
    out: dict[str, Any] = {"area": area, "dilate_px": dilate, "shift_px": shift,
                           "whole_change": whole_change, "methods": {}}
    for name, method_maps in maps.items():
        salient = [cv2.dilate(top_area_mask(m, area).astype(np.uint8), kernel) > 0
                   for m in method_maps]
        edited = [shift_part(x, part, s) for s in (shift, -shift)
                  for x, mask in zip(inputs, salient, strict=True) for part in (mask, ~mask)]
        change = np.abs(predict(np.stack(edited)).reshape(2, len(inputs), 2)
                        - reference[None, :, None])
        salient_change, rest_change = (float(v) for v in change.mean(axis=(0, 1)))
        out["methods"][name] = {
            "salient_area": float(np.mean(salient)),
            "salient_change": salient_change, "rest_change": rest_change,
            "salient_ratio": _ratio(salient_change, whole_change),
            "rest_ratio": _ratio(rest_change, whole_change)}
    return out


def blobs(saliency: np.ndarray, area: float, min_pixels: int) -> list[np.ndarray]:
    """The 8-connected blobs of the top ``area`` share of ``saliency`` (H, W), each an (H, W)
    bool mask, blobs under ``min_pixels`` dropped, largest mass first."""
    chosen = top_area_mask(saliency, area).astype(np.uint8)
    count, labels = cv2.connectedComponents(chosen, connectivity=8)
    masks = [labels == k for k in range(1, count)]
    masks = [mask for mask in masks if mask.sum() >= min_pixels]
    magnitude = np.abs(saliency)
    return sorted(masks, key=lambda mask: -float(magnitude[mask].sum()))


@dataclass(frozen=True)
class FrameBlobs:
    """One frame's causal blob filtering: ``masks`` the blobs, (H, W) bool each, largest mass
    first; per blob ``shares`` of the map's total ``|m|``, ``change`` |delta steer| when it is
    removed and ``causal`` (change > threshold), (k,) arrays."""

    masks: list[np.ndarray]
    shares: np.ndarray
    change: np.ndarray
    causal: np.ndarray

    @property
    def causal_mass_share(self) -> float:
        """Share of the map's total ``|m|`` inside causal blobs (0 without any)."""
        return float(self.shares[self.causal].sum())

    @property
    def blob_mass_share(self) -> float:
        """Share of the map's total ``|m|`` inside any blob."""
        return float(self.shares.sum())


def frame_blobs(predict: Predict, image: np.ndarray, saliency: np.ndarray,
                reference: float, rng: np.random.Generator, *, area: float = BLOB_AREA,
                min_pixels: int = BLOB_MIN_PIXELS,
                threshold: float = BLOB_THRESHOLD) -> FrameBlobs:
    """Causal blob filtering (module doc) of one frame: ``image`` (H, W, 3) float32 network
    input, ``saliency`` (H, W) its map, ``reference`` the frame's predicted steering (the
    caller has it already); each blob is removed with noise drawn from ``rng``. A map without
    blobs (or zero everywhere) costs no prediction."""
    found = blobs(saliency, area, min_pixels)
    magnitude = np.abs(saliency).astype(np.float64)
    total = float(magnitude.sum())
    if not found or total == 0:
        return FrameBlobs([], np.zeros(0), np.zeros(0), np.zeros(0, bool))
    edited = [linear_imputation(image, mask, ROAD_NOISE, rng) for mask in found]
    after = np.asarray(predict(np.stack(edited)))
    change = np.abs(after.reshape(-1) - reference).astype(np.float64)
    shares = np.array([float(magnitude[mask].sum()) / total for mask in found])
    return FrameBlobs(found, shares, change, change > threshold)


def causal_blobs(predict: Predict, inputs: np.ndarray, maps: Mapping[str, np.ndarray], *,
                 area: float = BLOB_AREA, min_pixels: int = BLOB_MIN_PIXELS,
                 threshold: float = BLOB_THRESHOLD, seed: int = 0) -> dict[str, Any]:
    """Causal blob filtering (module doc) for each map (N, H, W) on ``inputs`` (N, H, W, 3):
    ``frame_blobs`` of every frame, one seeded generator per method.

    Besides the summary, ``methods[name]["frames"]`` lists per frame the blobs' pixel counts,
    mass shares and |delta steer| and whether each is causal."""
    inputs = np.asarray(inputs, np.float32)
    reference = predict(inputs)
    out: dict[str, Any] = {"area": area, "min_pixels": min_pixels, "threshold": threshold,
                           "noise": ROAD_NOISE, "methods": {}}
    for name, method_maps in maps.items():
        rng = np.random.default_rng(seed)
        found = [frame_blobs(predict, x, saliency, before, rng, area=area,
                             min_pixels=min_pixels, threshold=threshold)
                 for x, saliency, before in zip(inputs, method_maps, reference, strict=True)]
        frames = [[{"pixels": int(mask.sum()), "mass_share": float(share),
                    "change": float(delta), "causal": bool(keep)}
                   for mask, share, delta, keep in zip(f.masks, f.shares, f.change, f.causal,
                                                       strict=True)]
                  for f in found]
        out["methods"][name] = {
            "causal_mass_share": float(np.mean([f.causal_mass_share for f in found])),
            "blob_mass_share": float(np.mean([f.blob_mass_share for f in found])),
            "blobs_per_frame": float(np.mean([len(f.masks) for f in found])),
            "causal_blobs_per_frame": float(np.mean([f.causal.sum() for f in found])),
            "frames": frames}
    return out


def correlation_scale(saliency: np.ndarray) -> float:
    """Autocorrelation half-width of ``|saliency|`` (N, H, W) in pixels: the lag at which
    the autocorrelation of the mean-removed map (averaged over frames and over the pixel
    pairs at that lag) falls to 0.5, averaged over the horizontal and vertical directions,
    linearly interpolated."""
    maps = np.abs(np.asarray(saliency, np.float64))
    maps = maps - maps.mean(axis=(1, 2), keepdims=True)
    n, height, width = maps.shape
    size = (2 * height, 2 * width)
    auto = np.fft.irfft2(np.abs(np.fft.rfft2(maps, s=size)) ** 2, s=size).sum(axis=0)
    # Divide by the number of pixel pairs at each lag (fewer at longer lags).
    pairs = np.fft.irfft2(np.abs(np.fft.rfft2(np.ones((height, width)), s=size)) ** 2, s=size)
    auto = auto / np.maximum(np.round(pairs), 1.0)
    if auto[0, 0] <= 0:
        return math.nan
    auto = auto / auto[0, 0]
    widths = []
    for profile in (auto[0, :width], auto[:height, 0]):
        below = np.flatnonzero(profile < 0.5)
        if not below.size:
            widths.append(float(len(profile)))
            continue
        k = int(below[0])
        widths.append(k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k]))
    return float(np.mean(widths))


def blur_matched_random(shape: tuple[int, int, int], scale: float,
                        rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) float32 non-negative white noise (uniform in [0, 1), so ``|m|`` is the map
    itself) blurred by a Gaussian of sigma = ``scale`` / (2 sqrt(ln 2)), so its
    autocorrelation half-width is ``scale`` pixels (0 or NaN: unblurred)."""
    noise = rng.random(shape, np.float32)
    sigma = scale / (2 * math.sqrt(math.log(2))) if math.isfinite(scale) else 0.0
    if sigma <= 0:
        return noise
    return np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in noise])


def road(predict: Predict, inputs: np.ndarray, maps: Mapping[str, np.ndarray], *,
         fractions: Sequence[float] = ROAD_FRACTIONS, noise: float = ROAD_NOISE,
         seed: int = 0) -> dict[str, Any]:
    """ROAD MoRF/LeRF curves (module doc) for each map and its blur-matched random control.

    Returns {"fractions", "noise", "correlation_scale" {method: px}, "morf" {name: curve},
    "lerf" {...}, "gap" {name: mean(morf) - mean(lerf)}}, names being the methods and
    ``random:<method>``."""
    inputs = np.asarray(inputs, np.float32)
    reference = predict(inputs)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"fractions": list(fractions), "noise": noise,
                           "correlation_scale": {}, "morf": {}, "lerf": {}, "gap": {}}
    candidates: dict[str, np.ndarray] = {}
    for name, method_maps in maps.items():
        scale = correlation_scale(method_maps)
        out["correlation_scale"][name] = scale
        candidates[name] = np.asarray(method_maps)
        candidates[f"random:{name}"] = blur_matched_random(np.shape(method_maps), scale, rng)
    pixels = inputs.shape[1] * inputs.shape[2]
    for name, method_maps in candidates.items():
        curves = {"morf": [], "lerf": []}
        ranks = np.argsort(np.argsort(-np.abs(method_maps.reshape(len(inputs), -1)),
                                      axis=1, kind="stable"), axis=1)
        for fraction in fractions:
            count = int(round(fraction * pixels))
            edited = [linear_imputation(x, removed.reshape(x.shape[:2]), noise, rng)
                      for x, rank in zip(inputs, ranks, strict=True)
                      for removed in (rank < count, rank >= pixels - count)]
            change = np.abs(predict(np.stack(edited)).reshape(len(inputs), 2)
                            - reference[:, None]).mean(axis=0)
            curves["morf"].append(float(change[0]))
            curves["lerf"].append(float(change[1]))
        out["morf"][name] = curves["morf"]
        out["lerf"][name] = curves["lerf"]
        out["gap"][name] = float(np.mean(curves["morf"]) - np.mean(curves["lerf"]))
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def run_causal_tests(predict: Predict, inputs: np.ndarray, maps: Mapping[str, np.ndarray], *,
                     shift: bool = False, blobs: bool = False, road_curves: bool = False,
                     seed: int = 0) -> dict[str, Any]:
    """The chosen tests as ``evaluation.json`` sections: {"shift_test": ..., "causal_blobs":
    ..., "road": ...} (only the chosen keys), each with its wall-clock ``seconds``."""
    chosen = {"shift_test": (shift, lambda: shift_test(predict, inputs, maps)),
              "causal_blobs": (blobs, lambda: causal_blobs(predict, inputs, maps, seed=seed)),
              "road": (road_curves, lambda: road(predict, inputs, maps, seed=seed))}
    out: dict[str, Any] = {}
    for key, (wanted, test) in chosen.items():
        if wanted:
            start = time.perf_counter()
            out[key] = test()
            out[key]["seconds"] = round(time.perf_counter() - start, 2)
    return out


def summary_lines(sections: Mapping[str, Any]) -> list[str]:
    """One console line per method and test in ``sections`` (``run_causal_tests``' result)."""
    lines = []
    for name, result in sections.get("shift_test", {}).get("methods", {}).items():
        lines.append(f"  {name:<22} shift test: salient {result['salient_ratio']:.2f}, rest "
                     f"{result['rest_ratio']:.2f} of the whole-frame shift's |delta steer|")
    for name, result in sections.get("causal_blobs", {}).get("methods", {}).items():
        lines.append(f"  {name:<22} causal blobs: {result['causal_mass_share']:.2f} of the "
                     f"map's mass ({result['causal_blobs_per_frame']:.1f} of "
                     f"{result['blobs_per_frame']:.1f} blobs per frame)")
    gaps = sections.get("road", {}).get("gap", {})
    for name in (n for n in gaps if not n.startswith("random:")):
        lines.append(f"  {name:<22} ROAD MoRF - LeRF {gaps[name]:+.4f} (blur-matched random "
                     f"{gaps[f'random:{name}']:+.4f})")
    return lines
