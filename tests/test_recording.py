"""The recording format: round trip, crash safety, validation errors, ``drive-viz info``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drive_viz.cli import main
from drive_viz.errors import FrameError, RecordingError
from drive_viz.recording import MASK_CLASSES, CameraSpec, RecordingMeta, RecordingWriter
from drive_viz.recording.format import TABLE_FILE
from drive_viz.recording.reader import open_recording
from drive_viz.recording.validate import find_problems

CAMERAS = (CameraSpec("center", 64, 32, fov=90.0, x=1.5, z=1.4),
           CameraSpec("left", 64, 32, fov=80.0, x=1.5, y=-0.5, z=1.4, yaw=-10.0))


def smooth_rgb(seed: int, width: int = 64, height: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (3, 3, 3)).astype(np.uint8), (width, height),
                      interpolation=cv2.INTER_LINEAR)


def write_small(path: Path, frames: int = 4, with_masks: bool = False) -> list[dict]:
    """Write ``frames`` frames; return what was written (labels, images, masks)."""
    meta = RecordingMeta(source="synthetic", fps=20.0, cameras=CAMERAS,
                         mask_classes=MASK_CLASSES if with_masks else None,
                         extra={"town": "Town04", "seed": 7})
    written = []
    with RecordingWriter(path, meta, with_masks=with_masks) as writer:
        for i in range(frames):
            item = {"steer": -0.9 + 0.6 * i, "throttle": 0.25 * i / frames, "brake": 0.0,
                    "speed": 3.5 + i,
                    "images": {c.name: smooth_rgb(10 * i + k) for k, c in enumerate(CAMERAS)}}
            if with_masks:
                item["masks"] = {c.name: (np.arange(64 * 32).reshape(32, 64) + i) % 4
                                 for c in CAMERAS}
                item["masks"] = {k: v.astype(np.uint8) for k, v in item["masks"].items()}
            writer.append(**item)
            written.append(item)
    return written


def test_round_trip_labels_images_masks_and_metadata(tmp_path):
    written = write_small(tmp_path / "rec", frames=4, with_masks=True)
    rec = open_recording(tmp_path / "rec")
    assert len(rec) == 4 and rec.cameras == ("center", "left") and rec.fps == 20.0
    assert rec.meta.cameras == CAMERAS
    assert rec.meta.mask_classes == MASK_CLASSES and rec.meta.finished
    assert rec.meta.extra == {"town": "Town04", "seed": 7} and rec.source == "synthetic"
    for i, item in enumerate(written):
        row = rec.row(i)
        assert row.frame == i and row.t == pytest.approx(i / 20.0)
        for key in ("steer", "throttle", "brake", "speed"):
            assert getattr(row, key) == pytest.approx(item[key], abs=1e-4)
        for camera in rec.cameras:
            decoded = rec.image(i, camera)
            assert decoded.shape == (32, 64, 3) and decoded.dtype == np.uint8
            # JPEG quality 92 on a smooth image: a small mean error, no channel swap.
            error = np.abs(decoded.astype(int) - item["images"][camera].astype(int))
            assert error.mean() < 3.0
            np.testing.assert_array_equal(rec.mask(i, camera), item["masks"][camera])
    np.testing.assert_allclose(rec.steering(), [it["steer"] for it in written], atol=1e-6)
    assert find_problems(rec) == []


def test_writer_accepts_jpeg_bytes_unchanged(tmp_path):
    ok, buf = cv2.imencode(".jpg", smooth_rgb(1))
    meta = RecordingMeta(source="udacity", fps=10.0, cameras=(CAMERAS[0],))
    with RecordingWriter(tmp_path / "rec", meta) as writer:
        writer.append(steer=0.0, images={"center": buf.tobytes()})
    assert open_recording(tmp_path / "rec").image_path(0).read_bytes() == buf.tobytes()


WRITER_SCRIPT = """
import sys
import numpy as np
from drive_viz.recording import CameraSpec, RecordingMeta, RecordingWriter
meta = RecordingMeta(source="synthetic", fps=20.0,
                     cameras=(CameraSpec("center", 320, 160), CameraSpec("left", 320, 160)))
writer = RecordingWriter(sys.argv[1], meta, with_masks=True)
rng = np.random.default_rng(0)
frame = rng.integers(0, 256, (160, 320, 3), dtype=np.uint8)
mask = rng.integers(0, 4, (160, 320), dtype=np.uint8)
i = 0
while True:
    writer.append(steer=(i % 100) / 100, images={"center": frame, "left": frame},
                  masks={"center": mask, "left": mask})
    i += 1
    print(i, flush=True)
"""


def test_writer_killed_with_sigkill_leaves_a_readable_recording(tmp_path):
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(out)],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    reported = 0
    while reported < 25 and time.monotonic() < deadline:
        reported = int(proc.stdout.readline())
    proc.kill()  # SIGKILL, mid-run: the writer is busy appending the next frames
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -9 and reported >= 25
    rec = open_recording(out)
    assert not rec.meta.finished
    assert len(rec) >= reported  # every frame whose row was written (it may have done more)
    np.testing.assert_allclose(rec.steering(), [(i % 100) / 100 for i in range(len(rec))])
    for i in range(len(rec)):
        for camera in rec.cameras:
            assert rec.image(i, camera).shape == (160, 320, 3)
            assert rec.mask(i, camera).shape == (160, 320)
    problems = find_problems(rec)
    assert len(problems) == 1 and "not marked finished" in problems[0]


def test_partial_last_table_line_is_dropped(tmp_path):
    write_small(tmp_path / "rec", frames=3)
    with open(tmp_path / "rec" / TABLE_FILE, "a") as table:
        table.write("3,0.150000,0.5")  # a writer killed in the middle of a row
    rec = open_recording(tmp_path / "rec")
    assert len(rec) == 3 and rec.row(2).frame == 2


def test_missing_image_names_the_file(tmp_path):
    write_small(tmp_path / "rec", frames=3)
    missing = tmp_path / "rec" / "images" / "left" / "000001.jpg"
    missing.unlink()
    rec = open_recording(tmp_path / "rec")
    with pytest.raises(FrameError, match=f"{missing}: missing"):
        rec.image(1, "left")
    assert [p for p in find_problems(rec) if str(missing) in p]
    assert rec.image(1, "center").shape == (32, 64, 3)


def test_truncated_jpeg_names_the_file(tmp_path):
    write_small(tmp_path / "rec", frames=2)
    path = tmp_path / "rec" / "images" / "center" / "000000.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    rec = open_recording(tmp_path / "rec")
    with pytest.raises(FrameError, match=f"{path}: truncated JPEG"):
        rec.image(0)
    assert any(str(path) in p for p in find_problems(rec))


def _edit_table(folder: Path, edit) -> Path:
    table = folder / TABLE_FILE
    lines = table.read_text().splitlines()
    table.write_text("\n".join(edit(lines)) + "\n")
    return table


def test_table_with_a_missing_column_names_the_file(tmp_path):
    write_small(tmp_path / "rec", frames=2)

    def drop_steer(lines):
        header = lines[0].split(",")
        k = header.index("steer")
        return [",".join(v for j, v in enumerate(line.split(",")) if j != k) for line in lines]

    table = _edit_table(tmp_path / "rec", drop_steer)
    with pytest.raises(RecordingError, match=f"{table}: missing column.*steer"):
        open_recording(tmp_path / "rec")


def test_non_numeric_steering_names_the_file(tmp_path):
    write_small(tmp_path / "rec", frames=3)

    def spoil(lines):
        k = lines[0].split(",").index("steer")
        values = lines[2].split(",")
        values[k] = "left"
        return lines[:2] + [",".join(values)] + lines[3:]

    table = _edit_table(tmp_path / "rec", spoil)
    with pytest.raises(RecordingError, match=f"{table}: column 'steer' is not numeric.*'left'"):
        open_recording(tmp_path / "rec")


def test_unknown_format_version_names_the_file(tmp_path):
    write_small(tmp_path / "rec", frames=1)
    meta_path = tmp_path / "rec" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match=f"{meta_path}: unknown format version 2"):
        open_recording(tmp_path / "rec")


def test_info_json_fields(tmp_path, capsys):
    written = write_small(tmp_path / "rec", frames=4)
    assert main(["info", str(tmp_path / "rec"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    steers = [item["steer"] for item in written]  # -0.9, -0.3, 0.3, 0.9
    assert info["frames"] == 4 and info["cameras"] == ["center", "left"]
    assert info["fps"] == 20.0 and info["source"] == "synthetic"
    assert info["steer_min"] == pytest.approx(min(steers))
    assert info["steer_max"] == pytest.approx(max(steers))
    assert info["steer_mean"] == pytest.approx(sum(steers) / 4, abs=1e-9)
    assert info["duration_s"] == pytest.approx(3 / 20.0)  # 4 frames at 20 fps span 3 steps
    assert info["problems"] == []


def test_info_fails_on_a_folder_that_is_not_a_recording(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert main(["info", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drive-viz: error: ") and "meta.json" in err
    assert main(["info", str(tmp_path / "nowhere"), "--json"]) != 0


def test_frame_number_too_large_for_int64_is_refused(tmp_path):
    write_small(tmp_path / "rec", frames=1)
    table = _edit_table(tmp_path / "rec",
                        lambda lines: [lines[0], "99999999999999999999999" + lines[1][1:]])
    with pytest.raises(RecordingError, match=f"{table}: column 'frame' must hold whole numbers"):
        open_recording(tmp_path / "rec")
