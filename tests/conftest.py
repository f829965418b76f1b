"""Shared test setup: quiet TensorFlow before anything imports it; the fake CARLA fixture."""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def fake_carla(monkeypatch):
    """Install the fake ``carla`` module (tests/carla_double.py); call it with a Scenario to
    get the FakeServer behind it."""
    from carla_double import make_fake_carla

    def install(scenario=None):
        module, server = make_fake_carla(scenario)
        monkeypatch.setitem(sys.modules, "carla", module)
        return server

    return install
