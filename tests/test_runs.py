"""The run writer and replay's stages, each alone: decode, analyse, the event galleries, the
writer's clean-up, live through the writer, and the CLI's consistency (flags in errors,
method names in --help, --quiet, a clamped --end, demo --frames)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drive_viz.cli import build_parser, main
from drive_viz.errors import DriveVizError, OptionError
from drive_viz.recording.format import MASK_CLASSES, CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter
from drive_viz.runs.summary import EventGallery, RunSummary

FRAMES = 12
FPS = 10.0
CORRUPT_ROW = 4


def _frame(i: int) -> np.ndarray:
    y, x = np.mgrid[0:96, 0:128].astype(np.float32)
    return np.clip(np.stack([100 + 80 * np.sin(x / 20 + i / 3), 60 + y,
                             120 + 60 * np.cos(y / 15 - i / 4)], axis=2), 0, 255).astype(np.uint8)


def _constant_model(path: Path) -> Path:
    """A DAVE-2 whose output does not depend on its input: every gradient map is zero."""
    from drive_viz.model.dave2 import build_dave2

    model = build_dave2(seed=0)
    layer = model.get_layer("steer")
    kernel, _ = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.array([0.25], np.float32)])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("runs")
    recording = root / "rec"
    meta = RecordingMeta(source="unit test", fps=FPS, cameras=(CameraSpec("center", 128, 96),),
                         mask_classes=MASK_CLASSES)
    mask = np.zeros((96, 128), np.uint8)
    mask[60:, 30:100] = MASK_CLASSES["road"]
    with RecordingWriter(recording, meta, with_masks=True) as writer:
        for i in range(FRAMES):
            writer.append(steer=0.4 * np.sin(i / 3), images={"center": _frame(i)},
                          masks={"center": mask})
    corrupt = recording / "images" / "center" / f"{CORRUPT_ROW:06d}.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    model = root / "dave2.keras"
    build_dave2(seed=0).save(model)
    return {"root": root, "recording": recording, "model": model,
            "constant": _constant_model(root / "constant.keras")}


# --- stage 1: decode ---------------------------------------------------------------------------

def test_decode_stage_skips_a_corrupt_frame_and_counts_it(files) -> None:
    from drive_viz.model.contract import DAVE2_CONTRACT
    from drive_viz.runs.replay import ReplayOptions, decode_batch, select_rows

    drive = select_rows(files["recording"], ReplayOptions(start=2, end=7, progress=False))
    assert drive.rows == [2, 3, 4, 5, 6]
    decoded = decode_batch(drive, DAVE2_CONTRACT, list(enumerate(drive.rows)))
    assert decoded.batch.rows == [2, 3, 5, 6]
    assert decoded.batch.positions == [0, 1, 3, 4]  # the video keeps the drive's positions
    assert [row for row, _ in decoded.skips] == [CORRUPT_ROW]
    assert decoded.batch.inputs.shape[0] == 4
    assert all(mask is not None for mask in decoded.batch.masks)
    # the camera frames are the recorded ones (JPEG: close, not equal)
    assert np.abs(decoded.batch.frames_rgb[2].astype(int) - _frame(5)).mean() < 4
    summary = RunSummary(("saliency",), "saliency", drive.fps)
    for row, error in decoded.skips:
        summary.skip(row, row, error)
    assert summary.skip_reasons.total() == 1 and summary.skipped[0]["row"] == CORRUPT_ROW


# --- stage 2: analyse --------------------------------------------------------------------------

@pytest.mark.parametrize("model_key, empty", [("model", False), ("constant", True)])
def test_analyse_stage_columns(files, model_key, empty) -> None:
    from drive_viz.analysis import FrameAnalyzer
    from drive_viz.attention.stats import MAP_STATISTICS
    from drive_viz.model.contract import DAVE2_CONTRACT
    from drive_viz.model.dave2 import load_steering_model
    from drive_viz.runs.replay import ReplayOptions, analyse_batch, decode_batch, select_rows

    drive = select_rows(files["recording"], ReplayOptions(end=4, progress=False))
    batch = decode_batch(drive, DAVE2_CONTRACT, list(enumerate(drive.rows))).batch
    analyzer = FrameAnalyzer(load_steering_model(files[model_key]), ("saliency", "gradcam"),
                             with_video=False)
    table = analyse_batch(analyzer, drive, batch).table
    assert len(table) == 4
    expected = {"frame", "row", "t", "target", "steer_true", "steer_pred", "abs_error",
                "decode_ms", "model_ms",
                *(f"{m}_{s}" for m in ("saliency", "gradcam") for s in MAP_STATISTICS),
                "saliency_empty", "gradcam_empty"}
    assert expected <= set(table.columns)
    np.testing.assert_allclose(table["steer_true"], 0.4 * np.sin(np.arange(4) / 3), atol=1e-6)
    np.testing.assert_allclose(table["abs_error"],
                               np.abs(table["steer_pred"] - table["steer_true"]))
    np.testing.assert_allclose(table["t"], np.arange(4) / FPS)
    # A constant output has zero gradients everywhere: every map is empty; an untrained
    # network's saliency is not.
    assert table["saliency_empty"].tolist() == [empty] * 4
    if empty:
        assert table["gradcam_empty"].all()
        np.testing.assert_allclose(table["steer_pred"], 0.25, atol=1e-6)
    assert set(batch.heat) == {"saliency", "gradcam"}


# --- galleries: distinct events ----------------------------------------------------------------

def _gallery_frames(keys: list[float], window: float, size: int = 6) -> list[int]:
    gallery = EventGallery("abs_error", None, size=size, window_s=window)
    for position, key in enumerate(keys):
        gallery.offer(float(position), key, position, lambda p=position: {"frame": p})
    return [entry["frame"] for entry in gallery.worst()]


def _events_by_brute_force(keys: list[float], window: float, size: int) -> list[int]:
    """Every frame joins its worst neighbour's event until it reaches a frame with no worse
    frame within the window (a later frame with an equal key is not worse)."""
    def worse(j: int, i: int) -> bool:
        return keys[j] > keys[i] or (keys[j] == keys[i] and j < i)

    roots = [i for i in range(len(keys)) if math.isfinite(keys[i]) and not any(
        worse(j, i) for j in range(len(keys))
        if j != i and abs(j - i) <= window and math.isfinite(keys[j]))]
    return sorted(roots, key=lambda i: (-keys[i], i))[:size]


def test_frames_within_the_window_join_the_worse_frames_event() -> None:
    # one second apart: peaks at t=2 (0.9) and t=7 (0.8); t=6 (0.3) is within 2 s of t=7
    keys = [0.1, 0.5, 0.9, 0.6, 0.2, 0.1, 0.3, 0.8, 0.4, 0.1]
    assert _gallery_frames(keys, window=2.0) == [2, 7]
    # no window: every frame is its own event, ranked by key
    assert _gallery_frames(keys, window=0.0) == [2, 7, 3, 1, 8, 6]
    # a chain: t=2 joins t=0's event, t=4 joins t=2's (so t=0's): one event
    assert _gallery_frames([0.9, 0.0, 0.8, 0.0, 0.7], window=2.0) == [0]
    # 2.5 s apart with a 2 s window: two events
    gallery = EventGallery("abs_error", None, window_s=2.0)
    for t, key in ((0.0, 0.5), (2.5, 0.6)):
        gallery.offer(t, key, int(t * 10), lambda t=t: {"t": t})
    assert [entry["t"] for entry in gallery.worst()] == [2.5, 0.0]


def test_event_gallery_equals_the_brute_force_definition() -> None:
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        keys = rng.integers(0, 6, n).astype(float).tolist()  # many ties
        if trial % 3 == 0:
            keys[int(rng.integers(0, n))] = math.nan
        window = float(rng.choice([0.0, 1.0, 2.0, 3.5]))
        assert _gallery_frames(keys, window, size=3) == _events_by_brute_force(keys, window, 3)


def test_gallery_entries_say_what_ranked_them() -> None:
    summary = RunSummary(("saliency", "gradcam"), "gradcam", fps=1.0)
    table = pd.DataFrame({"frame": [10, 11, 12], "row": [0, 1, 2], "t": [0.0, 1.0, 2.0],
                          "steer_true": [0.0, 0.1, 0.2], "steer_pred": [0.5, 0.1, 0.2],
                          "abs_error": [0.5, 0.0, 0.0],
                          "gradcam_road_share": [0.9, 0.2, 0.9]})
    summary.add(table, [0, 1, 2])
    worst = summary.worst()
    assert [(e["frame"], e["statistic"], e["method"], e["value"]) for e in worst["by_error"]] \
        == [(10, "abs_error", None, 0.5)]
    (off_road,) = worst["off_road"]
    assert (off_road["frame"], off_road["statistic"], off_road["method"]) == \
        (11, "off_road_share", "gradcam")
    assert off_road["value"] == pytest.approx(0.8)


# --- the writer --------------------------------------------------------------------------------

def test_writer_leaves_no_folder_after_a_failed_run(tmp_path) -> None:
    from drive_viz.model.contract import DAVE2_CONTRACT
    from drive_viz.runs.writer import RunWriter

    summary = RunSummary(("saliency",), "saliency", 10.0)
    out = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), RunWriter(out, summary, DAVE2_CONTRACT,
                                                video_fps=10.0):
        assert out.is_dir()
        raise RuntimeError("a stage failed")
    assert not out.exists()
    kept = tmp_path / "mine"
    kept.mkdir()  # the user's own empty folder: emptied of partial files, not removed
    with pytest.raises(RuntimeError), RunWriter(kept, summary, DAVE2_CONTRACT):
        raise RuntimeError("a stage failed")
    assert kept.is_dir() and list(kept.iterdir()) == []


def test_a_replay_refused_after_it_starts_leaves_no_folder(files, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    # row 4 alone: its image is corrupt, so there is nothing to replay
    code = main(["replay", str(files["recording"]), "--model", str(files["model"]), "--out",
                 str(run), "--start", "4", "--end", "5", "--quiet", "--methods", "saliency"])
    assert code == 2
    assert "every selected frame was unreadable" in capsys.readouterr().err
    assert not run.exists()


def test_clamped_end_is_reported(files, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(["replay", str(files["recording"]), "--model", str(files["model"]), "--out",
                 str(run), "--end", "500", "--quiet", "--no-video", "--methods", "saliency"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"--end 500 is past the recording's last row; replayed up to row {FRAMES}" in out
    parameters = json.loads((run / "summary.json").read_text())["parameters"]
    assert (parameters["end"], parameters["end_requested"]) == (FRAMES, 500)
    table = pd.read_parquet(run / "frames.parquet")
    assert table["row"].tolist() == [r for r in range(FRAMES) if r != CORRUPT_ROW]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["empty_maps"]["saliency"] == int(table["saliency_empty"].sum())


# --- live through the writer -------------------------------------------------------------------

def test_live_writes_the_run_layout_with_tables_in_chunks(files, tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    import drive_viz.runs.writer as writer_module
    from drive_viz.live import LiveOptions, live

    monkeypatch.setattr(writer_module, "TABLE_CHUNK_ROWS", 4)
    run = tmp_path / "run"
    summary = live(files["model"], LiveOptions(frames=10, out=str(run), methods="saliency"))
    assert {p.name for p in run.iterdir()} == {*writer_module.OUTPUT_FILES, "recording"}
    assert pq.ParquetFile(run / "frames.parquet").metadata.num_row_groups == 3  # 4 + 4 + 2
    table = pd.read_parquet(run / "frames.parquet")
    assert table["frame"].tolist() == list(range(10))
    assert (run / "report.html").read_text().rstrip().endswith("</html>")
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    assert on_disk["frames"] == 10  # live's own field: steps run
    assert on_disk["statistics"]["saliency"]["entropy"] == pytest.approx(
        table["saliency_entropy"].mean())
    assert on_disk["steering"]["mae"] == pytest.approx(table["abs_error"].mean())
    assert on_disk["worst_by_error"][0]["abs_error"] == pytest.approx(table["abs_error"].max())


# --- the CLI -----------------------------------------------------------------------------------

def test_library_errors_name_parameters_and_the_cli_names_flags(files, tmp_path,
                                                                capsys) -> None:
    from drive_viz.runs.replay import ReplayOptions

    with pytest.raises(OptionError, match="^stride and batch_size must be at least 1$"):
        ReplayOptions(stride=0)
    with pytest.raises(OptionError, match="^event_window_s -1"):
        ReplayOptions(event_window_s=-1)
    with pytest.raises(DriveVizError, match="^layout 'gradcam' is not one of methods"):
        ReplayOptions(methods="saliency", layout="gradcam")
    code = main(["replay", str(files["recording"]), "--model", str(files["model"]), "--out",
                 str(tmp_path / "run"), "--stride", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "drive-viz: error: --stride and --batch-size must be at least 1\n"
    assert main(["replay", str(files["recording"]), "--model", str(files["model"]), "--out",
                 str(tmp_path / "run"), "--event-window", "nan"]) == 2
    assert "--event-window nan must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_help_lists_the_method_names_and_progress_commands_take_quiet() -> None:
    from drive_viz.attention import METHODS

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        options = {flag for action in command._actions for flag in action.option_strings}
        if "--methods" in options:
            text = " ".join(command.format_help().split())
            assert all(method in text for method in METHODS), name
    for name in ("replay", "demo", "synth", "train"):
        options = {flag for action in commands[name]._actions for flag in action.option_strings}
        assert "--quiet" in options, name


def test_demo_regenerates_the_drive_when_frames_differ(tmp_path, capsys) -> None:
    from drive_viz.recording.reader import open_recording

    recording, run = tmp_path / "rec", tmp_path / "run"
    argv = ["demo", "--recording", str(recording), "--out", str(run), "--quiet"]
    for frames, generated in ((6, True), (6, False), (9, True)):
        assert main([*argv, "--frames", str(frames)]) == 0
        assert ("generating a synthetic drive" in capsys.readouterr().out) == generated
        assert len(open_recording(recording)) == frames
        summary = json.loads((run / "summary.json").read_text())
        assert summary["frames"]["replayed"] == frames


def test_every_combination_of_window_and_ties_keeps_one_frame_per_event() -> None:
    """However the keys tie, no two gallery frames are within the window of each other."""
    for keys in itertools.product((0.0, 1.0, 2.0), repeat=6):
        frames = _gallery_frames(list(keys), window=2.0)
        assert all(abs(a - b) > 2 for a, b in itertools.combinations(frames, 2))
