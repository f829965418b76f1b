"""The CARLA API the project and its test double use exists in the installed ``carla`` package.

Two sources of names, both collected automatically:

- the project's code (every ``drive_viz`` module), parsed with ``ast``: attribute chains on
  ``carla`` / ``self.carla`` (``carla.WeatherParameters``, ``carla.CityObjectLabel``, ...) and the
  keyword arguments of constructor calls such as ``carla.VehicleControl(throttle=...)``;
- the test double (tests/carla_double.py): every public attribute of every fake class must exist
  on the real class it stands for, be of the same kind (method or property), and every fake method
  must accept only parameters the real one accepts, by the same names. Methods the project calls
  on CARLA objects are covered through the double: the project's tests run against it.

Real signatures come from the Boost.Python docstrings, e.g. ``spawn_actor( (World)arg1,
(ActorBlueprint)blueprint, (Transform)transform [, (Actor)attach_to=None ...``
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
from pathlib import Path

import carla_double
import pytest

carla = pytest.importorskip("carla", reason="the carla client package is not installed "
                                            "(pip install carla==0.9.16, Python 3.11 Linux x86-64)")

from drive_viz.sim import carla_session  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1] / "drive_viz"
_PARAM = re.compile(r"\(([\w:]+)\)(\w+)")


def real_overloads(function) -> list[list[tuple[str, bool]]]:
    """Each overload's parameters after ``self`` as (name, required), from the docstring."""
    overloads = []
    for line in (function.__doc__ or "").splitlines():
        if not re.match(rf"\s*{re.escape(function.__name__)}\(", line):
            continue
        required_part = line.split("[", 1)[0]
        params = [(m.group(2), m.start() < len(required_part)) for m in _PARAM.finditer(line)]
        overloads.append(params[1:])
    return overloads


def fake_fits_real(fake, real) -> str | None:
    """None if every call the fake accepts is accepted by the real method, else why not."""
    params = list(inspect.signature(fake).parameters.values())[1:]
    overloads = real_overloads(real)
    if not overloads:
        return f"no signature in the docstring of {real}"
    for real_params in overloads:
        if len(params) > len(real_params):
            continue
        fits = True
        for param, (real_name, real_required) in zip(params, real_params, strict=False):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                fits = False
            elif re.fullmatch(r"arg\d+", real_name):
                fits &= param.kind == param.POSITIONAL_ONLY
            else:
                fits &= param.name == real_name
            fits &= not (real_required and param.default is not param.empty)
        if fits and all(not required for _, required in real_params[len(params):]):
            return None
    return f"fake {[p.name for p in params]} does not fit real {overloads}"


def public_names(cls: type) -> set[str]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    for klass in cls.__mro__:
        names |= {n for n in getattr(klass, "__annotations__", {}) if not n.startswith("_")}
    return names


@pytest.mark.parametrize("fake", carla_double.FAKE_CLASSES, ids=lambda c: c.__name__)
def test_fake_class_matches_real_class(fake):
    assert hasattr(carla, fake.__name__), f"carla has no {fake.__name__}"
    real = getattr(carla, fake.__name__)
    if issubclass(fake, enum.Enum):
        for name, member in fake.__members__.items():
            assert int(getattr(real, name)) == int(member), f"{fake.__name__}.{name}"
        return
    assert fake._real == fake.__name__
    problems = []
    for name in sorted(public_names(fake)):
        if not hasattr(real, name):
            problems.append(f"{name}: missing")
            continue
        fake_attr = inspect.getattr_static(fake, name, None)
        real_attr = inspect.getattr_static(real, name)
        if isinstance(fake_attr, fake):  # a class attribute holding a preset, e.g. ClearNoon
            assert isinstance(getattr(real, name), real)
        elif inspect.isfunction(fake_attr):
            if isinstance(real_attr, property):
                problems.append(f"{name}: a method here, a property in carla")
            elif reason := fake_fits_real(fake_attr, getattr(real, name)):
                problems.append(f"{name}: {reason}")
        elif not isinstance(real_attr, property):
            problems.append(f"{name}: data here, {type(real_attr).__name__} in carla")
    assert not problems, f"{fake.__name__} drifted from carla.{fake.__name__}: {problems}"


def project_carla_uses() -> tuple[set[tuple[str, ...]], list[tuple[tuple[str, ...], int, set]]]:
    """Attribute chains rooted at ``carla`` or ``self.carla`` in drive_viz, and the calls on
    them as (chain, number of positional arguments, keyword names)."""
    chains: set[tuple[str, ...]] = set()
    calls = []

    def chain_of(node: ast.AST) -> tuple[str, ...] | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
            if (isinstance(node, ast.Attribute) and node.attr == "carla"
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                return tuple(reversed(parts))
        if isinstance(node, ast.Name) and node.id == "carla" and parts:
            return tuple(reversed(parts))
        return None

    for path in sorted(PROJECT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (chain := chain_of(node)):
                chains.add(chain)
            if isinstance(node, ast.Call) and (chain := chain_of(node.func)):
                calls.append((chain, len(node.args), {k.arg for k in node.keywords}))
    return chains, calls


def test_project_uses_only_real_carla_names():
    chains, calls = project_carla_uses()
    assert ("VehicleControl",) in chains and ("CityObjectLabel",) in chains  # the scan works
    for chain in chains:
        target = carla
        for part in chain:
            assert hasattr(target, part), f"carla.{'.'.join(chain)} does not exist"
            target = getattr(target, part)
    for chain, positional, keywords in calls:
        target = carla
        for part in chain:
            target = getattr(target, part)
        function = target.__init__ if isinstance(target, type) else target
        overloads = real_overloads(function)
        assert any(positional <= len(params)
                   and keywords <= {name for name, _ in params[positional:]}
                   for params in overloads), \
            f"carla.{'.'.join(chain)}: {positional} positional + {sorted(keywords)} do not fit " \
            f"{overloads}"


def test_mask_tag_names_exist_in_carla():
    names = carla_session.ROAD_TAGS + carla_session.LANE_MARKING_TAGS \
        + carla_session.DISTRACTOR_TAGS
    for name in names:
        assert hasattr(carla.CityObjectLabel, name), name
    lookup = carla_session.mask_lookup(carla)
    assert lookup[int(carla.CityObjectLabel.Roads)] == 1
    assert lookup[int(carla.CityObjectLabel.RoadLines)] == 2
    assert lookup[int(carla.CityObjectLabel.Car)] == 3
    assert lookup[int(carla.CityObjectLabel.Sky)] == 0


def test_weather_presets_of_the_real_module():
    presets = carla_session.weather_presets(carla)
    assert {"ClearNoon", "WetSunset", "HardRainNight"} <= set(presets)
    assert "Default" in presets
