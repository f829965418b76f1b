"""Training augmentation and the steering corrections that keep labels consistent with it.

Steering geometry (pure pursuit on a kinematic bicycle)
--------------------------------------------------------
A car aiming at a point of its intended path ``recovery`` metres away, seen at angle ``alpha``
from its heading (positive = to the right), reaches it on the circular arc of curvature
``kappa = 2 sin(alpha) / recovery`` (pure pursuit: the circle tangent to the heading through
that point). A bicycle with wheelbase ``L`` drives that arc with front-wheel angle
``delta = atan(L * kappa)``; the normalized steering label is ``delta / max_steer``
(positive = right, as in every recording).

* Side camera at lateral offset ``y`` metres (``CameraSpec.y``, right positive) and yaw ``psi``
  (right positive): its picture is what the centre camera would see if the car stood ``y`` to
  the side of its path, turned by ``psi``. The path point ``recovery`` metres away then lies
  at ``alpha = asin(-y / recovery) - psi``; a LEFT camera (``y < 0``) gets a correction to the
  RIGHT (positive).
* Horizontal shift of the network input by ``k`` pixels to the right: for a pinhole camera a
  pure yaw of the camera moves distant scenery sideways, so the shifted view is the view of a
  car turned LEFT by ``theta = atan(k * 2 tan(fov / 2) / 200)`` (200 input columns span the
  full field of view ``fov``); the car must steer right by the correction for ``alpha = theta``.

The augmentations work on network inputs (N, 66, 200, 3) YUV in [0, 255] (see
``drive_viz.model.preprocess``), channel 0 being luma.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from drive_viz.model.preprocess import INPUT_WIDTH
from drive_viz.recording.format import CameraSpec


@dataclass(frozen=True)
class SteeringGeometry:
    """The vehicle and recovery model behind every steering correction.

    ``wheelbase`` and ``recovery`` in metres, ``max_steer`` (the front-wheel angle that a
    label of 1.0 means) in degrees.
    """

    wheelbase: float = 2.7
    max_steer: float = 30.0
    recovery: float = 8.0

    def __post_init__(self) -> None:
        if not (self.wheelbase > 0 and self.recovery > 0 and 0 < self.max_steer < 90):
            raise ValueError(f"bad steering geometry {self}")

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    def steer_for_angle(self, alpha: np.ndarray | float) -> np.ndarray:
        """Normalized steering that brings the car to a path point seen ``alpha`` radians
        right of its heading, ``recovery`` metres away (pure pursuit). Same shape as alpha."""
        curvature = 2.0 * np.sin(alpha) / self.recovery
        wheel_angle = np.arctan(self.wheelbase * curvature)
        return wheel_angle / math.radians(self.max_steer)


def side_camera_correction(camera: CameraSpec, geometry: SteeringGeometry) -> float:
    """Steering to add to a frame's label when the image comes from ``camera`` instead of a
    camera on the car's centre line (0 for a centred, straight camera; > 0 for a left one)."""
    lateral = min(max(-camera.y / geometry.recovery, -1.0), 1.0)
    alpha = math.asin(lateral) - math.radians(camera.yaw)
    return float(geometry.steer_for_angle(alpha))


def shift_correction(pixels: np.ndarray | float, fov: np.ndarray | float,
                     geometry: SteeringGeometry) -> np.ndarray:
    """Steering to add when the network input is shifted ``pixels`` columns to the right
    (negative = left) for a camera of horizontal field of view ``fov`` degrees."""
    half_width = np.tan(np.radians(fov) / 2.0)
    theta = np.arctan(np.asarray(pixels, np.float64) * 2.0 * half_width / INPUT_WIDTH)
    return geometry.steer_for_angle(theta)


def flip_horizontal(frames: np.ndarray) -> np.ndarray:
    """Mirror (N, H, W, C) frames left-right; the matching label is the negated steer."""
    return frames[:, :, ::-1]


def shift_horizontal(frames: np.ndarray, pixels: np.ndarray,
                     mirror: np.ndarray | None = None) -> np.ndarray:
    """Shift each frame of (N, H, W, C) by ``pixels[i]`` columns (positive = right), filling
    the uncovered columns by repeating the edge column; frames where ``mirror[i]`` (N,) bool
    is set are mirrored left-right first, in the same pass (no intermediate copy)."""
    out = np.empty_like(frames)
    mirror = np.zeros(len(frames), bool) if mirror is None else np.asarray(mirror, bool)
    for frame, source, k, flip in zip(out, frames, np.asarray(pixels, np.int64), mirror,
                                      strict=True):
        if flip:
            source = source[:, ::-1]
        if k > 0:
            frame[:, k:] = source[:, :-k]
            frame[:, :k] = source[:, :1]
        elif k < 0:
            frame[:, :k] = source[:, -k:]
            frame[:, k:] = source[:, -1:]
        else:
            frame[:] = source
    return out


def scale_luma(frames: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Multiply the Y channel of YUV frames (N, H, W, 3) by ``factors``, per frame (N,) or per
    pixel (N, H, W); returns float32 frames with luma clipped to [0, 255]."""
    factors = np.asarray(factors, np.float32)
    if factors.ndim == 1:
        factors = factors[:, None, None]
    out = frames.astype(np.float32)
    luma = out[..., 0]
    np.multiply(luma, factors, out=luma)
    np.clip(luma, 0, 255, out=luma)
    return out


def shadow_masks(count: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(count, height, width) bool: the part of each frame left of a random line that crosses
    it from top to bottom (a shadow edge), mirrored at random to cover the right part instead."""
    top = rng.uniform(0, width, count)
    bottom = rng.uniform(0, width, count)
    rows = np.linspace(0.0, 1.0, height)[None, :, None]
    edge = top[:, None, None] + (bottom - top)[:, None, None] * rows
    mirror = rng.random(count) < 0.5
    return (np.arange(width)[None, None, :] < edge) != mirror[:, None, None]


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation ranges: flip probability, luma factor range, shadow probability and
    darkening range, maximum horizontal shift in input pixels."""

    flip: float = 0.5
    brightness: tuple[float, float] = (0.6, 1.3)
    shadow: float = 0.3
    shadow_darkness: tuple[float, float] = (0.5, 0.8)
    max_shift: int = 10

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def apply(self, frames: np.ndarray, steer: np.ndarray, fov: np.ndarray,
              geometry: SteeringGeometry, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
        """Augment a batch: frames (N, 66, 200, 3) YUV, steer (N,) labels, fov (N,) degrees of
        each frame's camera. Returns float32 frames and float32 labels, both corrected."""
        count = len(frames)
        steer = np.asarray(steer, np.float64).copy()
        pixels = rng.integers(-self.max_shift, self.max_shift + 1, count)
        steer += shift_correction(pixels, fov, geometry)
        flipped = rng.random(count) < self.flip
        steer = np.where(flipped, -steer, steer)
        # Shifting by k then mirroring equals mirroring then shifting by -k: one pass.
        out = shift_horizontal(frames, np.where(flipped, -pixels, pixels), mirror=flipped)
        factors = rng.uniform(*self.brightness, count).astype(np.float32)[:, None, None]
        shaded = rng.random(count) < self.shadow
        darkness = rng.uniform(*self.shadow_darkness, count).astype(np.float32)[:, None, None]
        masks = shadow_masks(count, out.shape[1], out.shape[2], rng) & shaded[:, None, None]
        out = scale_luma(out, np.where(masks, factors * darkness, factors))
        return out, np.clip(steer, -1.0, 1.0).astype(np.float32)
