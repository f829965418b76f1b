"""The CARLA recorder against the fake server in tests/carla_double.py, and the launch scripts.

Expected values come from the double's generating functions (rgb_red, rgb_green,
marking_column, autopilot_control, velocity) and the MASK_CLASSES numbers, never from the
recorder's own output.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from carla_double import (
    Scenario,
    autopilot_control,
    marking_column,
    rgb_green,
    rgb_red,
    velocity,
)

from drive_viz import cli
from drive_viz.errors import DriveVizError
from drive_viz.recording.reader import open_recording
from drive_viz.sim.carla_record import record
from drive_viz.sim.carla_session import CarlaSession, SessionConfig, bgra_to_rgb

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 32, 24
ORIGINAL_SETTINGS = (False, False, None)




def small_config(**overrides) -> SessionConfig:
    values = dict(width=WIDTH, height=HEIGHT, fov=70.0, timeout=2.0, warmup_ticks=2, seed=3)
    values.update(overrides)
    return SessionConfig(**values)


def expected_mask(frame: int) -> np.ndarray:
    """The double's segmentation scene in MASK_CLASSES labels: other=0 road=1 marking=2
    distractor=3 (Sky and Sidewalks are 'other', Car is a distractor)."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[HEIGHT // 2:] = 1
    mask[HEIGHT // 2:, marking_column(frame, WIDTH)] = 2
    mask[HEIGHT - 4:, :4] = 3
    mask[HEIGHT // 2:, WIDTH - 2:] = 0
    return mask


def assert_torn_down(server) -> None:
    server.join_threads()
    assert server.actors, "the session spawned nothing"
    assert server.alive == []
    assert all(server.stopped_before_destroy.values())
    assert server.settings._as_tuple() == ORIGINAL_SETTINGS
    assert server.tm_synchronous == {8000: False}


def check_recording(path: Path, server, frames: int) -> None:
    rec = open_recording(path)
    assert len(rec) == frames
    assert rec.cameras == ("center", "left", "right")
    assert rec.source == "carla" and rec.meta.finished
    assert [c.y for c in rec.meta.cameras] == [0.0, -0.5, 0.5]
    assert rec.meta.mask_classes == {"other": 0, "road": 1, "lane_marking": 2, "distractor": 3}
    assert rec.meta.extra["town"] == "Town10HD_Opt"
    world_frames = server.ticks[-frames:]
    for row, world_frame in enumerate(world_frames):
        for spec in rec.meta.cameras:
            image = rec.image(row, spec.name).astype(int)
            assert image.shape == (HEIGHT, WIDTH, 3)
            # JPEG of a flat colour is exact to a few levels; neighbours differ by 10 in red.
            assert np.abs(image - [rgb_red(world_frame), rgb_green(spec.y), 40]).max() <= 3
        np.testing.assert_array_equal(rec.mask(row, "center"), expected_mask(world_frame))
        assert rec.mask(row, "left") is None
        steer, throttle, brake = autopilot_control(world_frame)
        labels = rec.row(row)
        assert labels.steer == pytest.approx(steer, abs=1e-6)
        assert labels.throttle == pytest.approx(throttle, abs=1e-6)
        assert labels.brake == pytest.approx(brake, abs=1e-6)
        assert labels.speed == pytest.approx(math.hypot(*velocity(world_frame)), abs=1e-4)
        assert labels.t == pytest.approx(row / 20.0, abs=1e-6)


def test_bgra_to_rgb_swaps_channels_and_drops_alpha():
    raw = bytes([10, 20, 30, 255, 1, 2, 3, 0])  # two BGRA pixels
    np.testing.assert_array_equal(bgra_to_rgb(raw, 2, 1), [[[30, 20, 10], [3, 2, 1]]])


def test_record_writes_valid_recording(fake_carla, tmp_path):
    server = fake_carla()
    written = record(small_config(weather="WetSunset", traffic=2), tmp_path / "rec", 6)
    assert written == 6
    check_recording(tmp_path / "rec", server, 6)
    assert len(server.ticks) == 2 + 6  # warm-up ticks are not written
    assert len(server.actors) == 1 + 4 + 2  # ego, 3 RGB + 1 segmentation camera, traffic
    assert_torn_down(server)
    assert server.weather._name == "Default"


@pytest.mark.parametrize("scenario", [
    Scenario(delivery="shuffled", seed=5),
    Scenario(early_sensor=2, stale_sensor=0),
    Scenario(delivery="shuffled", early_sensor=1, stale_sensor=3, thread_delay=0.004),
], ids=["shuffled", "early-and-stale", "threaded"])
def test_frames_matched_by_id_when_callbacks_arrive_out_of_order(fake_carla, tmp_path, scenario):
    server = fake_carla(scenario)
    record(small_config(), tmp_path / "rec", 5)
    check_recording(tmp_path / "rec", server, 5)
    assert_torn_down(server)


def test_town_is_loaded_and_unknown_names_are_refused(fake_carla, tmp_path):
    server = fake_carla()
    with CarlaSession(small_config(town="Town04", warmup_ticks=0)) as session:
        assert session.town == "Town04"
    assert server.loaded_maps == ["Town04"]
    with pytest.raises(DriveVizError, match="Town99.*Town01, Town04, Town10HD_Opt"):
        CarlaSession(small_config(town="Town99")).__enter__()
    with pytest.raises(DriveVizError, match="'Sunny'.*ClearNoon"):
        CarlaSession(small_config(weather="Sunny")).__enter__()


def test_apply_steer_drives_the_ego_vehicle(fake_carla):
    server = fake_carla()
    with CarlaSession(small_config(warmup_ticks=0)) as session:
        session.apply_steer(1.7, 0.4, brake=-1.0)
        bundle = session.next_frames()
        assert not session.autopilot
        assert (bundle.steer, bundle.throttle, bundle.brake) == (1.0, 0.4, 0.0)
        assert bundle.mask.shape == (HEIGHT, WIDTH)
    assert_torn_down(server)


def test_stale_and_early_images_are_not_kept(fake_carla):
    """Only the one frame an early sensor delivered ahead may wait between ticks: stale images
    (frames already returned) are dropped, not accumulated."""
    fake_carla(Scenario(early_sensor=1, stale_sensor=2, delivery="shuffled"))
    with CarlaSession(small_config(warmup_ticks=0)) as session:
        frames = [session.next_frames().frame for _ in range(12)]
        assert frames == list(range(1001, 1013))
        assert list(session._pending) == [1013]
        assert set(session._pending[1013]) == {"left"}


@pytest.mark.parametrize("raise_at", ["fail_at_tick", "interrupt_at_tick"])
def test_teardown_after_error_or_ctrl_c_mid_run(fake_carla, tmp_path, raise_at):
    server = fake_carla(Scenario(**{raise_at: 6}))
    expected = DriveVizError if raise_at == "fail_at_tick" else KeyboardInterrupt
    with pytest.raises(expected):
        record(small_config(traffic=1), tmp_path / "rec", 10)
    assert_torn_down(server)
    rec = open_recording(tmp_path / "rec")
    assert len(rec) == 3  # ticks 1-2 warm up, 3-5 recorded, 6 raises
    assert rec.meta.finished == (raise_at == "interrupt_at_tick")


def test_silent_sensor_times_out_with_one_line_error(fake_carla, tmp_path):
    server = fake_carla(Scenario(silent_sensor=1))
    message = r"sensor\(s\) left sent no image for frame 1001"
    with pytest.raises(DriveVizError, match=message) as err:
        record(small_config(timeout=0.2), tmp_path / "rec", 3)
    assert "\n" not in str(err.value)
    assert_torn_down(server)


def test_unreachable_server_exits_2_with_one_line_error(fake_carla, tmp_path, capsys):
    server = fake_carla(Scenario(server_up=False))
    code = cli.main(["record", "--frames", "3", "--out", str(tmp_path / "rec"),
                     "--port", "2999", "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("drive-viz: error: CARLA server at localhost:2999 did not answer "
                          "within 0.5 s (time-out of 500ms")
    assert not (tmp_path / "rec").exists()
    assert server.actors == []


def test_record_without_carla_installed_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "carla", None)  # makes ``import carla`` raise ImportError
    with pytest.raises(DriveVizError, match="carla client package is not installed"):
        record(small_config(), tmp_path / "rec", 1)


# -- launch scripts ----------------------------------------------------------------------------

SCRIPTS = ["carla-server.sh", "record-session.sh", "live-session.sh"]


def run_script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CARLA_ROOT"}
    environment.update(env)
    return subprocess.run(["bash", str(REPO / "launch" / name), *args], capture_output=True,
                          text=True, env=environment, timeout=30)


@pytest.mark.parametrize("name", SCRIPTS)
def test_launch_script_help(name):
    result = run_script(name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ")
    assert "--port" in result.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_launch_script_rejects_unknown_options(name):
    result = run_script(name, "--bogus")
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr


def test_server_start_without_carla_root_or_docker_fails_clearly(tmp_path):
    result = run_script("carla-server.sh", "start", "--pid-file", str(tmp_path / "pid"),
                        CARLA_DOCKER="no-such-docker-command")
    assert result.returncode == 1
    assert "CARLA_ROOT is not set" in result.stderr and "no-such-docker-command" in result.stderr
    assert not (tmp_path / "pid").exists()
    result = run_script("carla-server.sh", "start", "--container",
                        CARLA_DOCKER="no-such-docker-command")
    assert result.returncode == 1
    assert "no-such-docker-command: not found" in result.stderr
    result = run_script("carla-server.sh", "start", CARLA_ROOT=str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path}/CarlaUE4.sh: not found" in result.stderr


@pytest.mark.parametrize("name", ["record-session.sh", "live-session.sh"])
def test_session_script_without_drive_viz_fails_clearly(name):
    result = run_script(name, DRIVE_VIZ="no-such-drive-viz")
    assert result.returncode == 1
    assert "no-such-drive-viz: not found" in result.stderr


def test_server_start_and_stop_a_local_install(tmp_path):
    """A stand-in CarlaUE4.sh that logs its arguments and sleeps: start records its process
    group, stop ends every process in it."""
    launcher = tmp_path / "CarlaUE4.sh"
    launcher.write_text('#!/bin/bash\necho "args: $*"\nsleep 300\n')
    pid_file = tmp_path / "carla.pid"
    result = run_script("carla-server.sh", "start", "--no-wait", "--port", "2345", "--quality",
                        "Low", "--pid-file", str(pid_file), CARLA_ROOT=str(tmp_path))
    assert result.returncode == 0, result.stderr
    kind, pid = pid_file.read_text().split()
    assert kind == "pid"
    try:
        for _ in range(50):
            log = (tmp_path / "carla.log").read_text()
            if log:
                break
            time.sleep(0.05)
        assert log.strip() == ("args: -RenderOffScreen -nosound -carla-rpc-port=2345 "
                               "-quality-level=Low")
        result = run_script("carla-server.sh", "stop", "--pid-file", str(pid_file))
        assert result.returncode == 0, result.stderr
        assert not pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.killpg(int(pid), 0)
    finally:
        try:
            os.killpg(int(pid), 9)
        except ProcessLookupError:
            pass
