"""The procedural road centreline of the synthetic world.

World frame: x, y in metres with y to the RIGHT of x (as CARLA, seen from above), heading
``theta`` in radians from the x axis, positive turning right. The centreline is built from
segments of constant curvature (straights and left/right arcs, gentle to tight) joined by
clothoid ramps, so curvature is continuous, and is sampled every ``STEP`` metres. It grows
on demand (``ensure``) from its own random stream, so a seed always gives the same road.
"""

from __future__ import annotations

import math

import numpy as np

from drive_viz.sim.config import SyntheticWorldConfig

STEP = 0.5
_GROW = 2000.0


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) in radians wrapped to [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


class Track:
    """Centreline samples: arc length ``s`` (m), position ``x``, ``y`` (m), heading ``theta``
    (rad) and curvature ``kappa`` (1/m, positive = curving right), all (N,) float64."""

    def __init__(self, config: SyntheticWorldConfig, rng: np.random.Generator) -> None:
        self._config = config
        self._rng = rng
        self.kappa = np.zeros(1)
        self._extend_kappa(np.zeros(int(config.straight_start / STEP)))
        self.ensure(_GROW)

    @property
    def length(self) -> float:
        """Length of the centreline generated so far (m)."""
        return float(self.s[-1])

    def ensure(self, s_max: float) -> None:
        """Grow the centreline until it is at least ``s_max`` metres long."""
        while (len(self.kappa) - 1) * STEP < s_max:
            self._extend_kappa(self._next_segment())

    def _next_segment(self) -> np.ndarray:
        cfg, rng = self._config, self._rng
        if rng.random() < cfg.straight_fraction:
            target = 0.0
            hold = rng.uniform(30.0, 150.0)
        else:
            radius = math.exp(rng.uniform(math.log(cfg.min_radius), math.log(cfg.max_radius)))
            target = rng.choice((-1.0, 1.0)) / radius
            hold = float(np.clip(math.radians(rng.uniform(25, 110)) * radius, 20.0, 300.0))
        ramp = rng.uniform(15.0, 40.0)
        start = self.kappa[-1]
        ramp_part = np.linspace(start, target, max(2, int(ramp / STEP)) + 1)[1:]
        return np.concatenate([ramp_part, np.full(int(hold / STEP), target)])

    def _extend_kappa(self, more: np.ndarray) -> None:
        self.kappa = np.concatenate([self.kappa, more])
        n = len(self.kappa)
        self.s = np.arange(n) * STEP
        theta = np.concatenate([[0.0], np.cumsum(0.5 * (self.kappa[1:] + self.kappa[:-1]) * STEP)])
        mid = theta[:-1] + 0.5 * np.diff(theta)
        self.theta = theta
        self.x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * STEP)])
        self.y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * STEP)])

    def pose_at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centreline x, y (m) and heading (rad) at arc length(s) ``s``, linearly interpolated."""
        s = np.asarray(s, dtype=np.float64)
        self.ensure(float(np.max(s, initial=0.0)) + 1.0)
        i = np.clip((s / STEP).astype(np.int64), 0, len(self.s) - 2)
        w = s / STEP - i
        x = self.x[i] + w * (self.x[i + 1] - self.x[i])
        y = self.y[i] + w * (self.y[i + 1] - self.y[i])
        theta = self.theta[i] + w * (self.theta[i + 1] - self.theta[i])
        return x, y, theta

    def point_at(self, s: np.ndarray | float, lateral: np.ndarray | float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """World x, y (m) of the point ``lateral`` metres right of the centreline at ``s``."""
        x, y, theta = self.pose_at(s)
        return x - np.sin(theta) * lateral, y + np.cos(theta) * lateral

    def project(self, x: float, y: float, s_hint: float) -> tuple[float, float, float]:
        """Nearest centreline point to world (x, y), searched within 40 m of ``s_hint``.

        Returns (s, lateral, theta): arc length (m), signed offset right of the centreline
        (m) and the centreline heading there (rad).
        """
        self.ensure(s_hint + 60.0)
        lo = max(0, int((s_hint - 40.0) / STEP))
        hi = min(len(self.s), int((s_hint + 40.0) / STEP) + 2)
        dx = x - self.x[lo:hi]
        dy = y - self.y[lo:hi]
        i = lo + int(np.argmin(dx * dx + dy * dy))
        theta = self.theta[i]
        along = (x - self.x[i]) * math.cos(theta) + (y - self.y[i]) * math.sin(theta)
        s = float(np.clip(self.s[i] + along, 0.0, self.length))
        px, py, th = self.pose_at(s)
        lateral = -(x - float(px)) * math.sin(float(th)) + (y - float(py)) * math.cos(float(th))
        return s, float(lateral), float(th)

    def max_curvature(self, s0: float, s1: float) -> float:
        """Largest |curvature| (1/m) between arc lengths ``s0`` and ``s1``."""
        self.ensure(s1 + 1.0)
        lo, hi = int(max(s0, 0.0) / STEP), int(s1 / STEP) + 1
        return float(np.max(np.abs(self.kappa[lo:hi]), initial=0.0))
