"""``drive-viz replay`` end to end on a small recording and an untrained DAVE-2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from drive_viz.cli import main
from drive_viz.errors import DriveVizError, ModelError
from drive_viz.recording.format import MASK_CLASSES, CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter
from drive_viz.render.video import mp4_top_level_boxes
from drive_viz.runs.replay import OUTPUT_FILES, ReplayOptions, replay

FRAMES = 20
CORRUPT_ROW = 9
FPS = 20.0


def _frame(i: int) -> np.ndarray:
    """Smooth 160x120 road-ish frame that changes with i (cheap to encode)."""
    y, x = np.mgrid[0:120, 0:160].astype(np.float32)
    red = 100 + 80 * np.sin(x / 25 + i / 3)
    green = 60 + y
    blue = 120 + 60 * np.cos(y / 20 - i / 4)
    return np.clip(np.stack([red, green, blue], axis=2), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("replay")
    recording = root / "rec"
    meta = RecordingMeta(source="unit test", fps=FPS, cameras=(CameraSpec("center", 160, 120),),
                         mask_classes=MASK_CLASSES)
    mask = np.zeros((120, 160), np.uint8)
    mask[70:, 40:120] = MASK_CLASSES["road"]
    with RecordingWriter(recording, meta, with_masks=True) as writer:
        for i in range(FRAMES):
            writer.append(steer=0.5 * np.sin(i / 4), images={"center": _frame(i)},
                          masks={"center": mask})
    corrupt = recording / "images" / "center" / f"{CORRUPT_ROW:06d}.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:300])  # cut short: no end-of-image marker
    model = root / "dave2.keras"
    build_dave2(seed=0).save(model)
    run = root / "run"
    # --event-window 0: no two frames join one event, so the galleries rank single frames
    code = main(["replay", str(recording), "--model", str(model), "--out", str(run),
                 "--batch-size", "8", "--quiet", "--event-window", "0"])
    assert code == 0
    return {"root": root, "recording": recording, "model": model, "run": run}


def test_video_has_one_frame_per_replayed_frame(workspace) -> None:
    path = workspace["run"] / "annotated.mp4"
    boxes = mp4_top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert float(stream.average_rate) == pytest.approx(FPS)
        count = sum(1 for _ in container.decode(stream))
    assert count == FRAMES - 1


def test_tables_have_one_row_per_replayed_frame(workspace) -> None:
    table = pd.read_parquet(workspace["run"] / "frames.parquet")
    csv = pd.read_csv(workspace["run"] / "frames.csv")
    assert len(table) == len(csv) == FRAMES - 1
    assert table["frame"].tolist() == [i for i in range(FRAMES) if i != CORRUPT_ROW]
    for column in ("frame", "t", "steer_true", "steer_pred", "abs_error", "decode_ms",
                   "model_ms", "render_ms", "encode_ms", "first_conv_act_mean",
                   "first_conv_act_max", "first_conv_dead_share"):
        assert column in table.columns, column
    for method in ("saliency", "gradcam", "visualbackprop"):
        for stat in ("entropy", "centroid_x", "lr_balance", "road_share", "temporal_corr"):
            assert f"{method}_{stat}" in table.columns
    assert list(csv.columns) == list(table.columns)
    # Without --causal-blobs: no blob columns, no causal_blobs summary (tests/test_replay_blobs.py)
    assert not {"blobs", "causal_blobs", "causal_mass_share", "blobs_ms"} & set(table.columns)
    summary = json.loads((workspace["run"] / "summary.json").read_text())
    assert "causal_blobs" not in summary and summary["parameters"]["causal_blobs"] is False
    np.testing.assert_allclose(table["t"], table["frame"] / FPS, atol=1e-6)
    np.testing.assert_allclose(table["steer_true"], 0.5 * np.sin(table["frame"] / 4), atol=1e-6)
    np.testing.assert_allclose(table["abs_error"],
                               np.abs(table["steer_pred"] - table["steer_true"]))
    # The mask's road covers part of the view, so the road share is a real fraction.
    assert table["saliency_road_share"].between(0, 1).all()


def test_predictions_match_the_model_on_the_preprocessed_frame(workspace) -> None:
    from drive_viz.model.dave2 import load_steering_model
    from drive_viz.model.preprocess import preprocess_batch
    from drive_viz.recording.reader import open_recording

    table = pd.read_parquet(workspace["run"] / "frames.parquet")
    rec = open_recording(workspace["recording"])
    model = load_steering_model(workspace["model"])
    rows = [0, 5, 17]
    inputs = preprocess_batch([rec.image(r) for r in rows])
    expected = np.asarray(model(inputs, training=False))[:, 0]
    got = table.set_index("frame").loc[rows, "steer_pred"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_report_gallery_shows_the_worst_frames_with_their_own_pictures(workspace) -> None:
    """The worst-by-error gallery holds the frames the table ranks worst, and each card's
    camera thumbnail is that frame (thumbnails are drawn at the end from kept frames, so a
    card showing another frame's pixels would mean a frame was overwritten in between)."""
    import base64
    import re

    import cv2

    from drive_viz.model.contract import DAVE2_CONTRACT
    from drive_viz.recording.reader import open_recording

    run = workspace["run"]
    table = pd.read_parquet(run / "frames.parquet")
    summary = json.loads((run / "summary.json").read_text())
    worst = table.sort_values("abs_error", ascending=False)["frame"].head(6).tolist()
    assert [entry["frame"] for entry in summary["worst_by_error"]] == worst
    page = (run / "report.html").read_text()
    section = page[page.index("Worst frames by steering error"):]
    cards = re.findall(r"<img class='camera' src='data:image/jpeg;base64,([^']+)'.*?"
                       r"<div class='maps'>(.*?)</div><p>frame (\d+),", section)
    assert [int(frame) for _, _, frame in cards[:6]] == worst
    rec = open_recording(workspace["recording"])
    top, _, _, _ = DAVE2_CONTRACT.crop_box(120, 160)
    sky = top * 240 // 120 - 4  # thumbnail rows above the crop box carry no heat
    for camera, maps, frame in cards[:6]:
        thumbnail = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(camera), np.uint8),
                                              cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert thumbnail.shape == (240, 320, 3)
        errors = {other: np.abs(cv2.resize(rec.image(other), (320, 240))[:sky].astype(int)
                                - thumbnail[:sky]).mean()
                  for other in table["frame"]}
        assert min(errors, key=errors.get) == int(frame)
        assert maps.count("data:image/jpeg;base64,") == 3


def test_summary_reports_the_corrupt_frame(workspace) -> None:
    summary = json.loads((workspace["run"] / "summary.json").read_text())
    assert summary["frames"] == {"selected": FRAMES, "replayed": FRAMES - 1, "skipped": 1}
    assert summary["skipped"]["count"] == 1
    (entry,) = summary["skipped"]["frames"]
    assert entry["frame"] == CORRUPT_ROW and f"{CORRUPT_ROW:06d}.jpg" in entry["reason"]
    table = pd.read_parquet(workspace["run"] / "frames.parquet")
    error = table["steer_pred"] - table["steer_true"]
    assert summary["steering"]["mae"] == pytest.approx(error.abs().mean())
    assert summary["steering"]["rmse"] == pytest.approx(np.sqrt((error ** 2).mean()))
    assert summary["steering"]["correlation"] == pytest.approx(
        np.corrcoef(table["steer_true"], table["steer_pred"])[0, 1], abs=1e-6)
    worst = summary["worst_by_error"]
    assert worst[0]["abs_error"] == pytest.approx(table["abs_error"].max())
    assert summary["worst_off_road"] is not None
    assert summary["statistics"]["saliency"]["entropy"] == pytest.approx(
        table["saliency_entropy"].mean())
    assert {p.name for p in workspace["run"].iterdir()} == set(OUTPUT_FILES)


def test_tables_written_in_chunks_equal_the_tables_written_at_once(workspace,
                                                                    monkeypatch) -> None:
    """Rows reach the files ``TABLE_CHUNK_ROWS`` at a time; chunks that cut batches in two
    (5 rows against batches of 8) give the same tables."""
    import drive_viz.runs.summary as summary_module
    import drive_viz.runs.writer as writer_module

    monkeypatch.setattr(writer_module, "TABLE_CHUNK_ROWS", 5)
    run = workspace["root"] / "chunked"
    replay(workspace["recording"], workspace["model"], run,
           ReplayOptions(batch_size=8, progress=False, video=False))
    timing = list(summary_module.TIMING_COLUMNS)
    expected = pd.read_parquet(workspace["run"] / "frames.parquet").drop(columns=timing)
    for got in (pd.read_parquet(run / "frames.parquet"), pd.read_csv(run / "frames.csv")):
        got = got.drop(columns=timing)
        assert list(got.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-5)


def test_start_end_stride(workspace) -> None:
    run = workspace["root"] / "strided"
    summary = replay(workspace["recording"], workspace["model"], run,
                     ReplayOptions(start=2, end=18, stride=3, batch_size=4, progress=False))
    table = pd.read_parquet(run / "frames.parquet")
    assert table["frame"].tolist() == [2, 5, 8, 11, 14, 17]
    assert summary["frames"]["replayed"] == 6
    with av.open(str(run / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(FPS / 3)
        assert sum(1 for _ in container.decode(stream)) == 6


def test_existing_run_is_refused_without_overwrite(workspace, capsys) -> None:
    before = (workspace["run"] / "summary.json").stat().st_mtime_ns
    code = main(["replay", str(workspace["recording"]), "--model", str(workspace["model"]),
                 "--out", str(workspace["run"]), "--quiet"])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (workspace["run"] / "summary.json").stat().st_mtime_ns == before


def test_model_that_does_not_fit_is_refused_before_any_work(workspace) -> None:
    import keras

    inputs = keras.Input(shape=(64, 64, 3))
    wrong = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    path = workspace["root"] / "wrong.keras"
    wrong.save(path)
    run = workspace["root"] / "never"
    with pytest.raises(ModelError, match="does not fit"):
        replay(workspace["recording"], path, run, ReplayOptions(progress=False))
    assert not run.exists()


def test_interrupted_run_leaves_no_complete_looking_file(workspace, monkeypatch) -> None:
    import drive_viz.attention.engine as engine_module

    real_call = engine_module.AttentionEngine.__call__
    calls = []

    def failing_call(self, inputs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_call(self, inputs)

    monkeypatch.setattr(engine_module.AttentionEngine, "__call__", failing_call)
    run = workspace["root"] / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        replay(workspace["recording"], workspace["model"], run,
               ReplayOptions(batch_size=4, progress=False))
    assert not run.exists()  # no file, and no folder: this run created it


def test_unknown_method_is_a_one_line_error(workspace) -> None:
    with pytest.raises(DriveVizError, match="unknown method"):
        replay(workspace["recording"], workspace["model"], workspace["root"] / "bad",
               ReplayOptions(methods=("saliency", "telepathy"), progress=False))


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux-only")
def test_decode_threads_yield_to_the_later_stages() -> None:
    import os
    import threading

    from drive_viz.runs import pipeline as replay_module

    seen: dict[str, int] = {}

    def decode_thread() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        replay_module.yield_to_later_stages()
        seen["before"] = before
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=decode_thread)
    thread.start()
    thread.join()
    expected = min(19, seen["before"] + replay_module.DECODE_NICENESS)
    assert replay_module.DECODE_NICENESS > 0
    assert seen["after"] == expected
    # only that thread: the calling (model) thread keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


def test_video_size_quality_and_embedding(workspace) -> None:
    import base64
    import re

    out = workspace["root"] / "small"
    summary = replay(workspace["recording"], workspace["model"], out,
                     ReplayOptions(end=6, batch_size=8, progress=False, video_size=(320, 180),
                                   video_quality="low", embed_video=True))
    with av.open(str(out / "annotated.mp4")) as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height) == (320, 180)
    assert (summary["video"]["width"], summary["video"]["height"]) == (320, 180)
    assert summary["video"]["quality"] == "low"
    page = (out / "report.html").read_text()
    source = re.search(r"<video id='video' src='data:video/mp4;base64,([^']*)'", page).group(1)
    assert base64.b64decode(source) == (out / "annotated.mp4").read_bytes()


@pytest.mark.parametrize(("options", "message"), [
    ({"video_size": (321, 180)}, "must be even"), ({"video_size": (100, 60)}, "minimum 160x90"),
    ({"video_quality": "ultra"}, "expected one of low, medium, high")])
def test_bad_video_options_are_refused_where_defined(options, message) -> None:
    with pytest.raises(DriveVizError, match=message):
        ReplayOptions(**options)


def test_bad_video_size_flag_is_a_one_line_error(workspace, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(workspace["recording"]), "--model", str(workspace["model"]),
              "--out", str(workspace["root"] / "never"), "--video-size", "1280by720"])
    assert exit_info.value.code == 2
    assert "--video-size: video size '1280by720': expected WIDTHxHEIGHT" in capsys.readouterr().err
    assert not (workspace["root"] / "never").exists()
