"""``drive-viz live`` headless: synthetic closed loop, autonomy accounting, CARLA double.

Expected values come from independent sources: the synthetic world stepped directly with the
same steering (interventions, lateral offsets), the models' known constant outputs, the CARLA
double's generating functions, and the autonomy formula worked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from carla_double import Scenario, autopilot_control

from drive_viz.cli import main
from drive_viz.errors import DriveVizError
from drive_viz.live import OUTPUT_FILES, LiveOptions, autonomy_percent, live
from drive_viz.recording.reader import open_recording
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.world import SyntheticWorld

FRAMES = 40
FPS = 20.0
REPLAY_COLUMNS = ("frame", "row", "t", "target", "steer_true", "steer_pred", "abs_error",
                  "decode_ms", "model_ms", "render_ms", "encode_ms", "first_conv_act_mean",
                  "first_conv_act_max", "first_conv_dead_share")
LIVE_COLUMNS = ("steer_applied", "intervention", "interventions", "lateral_offset", "speed",
                "preprocess_ms", "latency_ms")
CARLA_WARMUP_TICKS = 10  # SessionConfig's default


def constant_model(path: Path, steer: float) -> Path:
    """A DAVE-2 whose output is ``steer`` for every input (zero output kernel, bias steer)."""
    from drive_viz.model.dave2 import build_dave2

    model = build_dave2(seed=0)
    layer = model.get_layer("steer")
    kernel, _ = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.array([steer], np.float32)])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("live_models")
    untrained = root / "untrained.keras"
    build_dave2(seed=0).save(untrained)
    return {"untrained": untrained, "hard_right": constant_model(root / "right.keras", 5.0),
            "steer_03": constant_model(root / "steer03.keras", 0.3)}


@pytest.fixture(scope="module")
def synthetic_run(models, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("live") / "run"
    code = main(["live", "--model", str(models["untrained"]), "--frames", str(FRAMES),
                 "--out", str(run), "--seed", "3"])
    assert code == 0
    return run


def world_drive(seed: int, frames: int, steer: float | None) -> tuple[list[int], list[float]]:
    """Step the synthetic world directly: constant ``steer`` (None: the expert's label), the
    expert's cruise throttle; returns the per-step intervention flags and the lateral offset
    of each frame before its step."""
    world = SyntheticWorld(SyntheticWorldConfig(fps=FPS), seed)
    world.reset(render=False)
    flags, offsets = [], []
    for _ in range(frames):
        control = world.expert_control(perturb=False)
        offsets.append(world.state.lateral_offset)
        world.step(control.label if steer is None else steer, control.throttle, control.brake,
                   render=False)
        flags.append(int(world.off_lane))
        if world.off_lane:
            world.reset_to_lane_centre()
    return flags, offsets


def test_video_has_one_frame_per_step(synthetic_run):
    assert sorted(p.name for p in synthetic_run.iterdir()) == sorted(
        [*OUTPUT_FILES, "recording"])  # no partial files left
    with av.open(str(synthetic_run / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert sum(1 for _ in container.decode(stream)) == FRAMES


def test_tables_have_replay_and_live_columns(synthetic_run):
    table = pd.read_parquet(synthetic_run / "frames.parquet")
    csv = pd.read_csv(synthetic_run / "frames.csv")
    assert len(table) == len(csv) == FRAMES
    assert list(csv.columns) == list(table.columns)
    for column in (*REPLAY_COLUMNS, *LIVE_COLUMNS):
        assert column in table.columns, column
    for method in ("saliency", "gradcam", "visualbackprop"):
        assert f"{method}_road_share" in table.columns
    # Synthetic frames have masks, so the share of attention on the road is a real fraction.
    assert table["saliency_road_share"].between(0, 1).all()
    np.testing.assert_allclose(table["t"], np.arange(FRAMES) / FPS, atol=1e-9)
    assert (table["target"] == "steer").all()
    # The model drives: what was applied is its prediction, clipped to the steering range.
    np.testing.assert_allclose(table["steer_applied"], np.clip(table["steer_pred"], -1, 1))
    np.testing.assert_allclose(table["abs_error"],
                               np.abs(table["steer_pred"] - table["steer_true"]))
    np.testing.assert_allclose(
        table["latency_ms"], table["preprocess_ms"] + table["model_ms"] + table["render_ms"])
    assert (table["latency_ms"] > 0).all()
    np.testing.assert_array_equal(table["interventions"], np.cumsum(table["intervention"]))


def test_summary_matches_the_table(synthetic_run):
    summary = json.loads((synthetic_run / "summary.json").read_text())
    table = pd.read_parquet(synthetic_run / "frames.parquet")
    assert summary["frames"] == FRAMES
    assert summary["simulated_seconds"] == pytest.approx(FRAMES / FPS)
    interventions = int(table["intervention"].sum())
    assert summary["interventions"] == interventions
    assert summary["autonomy_percent"] == pytest.approx(
        max(0.0, 100 * (1 - interventions * 6 / (FRAMES / FPS))))
    assert summary["frames_without_intervention_percent"] == pytest.approx(
        100 * (FRAMES - interventions) / FRAMES)
    assert summary["steering"]["mae_vs_expert"] == pytest.approx(table["abs_error"].mean())
    latency = summary["latency_ms"]["total"]
    assert latency["p50"] == pytest.approx(np.percentile(table["latency_ms"], 50))
    assert latency["p95"] == pytest.approx(np.percentile(table["latency_ms"], 95))


def test_recording_reads_back_and_replays(synthetic_run, models, tmp_path):
    rec = open_recording(synthetic_run / "recording")
    table = pd.read_parquet(synthetic_run / "frames.parquet")
    assert len(rec) == FRAMES and rec.meta.finished
    assert rec.image(0).shape == (160, 320, 3)
    assert rec.has_masks("center")
    np.testing.assert_allclose(rec.steering(), table["steer_applied"], atol=2e-6)
    run = tmp_path / "replayed"
    assert main(["replay", str(synthetic_run / "recording"), "--model", str(models["untrained"]),
                 "--out", str(run), "--no-video", "--quiet"]) == 0
    replayed = pd.read_parquet(run / "frames.parquet")
    np.testing.assert_allclose(replayed["steer_true"], table["steer_applied"], atol=2e-6)


def test_autonomy_formula():
    assert autonomy_percent(0, 10.0) == 100.0
    assert autonomy_percent(1, 60.0) == pytest.approx(90.0)  # 6 s of 60 s
    assert autonomy_percent(2, 600.0) == pytest.approx(98.0)
    assert autonomy_percent(3, 10.0) == 0.0  # 18 s charged in 10 s: floored


def test_hard_right_model_leaves_the_lane_and_is_reset(models, tmp_path):
    frames = 60
    run = tmp_path / "run"
    summary = live(models["hard_right"], LiveOptions(frames=frames, out=str(run), seed=2,
                                                     methods=("saliency",)))
    flags, offsets = world_drive(seed=2, frames=frames, steer=1.0)
    table = pd.read_parquet(run / "frames.parquet")
    assert sum(flags) >= 3  # full right lock leaves a 3.5 m lane within a second
    assert table["intervention"].tolist() == flags
    np.testing.assert_allclose(table["lateral_offset"], offsets, atol=1e-9)
    assert (table["steer_applied"] == 1.0).all()
    # Each reset puts the car back on the lane centre for the next frame.
    after = np.flatnonzero(flags)[:-1] + 1
    assert np.abs(table["lateral_offset"].to_numpy()[after]).max() < 0.6
    assert summary["interventions"] == sum(flags)
    seconds = frames / FPS
    assert summary["autonomy_percent"] == max(0.0, 100 * (1 - sum(flags) * 6 / seconds))
    assert summary["frames_without_intervention_percent"] == pytest.approx(
        100 * (1 - sum(flags) / frames))


def test_autopilot_keeps_the_expert_driving(models):
    frames = 30
    summary = live(models["hard_right"], LiveOptions(frames=frames, drive="autopilot", seed=2,
                                                     methods=("gradcam",)))
    flags, _ = world_drive(seed=2, frames=frames, steer=None)
    assert sum(flags) == 0 and summary["interventions"] == 0
    assert summary["autonomy_percent"] == 100.0
    # The shadow model says +5 every frame; the expert's label never does.
    assert summary["steering"]["mae_vs_expert"] > 3.5


def test_refuses_a_non_empty_run_folder(models, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["live", "--model", str(models["untrained"]), "--frames", "2",
                 "--out", str(tmp_path)])
    assert code == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_display_without_a_screen_is_a_clear_error(models, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code = main(["live", "--model", str(models["untrained"]), "--frames", "2", "--display",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "DISPLAY is not set" in capsys.readouterr().err
    assert not any(p.name in OUTPUT_FILES for p in (tmp_path / "run").iterdir())




def ego(server):
    (vehicle,) = [a for a in server.actors if a.type_id.startswith("vehicle.")]
    return vehicle


def test_carla_model_drives_through_apply_control(fake_carla, models, tmp_path):
    server = fake_carla()
    run = tmp_path / "run"
    code = main(["live", "--world", "carla", "--model", str(models["steer_03"]), "--frames", "5",
                 "--width", "64", "--height", "48", "--timeout", "2", "--out", str(run),
                 "--methods", "saliency"])
    assert code == 0
    vehicle = ego(server)
    assert vehicle._autopilot_port is None  # the model, not the Traffic Manager, drives
    assert vehicle._applied.steer == pytest.approx(0.3, abs=1e-6)
    assert 0 < vehicle._applied.throttle <= 1
    server.join_threads()
    assert server.alive == []  # ego and camera sensors destroyed
    table = pd.read_parquet(run / "frames.parquet")
    np.testing.assert_allclose(table["steer_pred"], 0.3, atol=1e-6)
    assert table["steer_true"].isna().all()  # nobody else drives: no expert to compare with
    rec = open_recording(run / "recording")
    assert len(rec) == 5 and rec.image(0).shape == (48, 64, 3)
    np.testing.assert_allclose(rec.steering(), 0.3, atol=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world"] == "carla" and summary["interventions"] is None


def test_carla_autopilot_drives_with_the_model_in_shadow(fake_carla, models):
    server = fake_carla()
    summary = live(models["steer_03"], LiveOptions(world="carla", drive="autopilot", frames=4,
                                                   width=32, height=24, timeout=2.0,
                                                   methods=("saliency",)))
    ticks = server.ticks[CARLA_WARMUP_TICKS:]
    assert len(ticks) == 4
    expected = np.array([autopilot_control(f)[0] for f in ticks])
    assert summary["steering"]["mae_vs_expert"] == pytest.approx(np.abs(0.3 - expected).mean(),
                                                                 abs=1e-6)
    assert ego(server)._applied.steer == 0.0  # apply_control never called
    server.join_threads()
    assert server.alive == []


def test_carla_failure_leaves_no_outputs(fake_carla, models, tmp_path):
    server = fake_carla(Scenario(fail_at_tick=CARLA_WARMUP_TICKS + 3))
    run = tmp_path / "run"
    with pytest.raises(DriveVizError, match="stopped answering"):
        live(models["steer_03"], LiveOptions(world="carla", frames=6, width=32, height=24,
                                             timeout=2.0, out=str(run), methods=("saliency",)))
    assert [p.name for p in run.iterdir()] == ["recording"]  # no video, table or summary
    assert not open_recording(run / "recording").meta.finished
    server.join_threads()
    assert server.alive == []
