"""The synthetic road world: a procedural two-lane road, a car and an expert driver.

>>> world = SyntheticWorld(SyntheticWorldConfig(), seed=1)
>>> obs = world.reset()
>>> obs = world.step(world.expert_steer())       # closed loop; or a model's steer
>>> rgb, mask = world.render("center")
>>> world.state.lateral_offset, world.off_lane

Car: kinematic bicycle model about the rear axle (wheelbase 2.7 m, +-28 deg at |steer| = 1),
normalized steer in [-1, 1], POSITIVE = RIGHT as in CARLA. The reference point of the car
(its position, the lateral offset, the camera mounts) is the middle of the rear axle.

Expert: pure pursuit on the centre of the RIGHT lane, looking max(6 m, 0.8 s) ahead, plus
a slowly varying target offset (weave, up to 0.25 m) so it drifts within its lane. While
recording, short random steering kicks are added to what the car executes (not to the
label), so the drive contains recoveries; the label is always the expert's own steer for
the state shown in the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drive_viz.recording.format import CameraSpec
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.render_road import CameraPose, RoadRenderer
from drive_viz.sim.scenery import Scenery
from drive_viz.sim.track import Track, wrap_angle

__all__ = ["POSE_COLUMNS", "ExpertControl", "Observation", "RecordedPose", "SyntheticWorld",
           "SyntheticWorldConfig", "WorldState"]

_START_S = 5.0
_MAX_ACCEL = 3.5
_MAX_BRAKE = 7.0
_DRAG = _MAX_ACCEL / 25.0


@dataclass(frozen=True)
class WorldState:
    """The car at one instant. ``lateral_offset`` from the right lane's centre (m, positive =
    right of it), ``heading_error`` relative to the road direction (rad, positive = pointing
    right of it), ``speed`` (m/s), ``distance`` driven (m), ``s`` arc length along the road
    (m), ``time`` (s), ``steps`` taken, world pose ``x``, ``y`` (m), ``yaw`` (rad) and the
    last executed ``steer`` (normalized)."""

    lateral_offset: float
    heading_error: float
    speed: float
    distance: float
    s: float
    time: float
    steps: int
    x: float
    y: float
    yaw: float
    steer: float


#: Per-row table columns a synthetic recording stores so each frame can be drawn again.
POSE_COLUMNS = ("state_x", "state_y", "state_yaw", "state_s", "state_time")


@dataclass(frozen=True)
class RecordedPose:
    """What ``render`` needs of the car, as a recording row stores it (``POSE_COLUMNS``):
    world ``x``, ``y`` (m), ``yaw`` (rad), arc length ``s`` (m) and ``time`` (s, drives the
    light)."""

    x: float
    y: float
    yaw: float
    s: float
    time: float

    @classmethod
    def of(cls, state: WorldState) -> RecordedPose:
        return cls(state.x, state.y, state.yaw, state.s, state.time)

    def columns(self) -> dict[str, str]:
        """The row's ``POSE_COLUMNS`` as text that reads back to the same float64 values."""
        values = (self.x, self.y, self.yaw, self.s, self.time)
        return {name: repr(float(v)) for name, v in zip(POSE_COLUMNS, values, strict=True)}


@dataclass(frozen=True)
class Observation:
    """What the cameras saw in one state: RGB uint8 (H, W, 3) and class masks uint8 (H, W)
    per camera name (empty when rendering was skipped)."""

    state: WorldState
    images: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpertControl:
    """One expert decision: ``label`` is the expert's steer (normalized, + right) for the
    current state; ``steer`` is what the car executes (label plus any recovery kick)."""

    label: float
    steer: float
    throttle: float
    brake: float


class SyntheticWorld:
    """A seeded road world with one car; see the module docstring."""

    def __init__(self, config: SyntheticWorldConfig | None = None, seed: int = 0) -> None:
        self.config = config or SyntheticWorldConfig()
        self.cameras: tuple[CameraSpec, ...] = self.config.cameras()
        self._build(seed)

    def _build(self, seed: int) -> None:
        self.seed = int(seed)
        streams = np.random.SeedSequence(self.seed).spawn(3)
        self.track = Track(self.config, np.random.default_rng(streams[0]))
        self.scenery = Scenery(self.config, self.track, self.seed)
        self.renderer = RoadRenderer(self.config, self.track, self.scenery, self.seed)
        drift = np.random.default_rng(streams[1])
        self._light_phase = drift.uniform(0, 2 * math.pi, 6)
        self._weave_phase = drift.uniform(0, 2 * math.pi, 3)
        self._kicks = np.random.default_rng(streams[2])
        self._kick_left = 0
        self._kick_value = 0.0

    # ---------------------------------------------------------------- episode
    def reset(self, seed: int | None = None, render: bool = True) -> Observation:
        """Start a new drive at the start of the road, in the right lane's centre at cruise
        speed. A new ``seed`` builds a different road; None replays this one."""
        if seed is not None and int(seed) != self.seed:
            self._build(seed)
        else:
            self._kicks = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(3)[2])
            self._kick_left, self._kick_value = 0, 0.0
        self._time, self._steps, self._distance, self._steer = 0.0, 0, 0.0, 0.0
        self.place(_START_S, 0.0, 0.0, self.config.cruise_speed)
        return self.observe(render)

    def place(self, s: float, lateral_offset: float = 0.0, heading_error: float = 0.0,
              speed: float | None = None) -> None:
        """Put the car at arc length ``s`` (m), ``lateral_offset`` m right of the right lane's
        centre, heading ``heading_error`` rad right of the road; keep the speed if None."""
        x, y = self.track.point_at(s, self.config.lane_centre + lateral_offset)
        _, _, theta = self.track.pose_at(s)
        self._x, self._y = float(x), float(y)
        self._yaw = float(theta) + heading_error
        self._s = float(s)
        if speed is not None:
            self._speed = float(speed)
        self._update_road_frame()

    def reset_to_lane_centre(self) -> None:
        """Put the car back on the right lane's centre, aligned with the road, where it is
        now (used after an intervention)."""
        self.place(self._s, 0.0, 0.0)

    def step(self, steer: float, throttle: float | None = None, brake: float = 0.0,
             render: bool = True) -> Observation:
        """Advance one frame (1 / fps s) executing normalized ``steer`` (+ right, clipped to
        [-1, 1]); ``throttle`` None means cruise control at the expert's target speed."""
        cfg = self.config
        steer = float(np.clip(steer, -1.0, 1.0))
        if throttle is None:
            throttle, brake = self._cruise()
        throttle, brake = float(np.clip(throttle, 0, 1)), float(np.clip(brake, 0, 1))
        dt = 1.0 / cfg.fps / cfg.physics_substeps
        delta = steer * math.radians(cfg.max_steer_deg)
        for _ in range(cfg.physics_substeps):
            accel = _MAX_ACCEL * throttle - _MAX_BRAKE * brake - _DRAG * self._speed
            self._x += self._speed * math.cos(self._yaw) * dt
            self._y += self._speed * math.sin(self._yaw) * dt
            self._yaw += self._speed / cfg.wheelbase * math.tan(delta) * dt
            self._distance += self._speed * dt
            self._speed = max(0.0, self._speed + accel * dt)
        self._yaw = float(wrap_angle(self._yaw))
        self._steer = steer
        self._time += 1.0 / cfg.fps
        self._steps += 1
        self._update_road_frame()
        return self.observe(render)

    def observe(self, render: bool = True) -> Observation:
        """The current state and (with ``render``) every camera's frame and mask."""
        if not render:
            return Observation(self.state)
        images, masks = {}, {}
        for spec in self.cameras:
            images[spec.name], masks[spec.name] = self.render(spec)
        return Observation(self.state, images, masks)

    # ---------------------------------------------------------------- state
    def _update_road_frame(self) -> None:
        s, lateral, theta = self.track.project(self._x, self._y, self._s)
        self._s = s
        self._lateral = lateral - self.config.lane_centre
        self._heading_error = float(wrap_angle(self._yaw - theta))

    @property
    def state(self) -> WorldState:
        return WorldState(
            lateral_offset=self._lateral, heading_error=self._heading_error,
            speed=self._speed, distance=self._distance, s=self._s, time=self._time,
            steps=self._steps, x=self._x, y=self._y, yaw=self._yaw, steer=self._steer)

    @property
    def off_lane(self) -> bool:
        """True when the car has left its lane: more than ``off_lane_offset`` m from the lane
        centre (a wheel well over a line) or facing more than 90 degrees off the road."""
        return (abs(self._lateral) > self.config.off_lane_offset
                or abs(self._heading_error) > math.pi / 2)

    def light(self, time: float | None = None) -> np.ndarray:
        """The global light at ``time`` (s; now if None): RGB gain (3,) float32 drifting slowly
        in brightness (+-``light_drift``) and colour temperature."""
        t = self._time if time is None else time
        p = self._light_phase
        brightness = 1.0 + self.config.light_drift * (
            0.6 * math.sin(2 * math.pi * t / 47.0 + p[0])
            + 0.4 * math.sin(2 * math.pi * t / 113.0 + p[1]))
        warm = 0.08 * math.sin(2 * math.pi * t / 71.0 + p[2])
        return np.array([brightness * (1 + warm), brightness, brightness * (1 - warm)],
                        np.float32)

    # ---------------------------------------------------------------- cameras
    def camera_pose(self, spec: CameraSpec) -> CameraPose:
        """World pose of ``spec`` mounted on the car now."""
        cos_y, sin_y = math.cos(self._yaw), math.sin(self._yaw)
        return CameraPose(self._x + spec.x * cos_y - spec.y * sin_y,
                          self._y + spec.x * sin_y + spec.y * cos_y,
                          self._yaw + math.radians(spec.yaw))

    def render(self, camera: str | CameraSpec = "center", hide: frozenset[str] = frozenset()
               ) -> tuple[np.ndarray, np.ndarray]:
        """One camera's view now: RGB uint8 (H, W, 3) and class mask uint8 (H, W) with
        ``MASK_CLASSES`` labels, pixel-aligned; ``hide``: scene elements to leave out
        (``SCENE_ELEMENTS``)."""
        spec = camera if isinstance(camera, CameraSpec) else self._camera(camera)
        return self.renderer.render(spec, self.camera_pose(spec), self._s + spec.x,
                                    self.light(), hide)

    def element_masks(self, camera: str | CameraSpec = "center") -> dict[str, np.ndarray]:
        """Where each scene element lies in this camera's view now: name -> bool (H, W)
        (see ``RoadRenderer.element_masks``)."""
        spec = camera if isinstance(camera, CameraSpec) else self._camera(camera)
        return self.renderer.element_masks(spec, self.camera_pose(spec), self._s + spec.x)

    def restore(self, pose: RecordedPose, speed: float | None = None) -> None:
        """Put the car exactly where a recording's row says it was (its ``POSE_COLUMNS``), so
        ``render`` draws that row's frame again; ``speed`` (m/s) too if given."""
        self._x, self._y, self._yaw = pose.x, pose.y, pose.yaw
        self._s, self._time = pose.s, pose.time
        if speed is not None:
            self._speed = float(speed)
        _, lateral, theta = self.track.project(self._x, self._y, self._s)
        self._lateral = lateral - self.config.lane_centre
        self._heading_error = float(wrap_angle(self._yaw - theta))

    def _camera(self, name: str) -> CameraSpec:
        for spec in self.cameras:
            if spec.name == name:
                return spec
        raise KeyError(f"no camera {name!r}; cameras are {[c.name for c in self.cameras]}")

    # ---------------------------------------------------------------- expert
    def target_offset(self, time: float | None = None) -> float:
        """The expert's slowly weaving target offset from the lane centre (m, + right)."""
        t = self._time if time is None else time
        p = self._weave_phase
        weave = (0.6 * math.sin(2 * math.pi * t / 9.0 + p[0])
                 + 0.4 * math.sin(2 * math.pi * t / 23.0 + p[1]))
        return self.config.weave_amplitude * weave

    def target_speed(self) -> float:
        """Cruise speed, reduced ahead of tight bends (lateral acceleration limit), m/s."""
        cfg = self.config
        kappa = self.track.max_curvature(self._s, self._s + 40.0)
        return min(cfg.cruise_speed, math.sqrt(cfg.max_lateral_accel / max(kappa, 1e-6)))

    def expert_steer(self, weave: bool = True) -> float:
        """The expert's normalized steer (+ right) now: pure pursuit towards the point
        max(6 m, 0.8 s) ahead on the right lane's centre plus the weave offset (without it
        when ``weave`` is False: the part of the label the car's state determines)."""
        cfg = self.config
        lookahead = max(6.0, 0.8 * self._speed)
        offset = self.target_offset() if weave else 0.0
        tx, ty = self.track.point_at(self._s + lookahead, cfg.lane_centre + offset)
        dx, dy = float(tx) - self._x, float(ty) - self._y
        cos_y, sin_y = math.cos(self._yaw), math.sin(self._yaw)
        ahead = dx * cos_y + dy * sin_y
        right = -dx * sin_y + dy * cos_y
        alpha = math.atan2(right, ahead)
        distance = math.hypot(dx, dy)
        delta = math.atan2(2.0 * cfg.wheelbase * math.sin(alpha), distance)
        return float(np.clip(delta / math.radians(cfg.max_steer_deg), -1.0, 1.0))

    def _cruise(self) -> tuple[float, float]:
        error = self.target_speed() - self._speed
        throttle = float(np.clip(0.5 * error + _DRAG * self._speed / _MAX_ACCEL, 0, 1))
        brake = float(np.clip(-0.3 * error, 0, 1)) if error < -1.0 else 0.0
        return throttle, brake

    def expert_control(self, perturb: bool = True) -> ExpertControl:
        """The expert's decision now; with ``perturb``, occasionally a short random kick (see
        the config) is added to the executed steer so the recording contains recoveries."""
        cfg = self.config
        label = self.expert_steer()
        throttle, brake = self._cruise()
        kick = 0.0
        if perturb and cfg.perturbation_strength > 0:
            if self._kick_left <= 0:
                if self._kicks.random() < 1.0 / (cfg.perturbation_interval * cfg.fps):
                    self._kick_left = max(1, int(round(
                        cfg.perturbation_duration * cfg.fps * self._kicks.uniform(0.6, 1.2))))
                    self._kick_value = float(self._kicks.choice((-1.0, 1.0))
                                             * self._kicks.uniform(0.4, 1.0)
                                             * cfg.perturbation_strength)
            if self._kick_left > 0:
                kick = self._kick_value
                self._kick_left -= 1
        steer = float(np.clip(label + kick, -1.0, 1.0))
        return ExpertControl(label=label, steer=steer, throttle=throttle, brake=brake)
