"""Killing long-running commands (SIGKILL and SIGINT, at several moments) leaves a readable
recording of the frames finished, no final-named output that is incomplete, and a rerun that
overwrites cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from drive_viz.errors import DriveVizError
from drive_viz.recording.reader import open_recording
from drive_viz.runs.replay import OUTPUT_FILES

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
KILLS = [(0.5, signal.SIGINT), (1.5, signal.SIGKILL), (3.0, signal.SIGKILL)]
FRAMES_TO_IMPORT = 700
DRIVE_FRAMES = 96


def _start(argv: list[str], stdout: Path | None = None) -> subprocess.Popen:
    """Run drive-viz; its stdout, unbuffered, goes to the file ``stdout`` when given."""
    env = ENV if stdout is None else {**ENV, "PYTHONUNBUFFERED": "1"}
    with open(stdout or os.devnull, "w") as sink:
        return subprocess.Popen([sys.executable, "-m", "drive_viz.cli", *argv], env=env,
                                stdout=sink, stderr=subprocess.PIPE, text=True)


def _kill(process: subprocess.Popen, delay: float, sig: signal.Signals,
          ready: Callable[[], bool] = lambda: True, timeout: float = 60.0) -> tuple[int, str]:
    """Once ``ready()`` holds, wait ``delay`` seconds and send ``sig``; return exit code and
    stderr. A run that finishes first is fine (its outputs are then checked as complete)."""
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def _started(recording: Path, since: float) -> Callable[[], bool]:
    """Ready once this run (not an earlier one) has begun the recording: a signal that lands
    during Python's start-up tests the interpreter, not drive-viz."""
    meta = recording / "meta.json"
    return lambda: meta.exists() and meta.stat().st_mtime >= since


def _check_recording(path: Path) -> int:
    """A killed writer leaves either nothing, or a recording whose every row is readable."""
    if not (path / "meta.json").exists():
        return 0
    rec = open_recording(path)
    for i in range(len(rec)):
        image = rec.image(i)
        assert image.ndim == 3 and image.dtype == np.uint8
    return len(rec)


def _assert_interrupted(code: int, err: str, sig: signal.Signals) -> None:
    assert "Traceback" not in err, err
    if sig == signal.SIGINT:  # -SIGINT: it landed while the interpreter was shutting down
        assert code in (0, 130, -signal.SIGINT), err
    else:
        assert code in (0, -signal.SIGKILL), err


def test_killed_synth_keeps_finished_frames_and_reruns_with_overwrite(tmp_path) -> None:
    out = tmp_path / "synth"
    for delay, sig in KILLS:
        launched = time.time()
        process = _start(["synth", str(out), "--frames", "5000", "--overwrite"])
        code, err = _kill(process, delay, sig, ready=_started(out, launched))
        _assert_interrupted(code, err, sig)
        _check_recording(out)
        if (out / "meta.json").exists():
            assert not open_recording(out).meta.finished
    done = subprocess.run([sys.executable, "-m", "drive_viz.cli", "synth", str(out),
                           "--frames", "3", "--overwrite"], env=ENV, capture_output=True)
    assert done.returncode == 0
    assert _check_recording(out) == 3 and open_recording(out).meta.finished


def test_killed_import_keeps_finished_frames_and_reruns_with_overwrite(tmp_path) -> None:
    src = tmp_path / "udacity"
    (src / "IMG").mkdir(parents=True)
    y, x = np.mgrid[0:480, 0:640]
    texture = np.stack([x % 251, y % 241, (x * y) % 239], axis=2).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", texture, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    rows = []
    for i in range(FRAMES_TO_IMPORT):
        (src / "IMG" / f"c{i}.jpg").write_bytes(jpeg)
        rows.append(f"IMG/c{i}.jpg,,,{(i % 20) / 20 - 0.5},0.3,0,10")
    (src / "driving_log.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "imported"
    for delay, sig in KILLS:
        launched = time.time()
        code, err = _kill(_start(["import", str(src), str(out), "--overwrite"]), delay, sig,
                          ready=_started(out, launched))
        _assert_interrupted(code, err, sig)
        _check_recording(out)
    assert len(list((src / "IMG").iterdir())) == FRAMES_TO_IMPORT  # the source is untouched
    done = subprocess.run([sys.executable, "-m", "drive_viz.cli", "import", str(src), str(out),
                           "--overwrite"], env=ENV, capture_output=True)
    assert done.returncode == 0
    assert len(open_recording(out)) == FRAMES_TO_IMPORT


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    from drive_viz.sim.synth import write_synthetic_recording

    return write_synthetic_recording(tmp_path_factory.mktemp("fault") / "drive", DRIVE_FRAMES,
                                     seed=3,
                                     masks=False)


def test_killed_train_leaves_no_model_that_does_not_load(drive, tmp_path) -> None:
    from drive_viz.model.dave2 import card_path, load_steering_model

    out = tmp_path / "models" / "m.keras"
    argv = ["train", str(drive), "--out", str(out), "--epochs", "200", "--batch-size", "16",
            "--no-progress"]
    log = tmp_path / "stdout.txt"

    def ready() -> bool:  # the first epoch's line is out: training is under way
        return log.exists() and log.stat().st_size > 0

    for delay, sig in [(0.5, signal.SIGINT), (1.5, signal.SIGKILL)]:
        code, err = _kill(_start(argv, stdout=log), delay, sig, ready=ready)
        _assert_interrupted(code, err, sig)
        if out.exists():  # only if the run finished: then it is whole
            load_steering_model(out)
            assert json.loads(card_path(out).read_text())["model"] == "m.keras"
        assert not list(out.parent.glob("*.partial*")) or code == -signal.SIGKILL


def _check_run(run: Path) -> None:
    """Every final-named replay output that exists is complete and consistent."""
    finals = {name for name in OUTPUT_FILES if (run / name).exists()}
    if "frames.parquet" in finals:
        table = pd.read_parquet(run / "frames.parquet")
        assert len(table) > 0
    if "annotated.mp4" in finals:
        assert "frames.parquet" in finals  # the video is committed last
        with av.open(str(run / "annotated.mp4")) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == len(table)
    if "summary.json" in finals:
        json.loads((run / "summary.json").read_text())
    if "report.html" in finals:
        assert (run / "report.html").read_text().rstrip().endswith("</html>")


def test_killed_replay_leaves_only_complete_outputs_and_reruns(drive, tmp_path) -> None:
    from drive_viz.model.dave2 import build_dave2

    model = tmp_path / "m.keras"
    build_dave2(seed=0).save(model)
    run = tmp_path / "run"
    argv = ["replay", str(drive), "--model", str(model), "--out", str(run), "--quiet",
            "--overwrite", "--methods", "saliency", "--batch-size", "16"]

    partial = run / ".frames.parquet.partial"
    for delay, sig in [(0.3, signal.SIGKILL), (0.8, signal.SIGINT)]:
        launched = time.time()
        code, err = _kill(_start(argv), delay, sig, ready=lambda since=launched: (
            partial.exists() and partial.stat().st_mtime >= since))  # not a stale partial
        _assert_interrupted(code, err, sig)
        _check_run(run)
        if sig == signal.SIGINT and code == 130:
            assert not list(run.glob(".*.partial"))  # an interrupted run cleans up
    done = subprocess.run([sys.executable, "-m", "drive_viz.cli", *argv], env=ENV,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(OUTPUT_FILES) <= {p.name for p in run.iterdir()}
    _check_run(run)
    assert len(pd.read_parquet(run / "frames.parquet")) == DRIVE_FRAMES


def test_unfinished_recording_is_still_refused_cleanly_when_empty(tmp_path) -> None:
    """A writer killed right after meta.json: the folder is a recording with no table yet."""
    from drive_viz.recording.format import CameraSpec, RecordingMeta, write_meta

    rec = tmp_path / "rec"
    rec.mkdir()
    write_meta(rec, RecordingMeta(source="x", fps=10.0, cameras=(CameraSpec("center", 32, 24),)))
    with pytest.raises(DriveVizError, match="frames.csv: missing"):
        open_recording(rec)
