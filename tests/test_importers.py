"""Importers: Udacity logs, donkeycar tubs (v1, v2) and FRAME_CAMERA_STEER_THROTTLE_BRAKE names.

Every fixture is built here in tmp_path from small numpy images; expected values come from
the fixture's own construction (labels written into the source, unit conversions by hand).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import tree_digest

from drive_viz.cli import main
from drive_viz.errors import RecordingError
from drive_viz.recording.importers import detect_format, import_dataset
from drive_viz.recording.reader import open_recording


def image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth BGR test image (JPEG keeps smooth images close to the original)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    return cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR)


def write_jpeg(path: Path, width: int, height: int, seed: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image(width, height, seed))
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


# ---------------------------------------------------------------------------- Udacity

STAMPS = ["2016_12_01_13_30_48_287", "2016_12_01_13_30_48_387", "2016_12_01_13_30_48_487",
          "2016_12_01_13_30_48_587"]


def udacity_dataset(root: Path, header: bool = True, windows: bool = True) -> dict[str, bytes]:
    """Four frames, three cameras, 320x160. Rows 0 and 3 are good, row 1 has steering 1.5,
    row 2 has NaN throttle. Paths are absolute Windows paths from another machine."""
    rows = [(0.1, 0.5, 0.0, 20.0), (1.5, 0.5, 0.0, 20.0), (-0.2, float("nan"), 0.0, 20.0),
            (-0.3, 0.2, 0.1, 10.0)]
    files = {}
    lines = ["center,left,right,steering,throttle,brake,speed"] if header else []
    for i, (steer, throttle, brake, speed) in enumerate(rows):
        names = [f"{cam}_{STAMPS[i]}.jpg" for cam in ("center", "left", "right")]
        for k, name in enumerate(names):
            files[name] = write_jpeg(root / "IMG" / name, 320, 160, seed=10 * i + k)
        prefix = "C:\\Users\\x\\Desktop\\data\\IMG\\" if windows else "IMG/"
        lines.append(", ".join(prefix + n for n in names)
                     + f", {steer}, {throttle}, {brake}, {speed}")
    (root / "driving_log.csv").write_text("\n".join(lines) + "\n")
    return files


@pytest.mark.parametrize("header", [True, False])
def test_udacity_imports_good_rows_copies_jpegs_and_reports_bad_labels(tmp_path, header):
    src, out = tmp_path / "udacity", tmp_path / "rec"
    files = udacity_dataset(src, header=header)
    before = tree_digest(src)
    assert detect_format(src) == "udacity"
    report = import_dataset(src, out)
    assert tree_digest(src) == before
    assert report.frames == 2 and report.skipped_total == 2
    assert report.skipped["label outside [-1, 1] or NaN"] == 2
    rec = open_recording(out)
    assert rec.cameras == ("center", "left", "right")
    assert len(rec) == 2
    np.testing.assert_allclose(rec.steering(), [0.1, -0.3])
    row = rec.row(1)
    assert (row.throttle, row.brake) == (0.2, 0.1)
    assert row.speed == pytest.approx(10.0 * 0.44704, abs=1e-4)  # mph -> m/s
    # t from the file-name time stamps: 287 ms -> 587 ms is 0.3 s; fps from the 0.1 s steps.
    assert rec.row(0).t == 0.0 and row.t == pytest.approx(0.3)
    assert rec.fps == pytest.approx(10.0)
    # JPEG bytes copied, not re-encoded.
    assert rec.image_path(1, "left").read_bytes() == files[f"left_{STAMPS[3]}.jpg"]
    assert rec.image(0, "center").shape == (160, 320, 3)
    left, right = rec.meta.camera("left"), rec.meta.camera("right")
    assert left.y < 0 < right.y and left.y == -right.y
    assert (left.width, left.height) == (320, 160)
    assert rec.meta.finished


def test_udacity_center_only_without_time_stamps_uses_default_fps(tmp_path):
    src = tmp_path / "u"
    write_jpeg(src / "IMG" / "a.jpg", 320, 160, 1)
    write_jpeg(src / "IMG" / "b.jpg", 320, 160, 2)
    (src / "driving_log.csv").write_text("IMG/a.jpg,,,0.0,0,0,0\nIMG/b.jpg,,,0.5,0,0,0\n")
    report = import_dataset(src, tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    assert rec.cameras == ("center",) and rec.fps == 10.0
    assert [r.t for r in rec] == [0.0, 0.1]
    assert any("t = frame / 10 fps" in n for n in report.notes)


def test_udacity_never_follows_paths_out_of_the_dataset(tmp_path):
    src = tmp_path / "u"
    outside = tmp_path / "secret"
    write_jpeg(outside / "leak.jpg", 320, 160, 3)
    write_jpeg(src / "IMG" / "ok.jpg", 320, 160, 4)
    write_jpeg(src / "IMG" / "ok2.jpg", 320, 160, 5)
    (src / "IMG" / "link.jpg").symlink_to(outside / "leak.jpg")
    (src / "driving_log.csv").write_text(
        "IMG/ok.jpg,,,0.0,0,0,0\n"
        "../secret/leak.jpg,,,0.1,0,0,0\n"        # '..' part: skipped
        "/abs/elsewhere/IMG/ok2.jpg,,,0.2,0,0,0\n"  # absolute: resolved by name in IMG/
        "IMG/link.jpg,,,0.3,0,0,0\n")              # symlink leaving the dataset: skipped
    report = import_dataset(src, tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    np.testing.assert_allclose(rec.steering(), [0.0, 0.2])
    assert report.skipped["image path leaves the dataset folder"] == 2


def test_udacity_corrupt_missing_and_odd_size_images_are_skipped(tmp_path):
    src = tmp_path / "u"
    lines = []
    for i in range(5):
        write_jpeg(src / "IMG" / f"c{i}.jpg", 320, 160, i)
        lines.append(f"IMG/c{i}.jpg,,,0.{i},0,0,0")
    good = (src / "IMG" / "c1.jpg").read_bytes()
    (src / "IMG" / "c1.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (src / "IMG" / "c2.jpg").write_bytes(b"\xff\xd8garbage\xff\xd9")  # not decodable
    (src / "IMG" / "c3.jpg").unlink()
    write_jpeg(src / "IMG" / "c4.jpg", 160, 120, 9)  # another size
    lines.append("IMG/c5.jpg,,,0.5,0,0,0")
    write_jpeg(src / "IMG" / "c5.jpg", 320, 160, 5)
    (src / "driving_log.csv").write_text("\n".join(lines) + "\n")
    report = import_dataset(src, tmp_path / "rec")
    assert report.frames == 2
    assert report.skipped == {"corrupt image": 2, "image missing": 1,
                              "center image size differs from the camera's 320x160": 1}
    assert open_recording(tmp_path / "rec").steering().tolist() == [0.0, 0.5]


def test_png_images_are_reencoded_as_jpeg(tmp_path):
    src = tmp_path / "u"
    (src / "IMG").mkdir(parents=True)
    bgr = image(64, 32, 7)
    cv2.imwrite(str(src / "IMG" / "a.png"), bgr)
    (src / "driving_log.csv").write_text("a.png,,,0.0,0,0,0\n")
    import_dataset(src, tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    assert rec.image_path(0).read_bytes()[:2] == b"\xff\xd8"
    rgb = rec.image(0)
    assert np.abs(rgb.astype(int) - bgr[:, :, ::-1].astype(int)).mean() < 3


# ---------------------------------------------------------------------------- donkeycar

def donkey_v2_tub(root: Path, count: int = 6, deleted: tuple[int, ...] = (2,)) -> None:
    """A v2 tub as donkeycar's datastore_v2 writes it (\\r\\n lines, two catalogs of 4)."""
    (root / "images").mkdir(parents=True)
    inputs = ["cam/image_array", "user/angle", "user/throttle", "user/mode"]
    types = ["image_array", "float", "float", "str"]
    catalogs: dict[str, list[str]] = {}
    for i in range(count):
        name = f"{i}_cam_image_array_.jpg"
        write_jpeg(root / "images" / name, 160, 120, i)
        record = {"_index": i, "_session_id": "s", "_timestamp_ms": 1_600_000_000_000 + 50 * i,
                  "cam/image_array": name, "user/angle": round(-0.5 + 0.2 * i, 3),
                  "user/throttle": 0.3, "user/mode": "user"}
        catalogs.setdefault(f"catalog_{i // 4}.catalog", []).append(json.dumps(record))
    for name, lines in catalogs.items():
        (root / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    manifest = [inputs, types, {}, {"created_at": 1.0},
                {"paths": sorted(catalogs), "current_index": count, "max_len": 4,
                 "deleted_indexes": list(deleted)}]
    (root / "manifest.json").write_bytes(
        ("\r\n".join(json.dumps(x) for x in manifest) + "\r\n").encode())


def test_donkey_v2_honours_deleted_indexes_and_time_stamps(tmp_path):
    src = tmp_path / "tub"
    donkey_v2_tub(src)
    before = tree_digest(src)
    assert detect_format(src) == "donkey"
    report = import_dataset(src, tmp_path / "rec")
    assert tree_digest(src) == before
    rec = open_recording(tmp_path / "rec")
    expected = [-0.5 + 0.2 * i for i in (0, 1, 3, 4, 5)]
    np.testing.assert_allclose(rec.steering(), expected, atol=1e-6)
    assert report.skipped == {"deleted in the tub's manifest (deleted_indexes)": 1}
    assert rec.fps == pytest.approx(20.0)  # 50 ms steps
    assert [round(r.t, 3) for r in rec] == [0.0, 0.05, 0.15, 0.2, 0.25]
    source_jpeg = src / "images" / "3_cam_image_array_.jpg"
    assert rec.image_path(2).read_bytes() == source_jpeg.read_bytes()
    assert rec.source == "donkey" and rec.meta.extra["importer"] == "donkeycar-v2"


def test_donkey_mixed_image_sizes_keep_the_most_common(tmp_path):
    src = tmp_path / "tub"
    donkey_v2_tub(src, deleted=())
    write_jpeg(src / "images" / "4_cam_image_array_.jpg", 320, 240, 99)
    report = import_dataset(src, tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    assert len(rec) == 5
    assert (rec.meta.camera("center").width, rec.meta.camera("center").height) == (160, 120)
    assert report.skipped == {"center image size differs from the camera's 160x120": 1}


def test_donkey_v1_records(tmp_path):
    src = tmp_path / "tub"
    src.mkdir()
    (src / "meta.json").write_text(json.dumps(
        {"inputs": ["cam/image_array", "user/angle", "user/throttle", "user/mode"],
         "types": ["image_array", "float", "float", "str"]}))
    for i, angle in enumerate([0.25, float("nan"), -0.75, 2.0]):
        write_jpeg(src / f"{i}_cam-image_array_.jpg", 160, 120, i)
        (src / f"record_{i}.json").write_text(json.dumps(
            {"cam/image_array": f"{i}_cam-image_array_.jpg", "user/angle": angle,
             "user/throttle": 0.1, "user/mode": "user"}))
    (src / "record_10.json").write_text("{not json")
    report = import_dataset(src, tmp_path / "rec", format="donkey")
    rec = open_recording(tmp_path / "rec")
    np.testing.assert_allclose(rec.steering(), [0.25, -0.75])
    assert report.skipped == {"label outside [-1, 1] or NaN": 2, "unreadable record": 1}
    assert rec.fps == 20.0 and rec.row(1).t == pytest.approx(0.05)


# ---------------------------------------------------------------------------- file names

def test_packt_groups_cameras_by_frame_and_skips_incomplete_frames(tmp_path):
    src = tmp_path / "packt" / "fine"
    for frame, steer in [(100, 0.0), (101, -0.25), (102, 0.5)]:
        for cam in ("MAIN", "LEFT", "RIGHT"):
            if frame == 101 and cam == "RIGHT":
                continue
            write_jpeg(src / f"{frame:08d}_{cam}_{steer:.6f}_0.500000_0.000000.jpg", 200, 66,
                       frame)
    (src / "notes.jpg").write_bytes(b"x")
    report = import_dataset(tmp_path / "packt", tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    assert rec.cameras == ("center", "left", "right")
    np.testing.assert_allclose(rec.steering(), [0.0, 0.5])
    assert report.skipped["frame has no image for a camera the others have"] == 1
    assert report.skipped["file name is not FRAME_CAMERA_STEER_THROTTLE_BRAKE"] == 1
    # t follows the frame counter: frames 100 and 102 at one frame per row and 10 rows/s.
    assert [r.t for r in rec] == [0.0, 0.2]


def test_packt_interleaved_recorder_keeps_main_frames(tmp_path):
    """The book's recorder writes one camera per frame: frame % 3 -> MAIN, LEFT, RIGHT."""
    src = tmp_path / "packt"
    for frame in range(78459, 78468):
        cam = ("MAIN", "LEFT", "RIGHT")[frame % 3]
        write_jpeg(src / f"{frame:08d}_{cam}_0.100000_0.500000_0.000000.jpg", 200, 66, frame)
    report = import_dataset(src, tmp_path / "rec", format="packt")
    rec = open_recording(tmp_path / "rec")
    assert rec.cameras == ("center",) and len(rec) == 3
    assert report.skipped["side camera on its own frame (interleaved recording)"] == 6
    assert [round(r.t, 6) for r in rec] == [0.0, 0.1, 0.2]


# ---------------------------------------------------------------------------- errors, CLI

def test_unusable_sources_raise_one_line_errors_and_leave_no_output(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordingError, match="unknown dataset layout"):
        import_dataset(empty, tmp_path / "out")
    header_only = tmp_path / "u"
    header_only.mkdir()
    (header_only / "driving_log.csv").write_text("center,left,right,steering,throttle,brake\n")
    with pytest.raises(RecordingError, match="empty table"):
        import_dataset(header_only, tmp_path / "out")
    bad = tmp_path / "bad"
    write_jpeg(bad / "IMG" / "a.jpg", 320, 160, 0)
    (bad / "driving_log.csv").write_text("IMG/a.jpg,,,3.0,0,0,0\n")
    with pytest.raises(RecordingError, match="no usable frames") as caught:
        import_dataset(bad, tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(RecordingError, match="must not be inside the source"):
        import_dataset(bad, bad / "rec")


def test_import_refuses_existing_output_unless_overwrite(tmp_path):
    src = tmp_path / "tub"
    donkey_v2_tub(src)
    import_dataset(src, tmp_path / "rec")
    with pytest.raises(RecordingError, match="already exists"):
        import_dataset(src, tmp_path / "rec")
    assert import_dataset(src, tmp_path / "rec", overwrite=True).frames == 5


def test_cli_import_prints_report_and_exit_codes(tmp_path, capsys):
    src = tmp_path / "u"
    udacity_dataset(src, header=False)
    assert main(["import", str(src), str(tmp_path / "rec")]) == 0
    out = capsys.readouterr().out
    assert "imported 2 frame(s)" in out and "label outside [-1, 1] or NaN" in out
    (tmp_path / "nothing").mkdir()
    assert main(["import", str(tmp_path / "nothing"), str(tmp_path / "rec2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drive-viz: error: ") and err.count("\n") == 1


def test_interrupted_import_leaves_a_readable_recording(tmp_path):
    """Kill an import mid-run: the recording holds a prefix of the frames, all readable."""
    src = tmp_path / "u"
    src.mkdir()
    lines = []
    for i in range(400):
        write_jpeg(src / "IMG" / f"{i}.jpg", 320, 160, i % 7)
        lines.append(f"IMG/{i}.jpg,,,{(i % 200) / 200:.3f},0,0,0")
    (src / "driving_log.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "rec"
    script = ("import sys, drive_viz.recording.writer as w\n"
              "from drive_viz.recording.importers import import_dataset\n"
              "append = w.RecordingWriter.append\n"
              "def stop_at_150(self, **kw):\n"
              "    if self.frames_written == 150:\n"
              "        import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return append(self, **kw)\n"
              "w.RecordingWriter.append = stop_at_150\n"
              f"import_dataset({str(src)!r}, {str(out)!r})\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9
    rec = open_recording(out)
    assert len(rec) == 150 and not rec.meta.finished
    np.testing.assert_allclose(rec.steering(), [(i % 200) / 200 for i in range(150)], atol=1e-6)
    assert rec.image(149).shape == (160, 320, 3)
