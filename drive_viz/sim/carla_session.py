"""A synchronous CARLA session: connect, spawn the ego vehicle with its cameras, tick, tear down.

``CarlaSession`` is shared by the recorder (``drive-viz record``) and the live overlay. It puts
the server into synchronous mode with a fixed time step of ``1 / fps`` seconds, spawns the ego
vehicle with RGB cameras and a semantic segmentation camera, and on every ``next_frames()``
ticks the world once and returns the frames of every sensor for that tick, matched by frame id.

Camera rig (metres and degrees in the vehicle frame, x forward, y right, z up; CARLA's UE4
frame is left-handed with y to the right, which is the recording format's convention):

- ``center`` at x=1.5, y=0, z=1.4, looking forward;
- ``left`` / ``right`` at y=-0.5 / +0.5 (``SIDE_OFFSET_M``), same x, z and yaw, like the
  left/right cameras of the DAVE-2 data collection rig;
- a semantic segmentation camera at the center camera's pose, size and field of view.

Mask classes (``MASK_CLASSES``) from the segmentation camera's tags (``carla.CityObjectLabel``,
CARLA 0.9.16: the tag is the red channel of the raw BGRA image): ``Roads`` -> road,
``RoadLines`` -> lane_marking, ``DISTRACTOR_TAGS`` (vehicles, people, poles, traffic lights and
signs) -> distractor, everything else -> other.

``carla`` is imported inside functions only: the rest of drive-viz works without it.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import cv2
import numpy as np

from drive_viz.errors import DriveVizError, OptionError
from drive_viz.recording.format import MASK_CLASSES, CameraSpec

SIDE_OFFSET_M = 0.5
CAMERA_X_M = 1.5
CAMERA_Z_M = 1.4
EGO_BLUEPRINT = "vehicle.tesla.model3"
ROAD_TAGS = ("Roads",)
LANE_MARKING_TAGS = ("RoadLines",)
DISTRACTOR_TAGS = ("Pedestrians", "Rider", "Car", "Truck", "Bus", "Train", "Motorcycle",
                   "Bicycle", "Poles", "TrafficLight", "TrafficSigns")
SEGMENTATION = "segmentation"
_MAX_PENDING_FRAMES = 64


def import_carla() -> ModuleType:
    """The ``carla`` client module; DriveVizError if it is not installed."""
    try:
        import carla
    except ImportError:
        raise DriveVizError(
            "the carla client package is not installed (pip install carla==0.9.16; "
            "it exists for Python 3.11 on Linux x86-64)") from None
    return carla


@dataclass(frozen=True)
class SessionConfig:
    """What to connect to and what to spawn. ``fps`` is the simulation rate (the fixed time step
    is ``1 / fps`` s); ``width`` x ``height`` pixels and ``fov`` degrees apply to every camera;
    ``timeout`` seconds bounds every server call and the wait for a tick's sensor frames."""

    host: str = "localhost"
    port: int = 2000
    town: str | None = None
    fps: float = 20.0
    width: int = 800
    height: int = 600
    fov: float = 90.0
    side_cameras: bool = True
    traffic: int = 0
    weather: str | None = None
    seed: int | None = None
    timeout: float = 10.0
    tm_port: int = 8000
    autopilot: bool = True
    warmup_ticks: int = 10

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 1 <= self.fps <= 1000):
            raise OptionError(f"fps {self.fps} is outside 1..1000", "fps")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise OptionError(f"timeout {self.timeout} must be a positive number of seconds",
                              "timeout")
        if self.traffic < 0:
            raise OptionError(f"traffic {self.traffic} must be 0 or more", "traffic")
        if self.warmup_ticks < 0:
            raise DriveVizError(f"warmup_ticks {self.warmup_ticks} must be 0 or more")

    def cameras(self) -> tuple[CameraSpec, ...]:
        """The RGB cameras' specs (validated by CameraSpec): center, then left and right."""
        offsets = {"center": 0.0}
        if self.side_cameras:
            offsets.update(left=-SIDE_OFFSET_M, right=SIDE_OFFSET_M)
        return tuple(CameraSpec(name=name, width=self.width, height=self.height, fov=self.fov,
                                x=CAMERA_X_M, y=y, z=CAMERA_Z_M, yaw=0.0)
                     for name, y in offsets.items())


@dataclass(frozen=True)
class FrameBundle:
    """Everything one tick produced. ``images`` maps camera name to RGB uint8 (H, W, 3);
    ``mask`` is the center camera's uint8 (H, W) MASK_CLASSES labels; ``steer`` in [-1, 1]
    (positive = right), ``throttle`` and ``brake`` in [0, 1] are the control applied in this
    tick; ``speed`` in m/s; ``timestamp`` in simulated seconds since the episode started."""

    frame: int
    timestamp: float
    images: dict[str, np.ndarray]
    mask: np.ndarray
    steer: float
    throttle: float
    brake: float
    speed: float


def bgra_to_rgb(raw: bytes | memoryview, width: int, height: int) -> np.ndarray:
    """CARLA's BGRA ``Image.raw_data`` as a new RGB uint8 (height, width, 3) array."""
    return cv2.cvtColor(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4),
                        cv2.COLOR_BGRA2RGB)


def segmentation_tags(raw: bytes | memoryview, width: int, height: int) -> np.ndarray:
    """The semantic tag of each pixel, uint8 (height, width): the red channel of BGRA raw data."""
    return cv2.extractChannel(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4), 2)


def mask_lookup(carla: ModuleType) -> np.ndarray:
    """(256,) uint8 table from CARLA tag id to MASK_CLASSES label, built from the names of
    ``carla.CityObjectLabel`` so that it follows the installed version's tag ids."""
    table = np.full(256, MASK_CLASSES["other"], dtype=np.uint8)
    for names, label in ((DISTRACTOR_TAGS, "distractor"), (ROAD_TAGS, "road"),
                         (LANE_MARKING_TAGS, "lane_marking")):
        for name in names:
            table[int(getattr(carla.CityObjectLabel, name))] = MASK_CLASSES[label]
    return table


def weather_presets(carla: ModuleType) -> list[str]:
    """Names of the ``carla.WeatherParameters`` presets (ClearNoon, WetSunset, ...)."""
    kind = carla.WeatherParameters
    return sorted(n for n in dir(kind) if n[:1].isupper() and isinstance(getattr(kind, n), kind))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CarlaSession:
    """Context manager around one synchronous CARLA session.

    >>> with CarlaSession(SessionConfig(town="Town04", fps=20)) as session:
    ...     bundle = session.next_frames()      # one tick, all sensors matched by frame id
    ...     session.apply_steer(0.1, 0.4)       # drive it yourself (turns the autopilot off)

    ``__exit__`` stops the sensors, destroys every spawned actor, switches the Traffic Manager
    out of synchronous mode and restores the world's original settings and weather, whether the
    body ended normally, raised, or was interrupted with Ctrl-C.
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.cameras = config.cameras()
        self.carla: ModuleType | None = None
        self.client: Any = None
        self.world: Any = None
        self.traffic_manager: Any = None
        self.ego: Any = None
        self.town = ""
        self.server_version = ""
        self.autopilot = False
        self._sensors: dict[str, Any] = {}
        self._traffic: list[Any] = []
        self._original_settings: Any = None
        self._original_weather: Any = None
        self._tm_synchronous = False
        self._lookup = np.zeros(256, dtype=np.uint8)
        self._arrived = threading.Condition()
        # frame id -> sensor name -> (pixels, simulated seconds)
        self._pending: dict[int, dict[str, tuple[np.ndarray, float]]] = {}
        self._last_frame = -1
        self._rng = random.Random(config.seed)

    # -- setup -----------------------------------------------------------------------------

    def __enter__(self) -> CarlaSession:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _open(self) -> None:
        carla = self.carla = import_carla()
        self._lookup = mask_lookup(carla)
        weather = self._weather_preset(carla)
        config = self.config
        where = f"{config.host}:{config.port}"
        self.client = carla.Client(config.host, config.port)
        self.client.set_timeout(config.timeout)
        try:
            self.server_version = self.client.get_server_version()
            world = self._load_town(self.client.get_world())
        except RuntimeError as exc:
            raise DriveVizError(
                f"CARLA server at {where} did not answer within {config.timeout:g} s "
                f"({_one_line(exc)}); start one with launch/carla-server.sh start") from None
        client_version = self.client.get_client_version()
        if client_version != self.server_version:
            print(f"drive-viz: warning: carla client {client_version} and server "
                  f"{self.server_version} differ", file=sys.stderr)
        self.world = world
        self.town = world.get_map().name.rsplit("/", 1)[-1]
        self._call("set up synchronous mode", self._set_synchronous)
        if weather is not None:
            self._original_weather = world.get_weather()
            world.set_weather(weather)
        self._call("spawn the vehicles and sensors", self._spawn)
        for _ in range(config.warmup_ticks):
            self.next_frames()

    def _call(self, what: str, step: Callable[[], None]) -> None:
        """Run a setup step; a server error becomes a one-line DriveVizError."""
        try:
            step()
        except RuntimeError as exc:
            raise DriveVizError(f"CARLA: cannot {what}: {_one_line(exc)}") from None

    def _weather_preset(self, carla: ModuleType) -> Any:
        name = self.config.weather
        if name is None:
            return None
        presets = weather_presets(carla)
        if name not in presets:
            raise OptionError(f"weather {name!r} is not a CARLA preset; "
                              f"choose one of {', '.join(presets)}", "weather")
        return getattr(carla.WeatherParameters, name)

    def _load_town(self, world: Any) -> Any:
        town = self.config.town
        if town is None or world.get_map().name.rsplit("/", 1)[-1] == town:
            return world
        available = sorted(m.rsplit("/", 1)[-1] for m in self.client.get_available_maps())
        if town not in available:
            raise OptionError(f"town {town!r} is not on the server; "
                              f"choose one of {', '.join(available)}", "town")
        self.client.set_timeout(max(self.config.timeout, 60.0))
        try:
            return self.client.load_world(town)
        finally:
            self.client.set_timeout(self.config.timeout)

    def _set_synchronous(self) -> None:
        self._original_settings = self.world.get_settings()
        settings = self.world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = 1.0 / self.config.fps
        self.world.apply_settings(settings)
        self.traffic_manager = self.client.get_trafficmanager(self.config.tm_port)
        self.traffic_manager.set_synchronous_mode(True)
        self._tm_synchronous = True
        if self.config.seed is not None:
            self.traffic_manager.set_random_device_seed(self.config.seed)

    def _spawn(self) -> None:
        library = self.world.get_blueprint_library()
        spawn_points = list(self.world.get_map().get_spawn_points())
        self._rng.shuffle(spawn_points)
        ego_blueprint = library.find(EGO_BLUEPRINT)
        ego_blueprint.set_attribute("role_name", "hero")
        while spawn_points and self.ego is None:
            self.ego = self.world.try_spawn_actor(ego_blueprint, spawn_points.pop())
        if self.ego is None:
            raise DriveVizError(f"CARLA: no free spawn point for the ego vehicle in {self.town}")
        for spec in self.cameras:
            self._spawn_camera(library, "sensor.camera.rgb", spec.name, spec)
        self._spawn_camera(library, "sensor.camera.semantic_segmentation", SEGMENTATION,
                           self.cameras[0])
        self.set_autopilot(self.config.autopilot)
        vehicles = list(library.filter("vehicle.*"))
        while spawn_points and len(self._traffic) < self.config.traffic:
            blueprint = self._rng.choice(vehicles)
            vehicle = self.world.try_spawn_actor(blueprint, spawn_points.pop())
            if vehicle is not None:
                self._traffic.append(vehicle)
                vehicle.set_autopilot(True, self.config.tm_port)
        if len(self._traffic) < self.config.traffic:
            print(f"drive-viz: warning: spawned {len(self._traffic)} of {self.config.traffic} "
                  f"traffic vehicles (no free spawn points left)", file=sys.stderr)

    def _spawn_camera(self, library: Any, blueprint_id: str, name: str, spec: CameraSpec) -> None:
        carla = self.carla
        blueprint = library.find(blueprint_id)
        blueprint.set_attribute("image_size_x", str(spec.width))
        blueprint.set_attribute("image_size_y", str(spec.height))
        blueprint.set_attribute("fov", str(spec.fov))
        pose = carla.Transform(carla.Location(x=spec.x, y=spec.y, z=spec.z),
                               carla.Rotation(pitch=0.0, yaw=spec.yaw, roll=0.0))
        sensor = self.world.spawn_actor(blueprint, pose, attach_to=self.ego)
        self._sensors[name] = sensor
        sensor.listen(lambda image, name=name: self._on_image(name, image))

    # -- per tick --------------------------------------------------------------------------

    def _on_image(self, name: str, image: Any) -> None:
        """Sensor callback (CARLA's thread): convert and file the image under its frame id."""
        if name == SEGMENTATION:
            pixels = cv2.LUT(segmentation_tags(image.raw_data, image.width, image.height),
                             self._lookup)
        else:
            pixels = bgra_to_rgb(image.raw_data, image.width, image.height)
        with self._arrived:
            if image.frame <= self._last_frame:
                return
            self._pending.setdefault(image.frame, {})[name] = (pixels, float(image.timestamp))
            while len(self._pending) > _MAX_PENDING_FRAMES:
                del self._pending[min(self._pending)]
            self._arrived.notify_all()

    def next_frames(self) -> FrameBundle:
        """Tick the world once and return that tick's frames, control and speed.

        Waits up to ``timeout`` seconds for every sensor's image of the tick's frame id;
        images of older frames are dropped, images of later frames are kept for their tick.
        """
        try:
            frame = int(self.world.tick(self.config.timeout))
        except RuntimeError as exc:
            raise DriveVizError(f"CARLA server at {self.config.host}:{self.config.port} "
                                f"stopped answering ({_one_line(exc)})") from None
        deadline = time.monotonic() + self.config.timeout
        with self._arrived:
            while True:
                arrived = self._pending.get(frame, {})
                missing = sorted(set(self._sensors) - set(arrived))
                if not missing:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DriveVizError(f"CARLA sensor(s) {', '.join(missing)} sent no image "
                                        f"for frame {frame} within {self.config.timeout:g} s")
                self._arrived.wait(remaining)
            self._last_frame = frame
            del self._pending[frame]
            for stale in [f for f in self._pending if f < frame]:
                del self._pending[stale]
        control = self.ego.get_control()
        velocity = self.ego.get_velocity()
        return FrameBundle(
            frame=frame,
            timestamp=arrived[self.cameras[0].name][1],
            images={spec.name: arrived[spec.name][0] for spec in self.cameras},
            mask=arrived[SEGMENTATION][0],
            steer=float(control.steer),
            throttle=float(control.throttle),
            brake=float(control.brake),
            speed=math.sqrt(velocity.x ** 2 + velocity.y ** 2 + velocity.z ** 2),
        )

    def set_autopilot(self, enabled: bool) -> None:
        """Let the Traffic Manager drive the ego vehicle (True) or leave it to apply_steer."""
        self.ego.set_autopilot(enabled, self.config.tm_port)
        self.autopilot = enabled

    def apply_steer(self, steer: float, throttle: float, brake: float = 0.0) -> None:
        """Drive the ego vehicle for the next tick: steer in [-1, 1] (positive = right),
        throttle and brake in [0, 1] (values are clipped). Turns the autopilot off."""
        if self.autopilot:
            self.set_autopilot(False)
        self.ego.apply_control(self.carla.VehicleControl(
            throttle=float(np.clip(throttle, 0.0, 1.0)), steer=float(np.clip(steer, -1.0, 1.0)),
            brake=float(np.clip(brake, 0.0, 1.0))))

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop sensors, destroy every spawned actor, restore the Traffic Manager's and the
        world's settings. Safe to call twice; a failing step is reported and the rest still run."""
        steps: list[tuple[str, Callable[[], object]]] = []
        steps += [(f"stop sensor {n}", s.stop) for n, s in self._sensors.items()]
        steps += [(f"destroy sensor {n}", s.destroy) for n, s in self._sensors.items()]
        steps += [("destroy a traffic vehicle", v.destroy) for v in self._traffic]
        if self.ego is not None:
            steps.append(("destroy the ego vehicle", self.ego.destroy))
        world, traffic_manager = self.world, self.traffic_manager
        settings, weather = self._original_settings, self._original_weather
        if self._tm_synchronous:
            steps.append(("switch the Traffic Manager to asynchronous mode",
                          lambda: traffic_manager.set_synchronous_mode(False)))
        if settings is not None:
            steps.append(("restore the world settings", lambda: world.apply_settings(settings)))
        if weather is not None:
            steps.append(("restore the weather", lambda: world.set_weather(weather)))
        self._sensors, self._traffic, self.ego = {}, [], None
        self._tm_synchronous = False
        self._original_settings = self._original_weather = None
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing down: one failure must not leak the rest
                print(f"drive-viz: warning: CARLA: could not {what}: {_one_line(exc)}",
                      file=sys.stderr)

