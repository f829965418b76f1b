"""Settings of the synthetic road world: one frozen dataclass, shared by track, renderer and car.

Conventions: lengths in metres, angles in degrees in the config (radians in code), speeds in
m/s. The road is a two-lane road; the expert drives on the RIGHT lane. Lateral offsets are
positive to the right, headings and curvatures positive when turning right (as CARLA's yaw).
"""

from __future__ import annotations

from dataclasses import dataclass

from drive_viz.recording.format import CameraSpec


@dataclass(frozen=True)
class SyntheticWorldConfig:
    """Everything that shapes the synthetic world; the seed picks the track and scenery.

    Geometry: ``lane_width`` per lane (two lanes), solid edge lines of ``edge_line_width``
    just outside each lane, a dashed centre line (``dash_length`` on, ``dash_period``
    repeat). Cameras: ``fov`` horizontal degrees, mounted ``camera_x`` ahead of the rear
    axle at ``camera_z`` above the ground, side cameras ``side_camera_offset`` to either side;
    ``horizon_fraction`` puts the horizon that far from the top of the image (the principal
    point is shifted, the camera is level). Car: kinematic bicycle with ``wheelbase`` and
    ``max_steer_deg`` at steer = 1. Expert: pure pursuit on the right-lane centre plus a
    slow weave of up to ``weave_amplitude`` and occasional steering kicks (every
    ``perturbation_interval`` s on average, up to ``perturbation_strength`` normalized steer
    for ``perturbation_duration`` s) that it must recover from.
    """

    fps: float = 20.0
    width: int = 320
    height: int = 160
    fov: float = 90.0
    camera_x: float = 1.5
    camera_z: float = 1.5
    side_cameras: bool = False
    side_camera_offset: float = 0.8
    horizon_fraction: float = 0.37
    view_distance: float = 80.0

    lane_width: float = 3.5
    edge_line_width: float = 0.15
    centre_line_width: float = 0.12
    dash_length: float = 3.0
    dash_period: float = 8.0
    shoulder_width: float = 0.8

    min_radius: float = 35.0
    max_radius: float = 500.0
    straight_fraction: float = 0.3
    straight_start: float = 60.0

    distractor_spacing: float = 9.0
    shadow_spacing: float = 25.0
    light_drift: float = 0.3

    wheelbase: float = 2.7
    max_steer_deg: float = 28.0
    cruise_speed: float = 10.0
    max_lateral_accel: float = 3.0
    physics_substeps: int = 2

    weave_amplitude: float = 0.25
    perturbation_interval: float = 6.0
    perturbation_strength: float = 0.3
    perturbation_duration: float = 0.5
    off_lane_offset: float = 1.2

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.width >= 16 and self.height >= 16):
            raise ValueError("fps must be positive and images at least 16x16 pixels")
        if not 0.2 <= self.horizon_fraction <= 0.6:
            raise ValueError(f"horizon_fraction {self.horizon_fraction} is outside 0.2..0.6")
        if not 0 < self.min_radius < self.max_radius:
            raise ValueError("need 0 < min_radius < max_radius")

    @property
    def lane_centre(self) -> float:
        """Lateral position of the right lane's centre from the road centre (m)."""
        return self.lane_width / 2

    @property
    def road_half_width(self) -> float:
        """Half width of the asphalt including the edge lines, without the shoulder (m)."""
        return self.lane_width + self.edge_line_width + 0.25

    def cameras(self) -> tuple[CameraSpec, ...]:
        """The camera specs: ``center`` and, with ``side_cameras``, ``left`` and ``right``."""
        center = CameraSpec("center", self.width, self.height, self.fov,
                            x=self.camera_x, y=0.0, z=self.camera_z)
        if not self.side_cameras:
            return (center,)
        offset = self.side_camera_offset
        return (
            center,
            CameraSpec("left", self.width, self.height, self.fov,
                       x=self.camera_x, y=-offset, z=self.camera_z),
            CameraSpec("right", self.width, self.height, self.fov,
                       x=self.camera_x, y=offset, z=self.camera_z),
        )
