"""A fake ``carla`` module for tests: a CARLA server simulated in-process.

``make_fake_carla(scenario)`` returns a ``types.ModuleType`` to put in ``sys.modules["carla"]``
and the ``FakeServer`` behind it (what was spawned, destroyed, which settings are applied).

Every fake class stands for the real class of the same name in ``carla`` 0.9.16 and only has
public attributes the real class has (tests/test_carla_api.py checks that, including method
parameter names and whether an attribute is a method or a property). Double-only state lives
in attributes starting with ``_`` and on ``FakeServer``.

What the fake server produces for world frame ``F`` (the facts tests check recordings against):

- an RGB camera mounted at lateral offset ``y`` metres delivers a flat image with red
  ``rgb_red(F)`` and green ``rgb_green(y)`` (blue 40), as BGRA ``raw_data``;
- the semantic segmentation camera delivers tags (red channel of BGRA): ``Sky`` in the top
  half; in the bottom half ``Roads``, one ``RoadLines`` column at ``marking_column(F, width)``,
  a 4x4 ``Car`` block at the bottom-left corner and ``Sidewalks`` in the last two columns;
- ``Vehicle.get_control()`` returns ``autopilot_control(F)`` while the autopilot is on, else
  the last applied control; ``get_velocity()`` returns ``velocity(F)``.
"""

from __future__ import annotations

import enum
import fnmatch
import math
import random
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TIMEOUT_MESSAGE = ("time-out of {ms}ms while waiting for the simulator, make sure the simulator "
                   "is ready and connected to {host}:{port}")


# -- what the fake world produces -------------------------------------------------------------

def rgb_red(frame: int) -> int:
    """Red value of every RGB camera pixel in world frame ``frame``."""
    return (frame % 25) * 10


def rgb_green(y: float) -> int:
    """Green value of every pixel of a camera mounted ``y`` metres right of the vehicle axis."""
    return int(round(128 + 100 * y))


def marking_column(frame: int, width: int) -> int:
    """Column of the lane marking in the segmentation image of world frame ``frame``."""
    return (frame * 7) % (width - 6) + 4


def autopilot_control(frame: int) -> tuple[float, float, float]:
    """(steer, throttle, brake) the fake autopilot applies in world frame ``frame``."""
    return (round(0.8 * math.sin(frame / 3.0), 4), 0.5 + 0.01 * (frame % 10),
            0.25 if frame % 4 == 0 else 0.0)


def velocity(frame: int) -> tuple[float, float, float]:
    """Ego velocity (x, y, z) in m/s in world frame ``frame``."""
    return (3.0 + 0.1 * (frame % 5), -4.0, 0.5)


# -- scenario and server state ----------------------------------------------------------------

@dataclass
class Scenario:
    """How the fake server behaves. ``delivery``: "in_order" or "shuffled" sensor callbacks;
    ``early_sensor``: index (spawn order) of a sensor that delivers frame F+1 before frame F;
    ``stale_sensor``: index of a sensor that re-delivers frame F-1 after frame F;
    ``thread_delay``: > 0 delivers from another thread after that many seconds;
    ``fail_at_tick`` / ``interrupt_at_tick``: the k-th tick (1-based) raises RuntimeError /
    KeyboardInterrupt; ``silent_sensor``: index of a sensor that never delivers."""

    server_up: bool = True
    map_name: str = "Carla/Maps/Town10HD_Opt"
    maps: tuple[str, ...] = ("/Game/Carla/Maps/Town01", "/Game/Carla/Maps/Town04",
                             "/Game/Carla/Maps/Town10HD_Opt")
    spawn_points: int = 8
    occupied_spawn_points: frozenset[int] = frozenset()
    first_frame: int = 1000
    delivery: str = "in_order"
    early_sensor: int | None = None
    stale_sensor: int | None = None
    silent_sensor: int | None = None
    thread_delay: float = 0.0
    fail_at_tick: int | None = None
    interrupt_at_tick: int | None = None
    seed: int = 0


@dataclass
class FakeServer:
    """The fake simulator's state, for tests to inspect."""

    scenario: Scenario
    settings: Any = None
    weather: Any = None
    tm_synchronous: dict[int, bool] = field(default_factory=dict)
    actors: list[Any] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)
    loaded_maps: list[str] = field(default_factory=list)
    stopped_before_destroy: dict[int, bool] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    world: Any = None

    @property
    def alive(self) -> list[Any]:
        return [a for a in self.actors if a._alive]

    def join_threads(self) -> None:
        for thread in self.threads:
            thread.join()


# -- geometry and control ---------------------------------------------------------------------

class Vector3D:
    _real = "Vector3D"

    def __init__(self, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> None:
        self.x, self.y, self.z = x, y, z

    x: float
    y: float
    z: float


class Location(Vector3D):
    _real = "Location"


class Rotation:
    _real = "Rotation"
    pitch: float
    yaw: float
    roll: float

    def __init__(self, pitch: float = 0.0, yaw: float = 0.0, roll: float = 0.0) -> None:
        self.pitch, self.yaw, self.roll = pitch, yaw, roll


class Transform:
    _real = "Transform"
    location: Location
    rotation: Rotation

    def __init__(self, location: Location | None = None, rotation: Rotation | None = None) -> None:
        self.location = location or Location()
        self.rotation = rotation or Rotation()


class VehicleControl:
    _real = "VehicleControl"
    throttle: float
    steer: float
    brake: float

    def __init__(self, throttle: float = 0.0, steer: float = 0.0, brake: float = 0.0) -> None:
        self.throttle, self.steer, self.brake = throttle, steer, brake


class WorldSettings:
    _real = "WorldSettings"
    synchronous_mode: bool
    fixed_delta_seconds: float | None
    no_rendering_mode: bool

    def __init__(self, synchronous_mode: bool = False, no_rendering_mode: bool = False,
                 fixed_delta_seconds: float | None = None) -> None:
        self.synchronous_mode = synchronous_mode
        self.no_rendering_mode = no_rendering_mode
        self.fixed_delta_seconds = fixed_delta_seconds

    def _copy(self) -> WorldSettings:
        return WorldSettings(self.synchronous_mode, self.no_rendering_mode,
                             self.fixed_delta_seconds)

    def _as_tuple(self) -> tuple[bool, bool, float | None]:
        return (self.synchronous_mode, self.no_rendering_mode, self.fixed_delta_seconds)


class WeatherParameters:
    """Presets are class attributes, as in the real module."""

    _real = "WeatherParameters"
    _name = "Custom"


for _preset in ("Default", "ClearNoon", "CloudyNoon", "WetSunset", "HardRainNoon", "ClearNight"):
    setattr(WeatherParameters, _preset, WeatherParameters())
    getattr(WeatherParameters, _preset)._name = _preset


class CityObjectLabel(enum.IntEnum):
    """The 0.9.16 semantic tags (a subset; values must equal the real ones)."""

    NONE = 0
    Roads = 1
    Sidewalks = 2
    Buildings = 3
    Poles = 6
    TrafficLight = 7
    TrafficSigns = 8
    Vegetation = 9
    Sky = 11
    Pedestrians = 12
    Rider = 13
    Car = 14
    Truck = 15
    Bus = 16
    Train = 17
    Motorcycle = 18
    Bicycle = 19
    RoadLines = 24


class Image:
    _real = "Image"
    frame: int
    timestamp: float
    width: int
    height: int
    raw_data: bytes

    def __init__(self, frame: int, timestamp: float, width: int, height: int,
                 raw_data: bytes) -> None:
        self.frame, self.timestamp = frame, timestamp
        self.width, self.height, self.raw_data = width, height, raw_data


# -- blueprints and actors --------------------------------------------------------------------

class ActorBlueprint:
    _real = "ActorBlueprint"
    id: str

    def __init__(self, blueprint_id: str) -> None:
        self.id = blueprint_id
        self._attributes: dict[str, str] = {}

    def set_attribute(self, key: str, value: str, /) -> None:
        if not isinstance(value, str):
            raise TypeError("ActorBlueprint.set_attribute takes a string value")
        self._attributes[key] = value


class BlueprintLibrary:
    _real = "BlueprintLibrary"

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids

    def find(self, id: str) -> ActorBlueprint:
        if id not in self._ids:
            raise IndexError(f"blueprint '{id}' not found")
        return ActorBlueprint(id)

    def filter(self, wildcard_pattern: str) -> BlueprintLibrary:
        return BlueprintLibrary([i for i in self._ids if fnmatch.fnmatch(i, wildcard_pattern)])

    def __iter__(self):
        return (ActorBlueprint(i) for i in self._ids)


class Actor:
    _real = "Actor"
    id: int
    type_id: str

    def __init__(self, world: World, blueprint: ActorBlueprint, transform: Transform,
                 parent: Actor | None) -> None:
        self._world = world
        self._blueprint = blueprint
        self._transform = transform
        self._parent = parent
        self._alive = True
        self.id = len(world._server.actors) + 1
        self.type_id = blueprint.id

    @property
    def is_alive(self) -> bool:
        return self._alive

    def destroy(self) -> bool:
        was_alive, self._alive = self._alive, False
        return was_alive


class Vehicle(Actor):
    _real = "Vehicle"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._autopilot_port: int | None = None
        self._applied = VehicleControl()

    def set_autopilot(self, enabled: bool = True, tm_port: int = 8000) -> None:
        if enabled and not self._world._server.tm_synchronous.get(tm_port, False) \
                and self._world._server.settings.synchronous_mode:
            raise RuntimeError("the Traffic Manager must be in synchronous mode first")
        self._autopilot_port = tm_port if enabled else None

    def apply_control(self, control: VehicleControl) -> None:
        self._applied = control

    def get_control(self) -> VehicleControl:
        if self._autopilot_port is not None:
            steer, throttle, brake = autopilot_control(self._world._frame)
            return VehicleControl(throttle=throttle, steer=steer, brake=brake)
        return self._applied

    def get_velocity(self) -> Vector3D:
        return Vector3D(*velocity(self._world._frame))


class Sensor(Actor):
    _real = "Sensor"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._callback: Callable[[Image], None] | None = None
        self._stopped = False

    def listen(self, callback: Callable[[Image], None]) -> None:
        self._callback = callback

    def is_listening(self) -> bool:
        return self._callback is not None and not self._stopped

    def stop(self) -> None:
        self._stopped = True

    def destroy(self) -> bool:
        self._world._server.stopped_before_destroy[self.id] = not self.is_listening()
        return super().destroy()

    def _deliver(self, image: Image) -> None:
        if self.is_listening() and self._alive:
            self._callback(image)

    def _image(self, frame: int) -> Image:
        width = int(self._blueprint._attributes.get("image_size_x", "800"))
        height = int(self._blueprint._attributes.get("image_size_y", "600"))
        bgra = np.zeros((height, width, 4), dtype=np.uint8)
        bgra[..., 3] = 255
        if self.type_id == "sensor.camera.semantic_segmentation":
            tags = np.full((height, width), CityObjectLabel.Sky, dtype=np.uint8)
            half = height // 2
            tags[half:] = CityObjectLabel.Roads
            tags[half:, marking_column(frame, width)] = CityObjectLabel.RoadLines
            tags[height - 4:, :4] = CityObjectLabel.Car
            tags[half:, width - 2:] = CityObjectLabel.Sidewalks
            bgra[..., 2] = tags
        else:
            bgra[..., 2] = rgb_red(frame)
            bgra[..., 1] = rgb_green(self._transform.location.y)
            bgra[..., 0] = 40
        delta = self._world._settings.fixed_delta_seconds or 0.05
        return Image(frame, (frame - self._world._server.scenario.first_frame) * delta,
                     width, height, bgra.tobytes())


# -- world, map, traffic manager, client ------------------------------------------------------

class Map:
    _real = "Map"
    name: str

    def __init__(self, name: str, spawn_points: int) -> None:
        self.name = name
        self._spawn_points = [Transform(Location(x=10.0 * i, y=0.0, z=0.5)) for i in
                              range(spawn_points)]

    def get_spawn_points(self) -> list[Transform]:
        return list(self._spawn_points)


BLUEPRINTS = ["vehicle.tesla.model3", "vehicle.audi.a2", "vehicle.nissan.micra",
              "sensor.camera.rgb", "sensor.camera.semantic_segmentation"]


class World:
    _real = "World"

    def __init__(self, server: FakeServer, map_name: str) -> None:
        self._server = server
        self._map = Map(map_name, server.scenario.spawn_points)
        self._frame = server.scenario.first_frame
        self._tick_count = 0
        self._frames_ticked = 0
        self._held: list[tuple[Sensor, int]] = []
        self._rng = random.Random(server.scenario.seed)

    @property
    def _settings(self) -> WorldSettings:
        return self._server.settings

    def get_settings(self) -> WorldSettings:
        return self._server.settings._copy()

    def apply_settings(self, settings: WorldSettings) -> int:
        self._server.settings = settings._copy()
        return self._frame

    def get_map(self) -> Map:
        return self._map

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary(list(BLUEPRINTS))

    def get_weather(self) -> WeatherParameters:
        return self._server.weather

    def set_weather(self, weather: WeatherParameters, /) -> None:
        self._server.weather = weather

    def spawn_actor(self, blueprint: ActorBlueprint, transform: Transform,
                    attach_to: Actor | None = None) -> Actor:
        actor = self.try_spawn_actor(blueprint, transform, attach_to)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def try_spawn_actor(self, blueprint: ActorBlueprint, transform: Transform,
                        attach_to: Actor | None = None) -> Actor | None:
        if attach_to is None:
            points = self._map._spawn_points
            index = next((i for i, p in enumerate(points) if p is transform), None)
            occupied = {id(a._transform) for a in self._server.alive if a._parent is None}
            if index in self._server.scenario.occupied_spawn_points or id(transform) in occupied:
                return None
        kind = Sensor if blueprint.id.startswith("sensor.") else Vehicle
        actor = kind(self, blueprint, transform, attach_to)
        self._server.actors.append(actor)
        return actor

    def tick(self, seconds: float = 0.0) -> int:
        scenario = self._server.scenario
        self._tick_count += 1
        if self._tick_count == scenario.fail_at_tick:
            raise RuntimeError(TIMEOUT_MESSAGE.format(ms=int(seconds * 1000), host="localhost",
                                                      port=2000))
        if self._tick_count == scenario.interrupt_at_tick:
            raise KeyboardInterrupt
        self._frame += 1
        self._frames_ticked += 1
        frame = self._frame
        self._server.ticks.append(frame)
        sensors = [a for a in self._server.actors if isinstance(a, Sensor) and a._alive]
        deliveries = [(s, f) for s, f in self._held if s._alive]
        self._held = []
        for index, sensor in enumerate(sensors):
            if index == scenario.silent_sensor:
                continue
            if index == scenario.early_sensor:
                if self._frames_ticked == 1:
                    deliveries.append((sensor, frame))
                deliveries.insert(0, (sensor, frame + 1))
                continue
            deliveries.append((sensor, frame))
            if index == scenario.stale_sensor:
                deliveries.append((sensor, frame - 1))
        if scenario.delivery == "shuffled":
            self._rng.shuffle(deliveries)
        images = [(s, s._image(f)) for s, f in deliveries]
        if scenario.thread_delay > 0:
            thread = threading.Thread(target=_deliver_later, args=(images, scenario.thread_delay))
            thread.start()
            self._server.threads.append(thread)
        else:
            for sensor, image in images:
                sensor._deliver(image)
        return frame


def _deliver_later(images: list[tuple[Sensor, Image]], delay: float) -> None:
    for sensor, image in images:
        time.sleep(delay / max(len(images), 1))
        sensor._deliver(image)


class TrafficManager:
    _real = "TrafficManager"

    def __init__(self, server: FakeServer, port: int) -> None:
        self._server, self._port = server, port
        self._seed: int | None = None

    def set_synchronous_mode(self, mode_switch: bool) -> None:
        self._server.tm_synchronous[self._port] = mode_switch

    def set_random_device_seed(self, value: int) -> None:
        self._seed = value

    def get_port(self) -> int:
        return self._port


class Client:
    _real = "Client"
    _server: FakeServer

    def __init__(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0) -> None:
        self._host, self._port = host, port
        self._timeout = 5.0
        self._world: World | None = None

    def set_timeout(self, seconds: float) -> None:
        self._timeout = seconds

    def _check_up(self) -> None:
        if not self._server.scenario.server_up:
            raise RuntimeError(TIMEOUT_MESSAGE.format(ms=int(self._timeout * 1000),
                                                      host=self._host, port=self._port))

    def get_client_version(self) -> str:
        return "0.9.16"

    def get_server_version(self) -> str:
        self._check_up()
        return "0.9.16"

    def get_world(self) -> World:
        self._check_up()
        if self._server.world is None:
            self._server.world = World(self._server, self._server.scenario.map_name)
        return self._server.world

    def get_available_maps(self) -> list[str]:
        self._check_up()
        return list(self._server.scenario.maps)

    def load_world(self, map_name: str, reset_settings: bool = True) -> World:
        self._check_up()
        self._server.loaded_maps.append(map_name)
        self._server.world = World(self._server, f"Carla/Maps/{map_name}")
        if reset_settings:
            self._server.settings = WorldSettings()
        return self._server.world

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        return TrafficManager(self._server, port)


FAKE_CLASSES = (Vector3D, Location, Rotation, Transform, VehicleControl, WorldSettings,
                WeatherParameters, CityObjectLabel, Image, ActorBlueprint, BlueprintLibrary,
                Actor, Vehicle, Sensor, Map, World, TrafficManager, Client)


def make_fake_carla(scenario: Scenario | None = None) -> tuple[types.ModuleType, FakeServer]:
    """A fresh fake ``carla`` module and the server state behind it."""
    server = FakeServer(scenario=scenario or Scenario(), settings=WorldSettings(),
                        weather=WeatherParameters.Default)
    module = types.ModuleType("carla")
    for cls in FAKE_CLASSES:
        setattr(module, cls.__name__, cls)
    module.Client = type("Client", (Client,), {"_server": server})
    return module, server
