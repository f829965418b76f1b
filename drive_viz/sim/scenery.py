"""Things beside and across the road: distractor objects and shadow bands.

Generated per 200 m chunk of road from a random stream keyed by (seed, chunk), so the
scenery of a seed is the same whichever order chunks are first asked for.
"""

from __future__ import annotations

import numpy as np

from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.track import Track

CHUNK = 200.0

BOX, POLE, CONE, TREE = 0, 1, 2, 3
#: Object columns: arc length s, lateral r (m, + right of road centre), world x, y, kind,
#: width, height (m), extra (tree canopy radius / pole sign size, m), colour r, g, b.
S, R, X, Y, KIND, WIDTH, HEIGHT, EXTRA, CR, CG, CB = range(11)
#: Shadow columns: world x, y of the 4 corners (8 values), start s, brightness factor.
SHADOW_S, SHADOW_GAIN = 8, 9

_BOX_COLOURS = np.array([(200, 40, 35), (40, 80, 190), (230, 190, 40), (150, 60, 160),
                         (235, 235, 230), (60, 150, 70), (235, 120, 30)], np.float64)


class Scenery:
    """Distractor objects and shadow bands along ``track``, generated lazily per chunk."""

    def __init__(self, config: SyntheticWorldConfig, track: Track, seed: int) -> None:
        self._config = config
        self._track = track
        self._seed = seed
        self._objects: dict[int, np.ndarray] = {}
        self._shadows: dict[int, np.ndarray] = {}

    def objects(self, s0: float, s1: float) -> np.ndarray:
        """Objects with arc length in [s0, s1): (n, 11) float64 rows, columns as ``S``.."""
        return self._select(self._objects, s0, s1, S)

    def shadows(self, s0: float, s1: float) -> np.ndarray:
        """Shadow bands starting in [s0, s1): (n, 10) float64 rows (corners, s, gain)."""
        return self._select(self._shadows, s0, s1, SHADOW_S)

    def _select(self, store: dict[int, np.ndarray], s0: float, s1: float,
                column: int) -> np.ndarray:
        parts = []
        for chunk in range(max(0, int(s0 // CHUNK)), int(s1 // CHUNK) + 1):
            if chunk not in store:
                self._generate(chunk)
            rows = store[chunk]
            parts.append(rows[(rows[:, column] >= s0) & (rows[:, column] < s1)])
        return np.concatenate(parts)

    def _generate(self, chunk: int) -> None:
        cfg = self._config
        rng = np.random.default_rng([self._seed, 0x5CE7E, chunk])
        start = chunk * CHUNK
        edge = cfg.road_half_width + cfg.shoulder_width

        count = rng.poisson(CHUNK / cfg.distractor_spacing)
        s = np.sort(rng.uniform(start, start + CHUNK, count))
        if chunk == 0:
            s = s[s > 12.0]
            count = len(s)
        kind = rng.choice([BOX, POLE, CONE, TREE], size=count, p=[0.3, 0.2, 0.2, 0.3])
        side = rng.choice([-1.0, 1.0], size=count)
        gap = np.where(kind == CONE, rng.uniform(0.2, 2.0, count),
                       np.where(kind == TREE, rng.uniform(2.0, 20.0, count),
                                rng.uniform(0.5, 12.0, count)))
        r = side * (edge + gap)
        width = np.select([kind == BOX, kind == POLE, kind == CONE],
                          [rng.uniform(0.6, 1.8, count), rng.uniform(0.12, 0.3, count),
                           np.full(count, 0.4)], rng.uniform(0.25, 0.5, count))
        height = np.select([kind == BOX, kind == POLE, kind == CONE],
                           [rng.uniform(0.5, 1.6, count), rng.uniform(2.5, 6.0, count),
                            np.full(count, 0.7)], rng.uniform(1.5, 3.5, count))
        extra = np.select([kind == TREE, kind == POLE],
                          [rng.uniform(1.2, 3.0, count), rng.uniform(0.0, 0.9, count)], 0.0)
        colour = np.select(
            [kind[:, None] == BOX, kind[:, None] == POLE, kind[:, None] == CONE],
            [_BOX_COLOURS[rng.integers(0, len(_BOX_COLOURS), count)],
             np.repeat(rng.uniform(110, 200, (count, 1)), 3, axis=1),
             np.tile([[245.0, 110.0, 20.0]], (count, 1))],
            np.column_stack([rng.uniform(25, 60, count), rng.uniform(80, 130, count),
                             rng.uniform(25, 55, count)]))
        x, y = self._track.point_at(s, r)
        self._objects[chunk] = np.column_stack(
            [s, r, x, y, kind, width, height, extra, colour]).astype(np.float64)

        bands = []
        near_trees = (kind == TREE) & (np.abs(r) < 14.0)
        for ts, tr, radius in zip(s[near_trees], r[near_trees], extra[near_trees], strict=True):
            reach = rng.uniform(6.0, 14.0)
            bands.append((ts - 0.8 * radius, ts + 0.8 * radius, tr, tr - np.sign(tr) * reach))
        for _ in range(rng.poisson(CHUNK / cfg.shadow_spacing)):
            s0 = rng.uniform(start, start + CHUNK)
            half = edge + rng.uniform(0.0, 3.0)
            bands.append((s0, s0 + rng.uniform(0.4, 3.0), -half, half + rng.uniform(0.0, 3.0)))
        rows = np.zeros((len(bands), 10))
        for i, (s0, s1, r0, r1) in enumerate(bands):
            corners_s = np.array([s0, s1, s1, s0])
            corners_r = np.array([r0, r0, r1, r1])
            cx, cy = self._track.point_at(corners_s, corners_r)
            rows[i, 0:8:2], rows[i, 1:8:2] = cx, cy
            rows[i, SHADOW_S] = s0
            rows[i, SHADOW_GAIN] = rng.uniform(0.45, 0.7)
        self._shadows[chunk] = rows

