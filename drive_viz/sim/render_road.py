"""Ground-plane renderer of the synthetic world: camera frames and pixel-aligned class masks.

How a frame is made (all per-row tables precomputed per camera; no per-pixel Python):

1. Every image row below the horizon sees the flat ground at one forward distance
   ``d = f * z / (v - cy)``. The centreline ahead is transformed into the camera frame and
   interpolated by forward distance, giving per row the centreline's lateral offset c, arc
   length s and direction phi. A pixel's road coordinates are then linear in its column u:
   ``r = cos(phi) * (d / f * (u - cx) - c)`` across, ``s + sin(phi) * (...)`` along.
2. Those coordinates index a ground texture tile (RGB + class coverage, 5 cm texels,
   periodic along the road) with one ``cv2.remap`` per mip level band of rows: asphalt,
   edge lines, dashed centre line, gravel shoulder, grass and dirt. The texture is fixed to
   the road, so it moves correctly with the car.
3. Shadow bands (projected quads) darken the ground; distractor objects are drawn far to
   near with OpenCV; a sky panorama indexed by heading fills the rows above; a per-channel
   lookup table applies the drifting global light.

The mask comes from the texture's coverage channel (same remap, so pixel-aligned) and the
objects drawn with label ``distractor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from drive_viz.recording.format import MASK_CLASSES, CameraSpec
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.scenery import (
    BOX,
    CONE,
    EXTRA,
    HEIGHT,
    KIND,
    POLE,
    SHADOW_GAIN,
    TREE,
    WIDTH,
    Scenery,
    X,
    Y,
)
from drive_viz.sim.track import STEP, Track, wrap_angle

TEXEL = 0.05
TEXTURE_HALF_WIDTH = 40.0
TILE_LENGTH = 64.0
MIP_LEVELS = 6
_COVER_ROAD, _COVER_MARKING = 128, 255
_DISTRACTOR = MASK_CLASSES["distractor"]
#: Scene elements a render can leave out (counterfactuals), in the order reports list them.
SCENE_ELEMENTS = ("centre_line", "edge_lines", "road_edge", "distractors", "shadows")
#: The elements that live in the ground texture.
TEXTURE_ELEMENTS = frozenset({"centre_line", "edge_lines", "road_edge"})


@dataclass(frozen=True)
class CameraPose:
    """A camera's position in the world (x, y in m) and heading (rad, positive = right)."""

    x: float
    y: float
    heading: float


def _periodic_noise(rng: np.random.Generator, rows: int, cols: int, cell: int) -> np.ndarray:
    """Smooth noise (rows, cols) float32, about unit spread, features ``cell`` texels
    across, periodic along axis 0 (``rows`` must be a multiple of ``cell``)."""
    if cell == 1:
        return rng.standard_normal((rows, cols)).astype(np.float32)
    grid_rows, grid_cols = rows // cell, cols // cell + 4
    base = rng.standard_normal((grid_rows, grid_cols)).astype(np.float32)
    padded = np.concatenate([base[-2:], base, base[:2]], axis=0)
    up = cv2.resize(padded, (grid_cols * cell, (grid_rows + 4) * cell),
                    interpolation=cv2.INTER_CUBIC)
    return up[2 * cell:2 * cell + rows, :cols] * 1.5


def _tile_axes(config: SyntheticWorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """Texel centres of the ground tile: across the road r (cols,) and along it s (rows,),
    float32 metres."""
    period = config.dash_period * max(1, round(TILE_LENGTH / config.dash_period))
    rows, cols = int(round(period / TEXEL)), int(round(2 * TEXTURE_HALF_WIDTH / TEXEL))
    rows -= rows % (1 << MIP_LEVELS)
    r = (np.arange(cols, dtype=np.float32) + 0.5) * TEXEL - TEXTURE_HALF_WIDTH
    s = (np.arange(rows, dtype=np.float32) + 0.5) * (period / rows)
    return r, s


def _painted(config: SyntheticWorldConfig, ar: np.ndarray, s: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(centre line, edge lines) bool masks over texels at |r| ``ar`` (1, cols) and ``s``."""
    line_in, line_out = config.lane_width, config.lane_width + config.edge_line_width
    dash_on = (s % config.dash_period < config.dash_length)[:, None]
    return (ar < config.centre_line_width / 2) & dash_on, (ar >= line_in) & (ar < line_out)


def _mip_levels(level: np.ndarray) -> list[np.ndarray]:
    """``level`` and MIP_LEVELS - 1 halvings of it (area averaging)."""
    levels = [level]
    for _ in range(1, MIP_LEVELS):
        prev = levels[-1]
        levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2),
                                 interpolation=cv2.INTER_AREA))
    return levels


def build_element_texture(config: SyntheticWorldConfig) -> list[np.ndarray]:
    """Where the texture-borne scene elements lie on the ground tile: float32 (rows, cols, 3)
    coverage in [0, 1] of ``centre_line``, ``edge_lines`` and ``road_edge`` (the verge: all
    ground beyond the asphalt), with the same mip levels as ``build_ground_texture``."""
    r, s = _tile_axes(config)
    ar = np.abs(r)[None, :]
    shape = (len(s), len(r))
    centre, edges = (np.broadcast_to(m, shape) for m in _painted(config, ar, s))
    verge = np.broadcast_to(ar >= config.road_half_width, shape)
    return _mip_levels(np.stack([centre, edges, verge], axis=-1).astype(np.float32))


def build_ground_texture(config: SyntheticWorldConfig, rng: np.random.Generator,
                         hide: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """The ground tile and its mip levels: uint8 (rows, cols, 4) arrays, level k halving both
    sides. Columns run across the road (-40..40 m), rows along it (one tile, periodic); the
    channels are RGB and class coverage (0 other, 128 road, 255 lane marking). ``hide`` may
    name ``centre_line`` and ``edge_lines`` (painted as the asphalt under them) and
    ``road_edge`` (the verge, all ground beyond the asphalt, drawn as asphalt); the random
    draws are the same, so everything else is identical texel for texel."""
    r, s = _tile_axes(config)
    rows, cols = len(s), len(r)
    ar = np.abs(r)[None, :]

    def noise(cell: int) -> np.ndarray:
        return _periodic_noise(rng, rows, cols, cell)

    fine, grain, medium, large = noise(1), noise(2), noise(16), noise(128)
    blade = 1 + 0.22 * fine + 0.15 * grain + 0.12 * medium
    dirt_share = np.clip((noise(64) + 0.6 * large - 0.8) * 1.5, 0, 1)
    grass, dirt = np.array([62, 108, 42], np.float32), np.array([122, 96, 66], np.float32)
    rgb = (blade * (1 - dirt_share))[..., None] * grass + (blade * dirt_share)[..., None] * dirt

    # The road and its shoulder occupy only the middle columns: build them there.
    road_edge = config.road_half_width
    outer = road_edge + config.shoulder_width
    middle = slice(int((TEXTURE_HALF_WIDTH - outer) / TEXEL) - 1,
                   int((TEXTURE_HALF_WIDTH + outer) / TEXEL) + 2)
    ar = np.abs(r[middle])[None, :]
    fine_m, grain_m, medium_m, large_m = (a[:, middle] for a in (fine, grain, medium, large))
    wheel_tracks = sum(np.exp(-((ar - c) / 0.3) ** 2)
                       for c in (config.lane_centre - 0.8, config.lane_centre + 0.8))
    patches = cv2.GaussianBlur((noise(64)[:, middle] > 1.3).astype(np.float32), (0, 0), 2)
    asphalt = (74 + 6 * fine_m + 4 * grain_m + 6 * medium_m + 5 * large_m
               - 7 * wheel_tracks - 9 * patches)
    paint = 226 + 6 * fine_m - 10 * np.clip(medium_m, 0, None)
    gravel = (1 + 0.14 * fine_m + 0.08 * medium_m)[..., None] * np.array([128, 116, 98],
                                                                          np.float32)
    centre, edges = _painted(config, ar, s)
    marking = np.zeros_like(centre)
    if "centre_line" not in hide:
        marking |= centre
    if "edge_lines" not in hide:
        marking |= edges
    road = ar < road_edge
    grey = np.where(marking, paint, asphalt)
    road_rgb = np.stack([grey, grey, grey * np.where(marking, 0.98, 1.04)], axis=-1)
    rgb_m = rgb[:, middle]
    rgb_m[:] = np.where(road[..., None], road_rgb,
                        np.where((ar < outer)[..., None], gravel, rgb_m))
    level = np.empty((rows, cols, 4), np.uint8)
    level[..., :3] = np.clip(rgb, 0, 255)
    level[..., 3] = 0
    level[:, middle, 3] = np.where(marking, _COVER_MARKING, np.where(road, _COVER_ROAD, 0))
    if "road_edge" in hide:
        verge = np.abs(r)[None, :] >= road_edge
        plain = 74 + 6 * fine + 4 * grain + 6 * medium + 5 * large
        plain = np.stack([plain, plain, plain * 1.04], axis=-1)
        level[..., :3] = np.where(verge[..., None], np.clip(plain, 0, 255), level[..., :3])
        level[..., 3] = np.where(verge, _COVER_ROAD, level[..., 3])
    return _mip_levels(level)


def _class_lut() -> np.ndarray:
    """Coverage (0..255, mip-averaged) -> mask class: majority marking, road, or other."""
    lut = np.full(256, MASK_CLASSES["other"], np.uint8)
    lut[(_COVER_ROAD // 2):] = MASK_CLASSES["road"]
    lut[(_COVER_ROAD + _COVER_MARKING + 1) // 2:] = MASK_CLASSES["lane_marking"]
    return lut


class _CameraTables:
    """Per-camera constants: focal length, principal point, ground rows with their forward
    distance (m) and mip level bands, and the sky panorama."""

    def __init__(self, spec: CameraSpec, config: SyntheticWorldConfig, n_levels: int,
                 rng: np.random.Generator) -> None:
        self.spec = spec
        self.f = spec.width / 2 / math.tan(math.radians(spec.fov) / 2)
        self.cx = (spec.width - 1) / 2
        self.cy = config.horizon_fraction * spec.height - 0.5
        first = math.floor(self.cy) + 1
        rows = np.arange(first, spec.height)
        distance = self.f * spec.z / (rows - self.cy)
        keep = distance <= config.view_distance
        self.first_row = int(rows[keep][0]) if keep.any() else spec.height
        self.distance = distance[keep].astype(np.float64)
        footprint = self.distance / self.f / TEXEL
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1.0))), 0, n_levels - 1)
        self.level = level.astype(np.int64)
        edges = np.flatnonzero(np.diff(self.level)) + 1
        bounds = np.concatenate([[0], edges, [len(self.level)]])
        self.bands = [(int(a), int(b), int(self.level[a]))
                      for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        self.u = np.arange(spec.width, dtype=np.float32)
        self.sky = _sky_panorama(rng, self.first_row, self.cy, self.f)
        self.sky_columns = np.arange(spec.width) - int(round(self.cx))


def _sky_panorama(rng: np.random.Generator, rows: int, horizon: float, f: float) -> np.ndarray:
    """Sky, clouds, far hills and treeline for one full turn: uint8 (rows, 2*pi*f px, 3)."""
    width = max(64, int(round(2 * math.pi * f)))
    v = np.arange(rows, dtype=np.float32)[:, None]
    height_above = np.clip((horizon - v) / max(horizon, 1.0), 0, 1)
    top, low = np.array([62, 112, 196], np.float32), np.array([192, 210, 228], np.float32)
    sky = low + (top - low) * height_above[..., None] ** 0.7
    cell = 16
    cloud = _periodic_noise(rng, width - width % cell + cell, max(rows, 1), cell).T[:, :width]
    cloud = np.clip(cloud - 0.5, 0, 1)[..., None] * height_above[..., None] ** 0.3
    sky = sky + (np.array([245, 245, 248], np.float32) - sky) * np.clip(cloud, 0, 0.85)
    azimuth = np.arange(width) * 2 * math.pi / width
    hills = np.zeros(width)
    treeline = np.zeros(width)
    for k in range(1, 12):
        hills += rng.normal(0, 1.0 / k) * np.sin(k * azimuth + rng.uniform(0, 2 * math.pi))
    for k in range(8, 60, 3):
        treeline += rng.normal(0, 0.4) * np.sin(k * azimuth + rng.uniform(0, 2 * math.pi))
    scale = f / 160.0
    hill_top = horizon - scale * (4 + 3 * hills)
    tree_top = horizon - scale * (1.5 + np.abs(treeline) * 2)
    sky = np.where((v >= hill_top[None, :])[..., None], np.array([104, 124, 118], np.float32), sky)
    sky = np.where((v >= tree_top[None, :])[..., None], np.array([48, 74, 44], np.float32), sky)
    sky = np.where((v >= horizon)[..., None], np.array([112, 122, 104], np.float32), sky)
    return np.clip(sky, 0, 255).astype(np.uint8)


class RoadRenderer:
    """Renders frames of ``track`` and ``scenery``: see the module docstring for the method."""

    def __init__(self, config: SyntheticWorldConfig, track: Track, scenery: Scenery,
                 seed: int) -> None:
        self.config = config
        self.track = track
        self.scenery = scenery
        self._seed = seed
        self.texture = build_ground_texture(config, np.random.default_rng([seed, 0x7E47]))
        self.tile_length = self.texture[0].shape[0] * TEXEL
        self._class_lut = _class_lut()
        self._cameras: dict[CameraSpec, _CameraTables] = {}
        self._hidden_textures: dict[frozenset[str], list[np.ndarray]] = {}
        self._element_texture: list[np.ndarray] | None = None

    def _texture(self, hide: frozenset[str]) -> list[np.ndarray]:
        """The ground texture with the texture-borne elements of ``hide`` removed (cached)."""
        hide = hide & TEXTURE_ELEMENTS
        if not hide:
            return self.texture
        if hide not in self._hidden_textures:
            self._hidden_textures[hide] = build_ground_texture(
                self.config, np.random.default_rng([self._seed, 0x7E47]), hide)
        return self._hidden_textures[hide]

    def _tables(self, spec: CameraSpec) -> _CameraTables:
        tables = self._cameras.get(spec)
        if tables is None:
            rng = np.random.default_rng([self._seed, 0x5C1])
            tables = self._cameras[spec] = _CameraTables(spec, self.config, len(self.texture), rng)
        return tables

    def render(self, spec: CameraSpec, pose: CameraPose, s_camera: float,
               light: np.ndarray, hide: frozenset[str] = frozenset()
               ) -> tuple[np.ndarray, np.ndarray]:
        """One frame: RGB uint8 (H, W, 3) and class mask uint8 (H, W) for a camera at
        ``pose`` near arc length ``s_camera``; ``light`` is the RGB gain (3,) float.
        ``hide``: names from ``SCENE_ELEMENTS`` to leave out (counterfactual renders)."""
        unknown = set(hide) - set(SCENE_ELEMENTS)
        if unknown:
            raise ValueError(f"unknown scene element(s) {sorted(unknown)}; "
                             f"known: {', '.join(SCENE_ELEMENTS)}")
        hide = frozenset(hide)
        cam = self._tables(spec)
        height, width = spec.height, spec.width
        frame = np.empty((height, width, 3), np.uint8)
        mask = np.zeros((height, width), np.uint8)
        top = cam.first_row
        shift = int(round(pose.heading * cam.f))
        frame[:top] = np.take(cam.sky, cam.sky_columns + shift, axis=1, mode="wrap")

        ground = self._remap(cam, self._texture(hide), *self._ground_maps(cam, pose, s_camera))
        cv2.cvtColor(ground, cv2.COLOR_RGBA2RGB, dst=frame[top:])
        mask[top:] = cv2.LUT(cv2.extractChannel(ground, 3), self._class_lut)
        if "shadows" not in hide:
            self._shade(cam, pose, s_camera, frame[top:])
        if "distractors" not in hide:
            self._draw_objects(cam, pose, s_camera, frame, mask)

        lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * light[None, :], 0, 255)
        cv2.LUT(frame, lut.astype(np.uint8).reshape(256, 1, 3), dst=frame)
        return frame, mask

    def element_masks(self, spec: CameraSpec, pose: CameraPose, s_camera: float
                      ) -> dict[str, np.ndarray]:
        """Where each of ``SCENE_ELEMENTS`` lies in the frame ``render`` draws with the same
        arguments: name -> bool (H, W), True on every pixel that element contributes to
        (texels under bilinear and mip filtering, shadow polygons, object shapes), whether
        or not something nearer covers it. Hiding an element changes no pixel outside its
        mask."""
        cam = self._tables(spec)
        height, width, top = spec.height, spec.width, cam.first_row
        if self._element_texture is None:
            self._element_texture = build_element_texture(self.config)
        cover = self._remap(cam, self._element_texture, *self._ground_maps(cam, pose, s_camera))
        out = {name: np.zeros((height, width), bool) for name in SCENE_ELEMENTS}
        for channel, name in enumerate(("centre_line", "edge_lines", "road_edge")):
            out[name][top:] = cover[..., channel] > 0
        shade = self._shadow_gain(cam, pose, s_camera)
        if shade is not None:
            out["shadows"][top:] = shade < 255
        objects = np.zeros((height, width), np.uint8)
        self._draw_objects(cam, pose, s_camera, np.zeros((height, width, 3), np.uint8), objects)
        out["distractors"] = objects > 0
        return out

    def _remap(self, cam: _CameraTables, texture: list[np.ndarray], map_x: np.ndarray,
               map_y: np.ndarray) -> np.ndarray:
        """Sample ``texture`` (mip levels of (rows, cols, C)) at the ground rows' texel
        coordinates: (ground rows, W, C) of the texture's dtype."""
        channels = texture[0].shape[2]
        ground = np.empty((len(cam.distance), cam.spec.width, channels), texture[0].dtype)
        for first, last, level in cam.bands:
            band_x = np.clip(map_x[first:last], 0, texture[level].shape[1] - 1)
            cv2.remap(texture[level], band_x, map_y[first:last], cv2.INTER_LINEAR,
                      dst=ground[first:last], borderMode=cv2.BORDER_WRAP)
        return ground

    def _ground_maps(self, cam: _CameraTables, pose: CameraPose, s_camera: float
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Texel coordinates (map_x, map_y) of every ground pixel, each row in the units of
        its mip level: two float32 (ground rows, W) arrays for ``cv2.remap``."""
        cos_h, sin_h = math.cos(pose.heading), math.sin(pose.heading)
        lo = max(0, int((s_camera - 10.0) / STEP))
        hi = int((s_camera + 1.3 * self.config.view_distance + 10.0) / STEP)
        self.track.ensure(hi * STEP + 1.0)
        dx, dy = self.track.x[lo:hi] - pose.x, self.track.y[lo:hi] - pose.y
        forward = dx * cos_h + dy * sin_h
        lateral = -dx * sin_h + dy * cos_h
        phi = wrap_angle(self.track.theta[lo:hi] - pose.heading)
        arc = self.track.s[lo:hi]

        increasing = np.diff(forward) > 0
        here = min(max(int(round(s_camera / STEP)) - lo, 0), len(increasing) - 1)
        stops_after = np.flatnonzero(~increasing[here:])
        end = here + int(stops_after[0]) if len(stops_after) else len(increasing)
        stops_before = np.flatnonzero(~increasing[:here])
        start = int(stops_before[-1]) + 1 if len(stops_before) else 0

        d = cam.distance
        if end > start:
            run = slice(start, end + 1)
            valid = (d >= forward[start]) & (d <= forward[end])
            c = np.interp(d, forward[run], lateral[run])
            s = np.interp(d, forward[run], arc[run])
            angle = np.interp(d, forward[run], phi[run])
        else:
            valid = np.zeros(len(d), bool)
            c = s = angle = np.zeros(len(d))
        cos_p, sin_p = np.cos(angle), np.sin(angle)
        scale = 1.0 / (TEXEL * np.exp2(cam.level))
        a = d / cam.f
        s_base = math.floor(s_camera / self.tile_length) * self.tile_length
        ax = scale * cos_p * a
        bx = scale * (TEXTURE_HALF_WIDTH - cos_p * (a * cam.cx + c)) - 0.5
        ay = scale * sin_p * a
        by = scale * (s - s_base - sin_p * (a * cam.cx + c)) - 0.5
        # Rows where the road is not ahead (behind a bend, or the car faces away): grass.
        ax[~valid], ay[~valid] = 0.4, 0.0
        bx[~valid] = scale[~valid] * (TEXTURE_HALF_WIDTH + 25.0)
        by[~valid] = 7.0 * np.arange(len(d))[~valid]
        map_x = np.multiply.outer(ax.astype(np.float32), cam.u)
        map_x += bx.astype(np.float32)[:, None]
        map_y = np.multiply.outer(ay.astype(np.float32), cam.u)
        map_y += by.astype(np.float32)[:, None]
        return map_x, map_y

    def _project(self, cam: _CameraTables, pose: CameraPose, x: np.ndarray, y: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """World points -> camera forward distance and lateral offset (m, + right)."""
        dx, dy = x - pose.x, y - pose.y
        cos_h, sin_h = math.cos(pose.heading), math.sin(pose.heading)
        return dx * cos_h + dy * sin_h, -dx * sin_h + dy * cos_h

    def _shade(self, cam: _CameraTables, pose: CameraPose, s_camera: float,
               ground_rgb: np.ndarray) -> None:
        """Darken ``ground_rgb`` (the frame's ground rows, in place) under shadow bands."""
        shade = self._shadow_gain(cam, pose, s_camera)
        if shade is not None:
            shade_rgb = cv2.cvtColor(shade, cv2.COLOR_GRAY2RGB)
            cv2.multiply(ground_rgb, shade_rgb, dst=ground_rgb, scale=1 / 255)

    def _shadow_gain(self, cam: _CameraTables, pose: CameraPose, s_camera: float
                     ) -> np.ndarray | None:
        """The shadow bands' gain over the ground rows, uint8 (rows, W), 255 = unshaded;
        None when no band is in view."""
        bands = self.scenery.shadows(s_camera - 20.0, s_camera + self.config.view_distance)
        if not len(bands):
            return None
        forward, lateral = self._project(cam, pose, bands[:, 0:8:2], bands[:, 1:8:2])
        forward = np.maximum(forward, 0.8)
        u = cam.cx + cam.f * lateral / forward
        v = cam.cy + cam.f * cam.spec.z / forward - cam.first_row
        seen = (np.max(v, axis=1) >= 0) & (np.min(u, axis=1) < cam.spec.width) \
            & (np.max(u, axis=1) >= 0)
        if not seen.any():
            return None
        shade = np.full((len(cam.distance), cam.spec.width), 255, np.uint8)
        corners = np.clip(np.stack([u, v], axis=-1), -4000, 4000)
        for quad, gain in zip(corners[seen], bands[seen, SHADOW_GAIN], strict=True):
            cv2.fillPoly(shade, [np.round(quad * 4).astype(np.int32)], int(255 * gain),
                         lineType=cv2.LINE_AA, shift=2)
        return shade

    def _draw_objects(self, cam: _CameraTables, pose: CameraPose, s_camera: float,
                      frame: np.ndarray, mask: np.ndarray) -> None:
        """Draw the distractors in view far to near on ``frame`` and label them in ``mask``."""
        objects = self.scenery.objects(s_camera - 10.0, s_camera + self.config.view_distance)
        if not len(objects):
            return
        forward, lateral = self._project(cam, pose, objects[:, X], objects[:, Y])
        half_view = cam.spec.width / 2 / cam.f
        seen = (forward > 1.0) & (np.abs(lateral) < forward * half_view + 4.0)
        order = np.flatnonzero(seen)[np.argsort(-forward[seen])]
        for i in order:
            row = objects[i]
            px = cam.f / forward[i]
            centre = cam.cx + lateral[i] * px
            base = cam.cy + cam.spec.z * px
            _draw_object(frame, mask, int(row[KIND]), centre, base, px, row)


def _draw_object(frame: np.ndarray, mask: np.ndarray, kind: int, centre: float, base: float,
                 px: float, row: np.ndarray) -> None:
    """Draw one object standing on the ground at image column ``centre``, row ``base``,
    ``px`` pixels per metre at its distance."""
    half = max(0.5, row[WIDTH] * px / 2)
    tall = row[HEIGHT] * px
    colour = tuple(float(c) for c in row[-3:])
    left, right = int(round(centre - half)), int(round(centre + half))
    bottom, top = int(round(base)), int(round(base - tall))
    if kind == CONE:
        tri = np.array([[left, bottom], [right, bottom], [int(round(centre)), top]], np.int32)
        for image, value in ((frame, colour), (mask, _DISTRACTOR)):
            cv2.fillConvexPoly(image, tri, value)
        stripe = int(round(base - 0.55 * tall)), int(round(base - 0.4 * tall))
        for image, value in ((frame, (240, 240, 240)), (mask, _DISTRACTOR)):
            cv2.line(image, (int(centre - half * 0.45), stripe[0]),
                     (int(centre + half * 0.45), stripe[0]), value,
                     max(1, stripe[0] - stripe[1]))
        return
    if kind == TREE:
        radius = max(1, int(round(row[EXTRA] * px)))
        crown = (int(round(centre)), int(round(base - tall - 0.7 * radius)))
        for image, trunk, leaves in ((frame, (82, 60, 40), colour),
                                     (mask, _DISTRACTOR, _DISTRACTOR)):
            cv2.rectangle(image, (left, top), (right, bottom), trunk, -1)
            cv2.circle(image, crown, radius, leaves, -1)
        return
    for image, value in ((frame, colour), (mask, _DISTRACTOR)):
        cv2.rectangle(image, (left, top), (right, bottom), value, -1)
    if kind == BOX and bottom - top > 3:
        lid = top + max(1, (bottom - top) // 6)
        lit = tuple(min(255.0, c * 1.25 + 20) for c in colour)
        for image, value in ((frame, lit), (mask, _DISTRACTOR)):
            cv2.rectangle(image, (left, top), (right, lid), value, -1)
    elif kind == POLE and row[EXTRA] > 0.3:
        sign = int(round(row[EXTRA] * px / 2))
        for image, value in ((frame, (235, 235, 235)), (mask, _DISTRACTOR)):
            cv2.rectangle(image, (int(centre) - sign, top - 2 * sign),
                          (int(centre) + sign, top), value, -1)
        if sign > 2:
            for image, value in ((frame, (200, 30, 30)), (mask, _DISTRACTOR)):
                cv2.rectangle(image, (int(centre) - sign + 1, top - 2 * sign + 1),
                              (int(centre) + sign - 1, top - 1), value, max(1, sign // 4))
