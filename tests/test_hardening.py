"""Hostile inputs: paths that leave a dataset, forged image and table sizes, unwritable or full
outputs, and replays past bad frames. Every refusal is one line with exit 2, never a traceback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import tree_digest

from drive_viz.cli import main
from drive_viz.errors import FrameError, RecordingError
from drive_viz.recording.format import TABLE_FILE, CameraSpec, RecordingMeta
from drive_viz.recording.images import decode_image, decode_mask
from drive_viz.recording.importers import import_dataset
from drive_viz.recording.reader import MAX_TABLE_ROWS, open_recording
from drive_viz.recording.writer import RecordingWriter

LEAVES = "image path leaves the dataset folder"


def _jpeg(width: int = 32, height: int = 24, value: int = 100) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))[1].tobytes()


def _png(width: int = 32, height: int = 24) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width), np.uint8))[1].tobytes()


def _forge_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its start-of-frame header claiming width x height."""
    sof = data.index(b"\xff\xc0")
    return (data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[sof + 9:])


def _forge_png_size(data: bytes, width: int, height: int) -> bytes:
    return data[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[24:]


def _outside(tmp_path: Path) -> Path:
    """A folder beside the dataset holding a valid, distinctive image that must never be read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.jpg").write_bytes(_jpeg(value=250))
    return outside


def _assert_no_leak(out: Path, outside: Path, before: str) -> None:
    leak = (outside / "leak.jpg").read_bytes()
    assert all(p.read_bytes() != leak for p in out.rglob("*.jpg"))
    assert tree_digest(outside) == before


# --- paths inside imported logs ---------------------------------------------------------------

def test_udacity_absolute_windows_dotdot_and_symlink_paths(tmp_path) -> None:
    outside = _outside(tmp_path)
    before = tree_digest(outside)
    src = tmp_path / "udacity"
    (src / "IMG").mkdir(parents=True)
    (src / "IMG" / "good.jpg").write_bytes(_jpeg())
    (src / "IMG" / "link.jpg").symlink_to(outside / "leak.jpg")
    (src / "driving_log.csv").write_text(
        f"IMG/good.jpg,,,0.1,0,0,0\n"
        f"{outside}/leak.jpg,,,0.2,0,0,0\n"           # absolute: looked up by name in IMG/
        f"C:\\Users\\me\\sim\\IMG\\good.jpg,,,0.3,0,0,0\n"  # Windows: by name -> IMG/good.jpg
        f"IMG/../../outside/leak.jpg,,,0.4,0,0,0\n"   # '..': skipped
        f"IMG/link.jpg,,,0.5,0,0,0\n")                # symlink out of the dataset: skipped
    report = import_dataset(src, tmp_path / "out")
    assert report.frames == 2
    assert report.skipped[LEAVES] == 2
    assert report.skipped["image missing"] == 1  # the absolute path's name is not in IMG/
    assert open_recording(tmp_path / "out").steering().tolist() == [0.1, 0.3]
    _assert_no_leak(tmp_path / "out", outside, before)


def test_udacity_log_that_is_a_symlink_out_of_the_dataset_is_not_read(tmp_path) -> None:
    outside = _outside(tmp_path)
    (outside / "driving_log.csv").write_text("IMG/good.jpg,,,0.1,0,0,0\n")
    src = tmp_path / "udacity"
    (src / "IMG").mkdir(parents=True)
    (src / "IMG" / "good.jpg").write_bytes(_jpeg())
    (src / "driving_log.csv").symlink_to(outside / "driving_log.csv")
    with pytest.raises(RecordingError, match="symlink leaves the dataset"):
        import_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_donkey_absolute_windows_dotdot_and_symlink_paths(tmp_path, layout) -> None:
    outside = _outside(tmp_path)
    before = tree_digest(outside)
    tub = tmp_path / "tub"
    images = tub / "images" if layout == "v2" else tub
    images.mkdir(parents=True)
    (images / "0_cam.jpg").write_bytes(_jpeg())
    (images / "link.jpg").symlink_to(outside / "leak.jpg")
    names = ["0_cam.jpg", str(outside / "leak.jpg"), "C:\\tub\\images\\0_cam.jpg",
             "../outside/leak.jpg", "link.jpg", "C:0_cam.jpg"]
    records = [{"cam/image_array": name, "user/angle": 0.1 * k, "user/throttle": 0.2,
                "_index": k, "_timestamp_ms": 1000 + 50 * k} for k, name in enumerate(names)]
    if layout == "v2":
        (tub / "manifest.json").write_text(
            '["cam/image_array", "user/angle", "user/throttle"]\n'
            '["image_array", "float", "float"]\n{}\n{}\n'
            + json.dumps({"paths": ["catalog_0.catalog", "../outside/c.catalog",
                                    "catalog_1.catalog"], "deleted_indexes": []}) + "\n")
        (tub / "catalog_0.catalog").write_text("\n".join(json.dumps(r) for r in records))
        (outside / "c.catalog").write_text(json.dumps(records[0]))
        (tub / "catalog_1.catalog").symlink_to(outside / "c.catalog")
    else:
        (tub / "meta.json").write_text('{"inputs": ["cam/image_array", "user/angle", '
                                       '"user/throttle"], "types": ["image_array"]}')
        for k, record in enumerate(records):
            (tub / f"record_{k}.json").write_text(json.dumps(record))
        (outside / "record.json").write_text(json.dumps(records[0]))
        (tub / "record_99.json").symlink_to(outside / "record.json")
    before = tree_digest(outside)
    report = import_dataset(tub, tmp_path / "out")
    assert report.frames == 1
    assert report.skipped[LEAVES] == 4  # absolute, Windows, '..', symlinked image
    assert report.skipped["image missing"] == 1  # 'C:0_cam.jpg' is a plain (absent) name
    if layout == "v2":
        assert report.skipped["catalog path leaves the tub folder"] == 2
    else:
        assert report.skipped["record path leaves the tub folder"] == 1
    _assert_no_leak(tmp_path / "out", outside, before)


def test_packt_symlinked_file_and_folder_out_of_the_dataset(tmp_path) -> None:
    outside = _outside(tmp_path)
    (outside / "00000009_MAIN_0.9_0.5_0.0.jpg").write_bytes(_jpeg(value=250))
    before = tree_digest(outside)
    src = tmp_path / "packt"
    src.mkdir()
    (src / "00000001_MAIN_0.1_0.5_0.0.jpg").write_bytes(_jpeg())
    (src / "00000002_MAIN_0.2_0.5_0.0.jpg").symlink_to(outside / "leak.jpg")
    (src / "linked_folder").symlink_to(outside, target_is_directory=True)
    report = import_dataset(src, tmp_path / "out")
    assert report.frames == 1
    assert report.skipped[LEAVES] == 1
    assert open_recording(tmp_path / "out").steering().tolist() == [0.1]
    _assert_no_leak(tmp_path / "out", outside, before)


# --- forged sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_image_headers_claiming_huge_sizes_are_refused_before_decoding(tmp_path, monkeypatch,
                                                                      kind) -> None:
    if kind == "jpeg":
        path, data = tmp_path / "huge.jpg", _forge_jpeg_size(_jpeg(), 60000, 60000)
    else:
        path, data = tmp_path / "huge.png", _forge_png_size(_png(), 60000, 60000)
    path.write_bytes(data)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder was called on a forged header")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for decode in (decode_image, decode_mask):
        with pytest.raises(FrameError, match="60000x60000") as caught:
            decode(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_forged_image_in_a_dataset_is_skipped_without_decoding(tmp_path, monkeypatch) -> None:
    src = tmp_path / "udacity"
    (src / "IMG").mkdir(parents=True)
    (src / "IMG" / "a.jpg").write_bytes(_jpeg())
    (src / "IMG" / "b.jpg").write_bytes(_forge_jpeg_size(_jpeg(), 30000, 30000))
    (src / "driving_log.csv").write_text("IMG/a.jpg,,,0.1,0,0,0\nIMG/b.jpg,,,0.2,0,0,0\n")
    decode = cv2.imdecode
    sizes = []

    def watched(buffer, flags):
        image = decode(buffer, flags)
        sizes.append(image.shape[:2])
        return image

    monkeypatch.setattr(cv2, "imdecode", watched)
    report = import_dataset(src, tmp_path / "out")
    assert report.frames == 1 and report.skipped["corrupt image"] == 1
    assert sizes and all(size == (24, 32) for size in sizes)


def test_non_jpeg_png_content_is_refused(tmp_path) -> None:
    path = tmp_path / "frame.jpg"
    path.write_bytes(cv2.imencode(".bmp", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    with pytest.raises(FrameError, match="not a JPEG or PNG"):
        decode_image(path)


def _tiny_recording(path: Path, frames: int = 3) -> Path:
    meta = RecordingMeta(source="test", fps=10.0, cameras=(CameraSpec("center", 32, 24),))
    with RecordingWriter(path, meta) as writer:
        for i in range(frames):
            writer.append(steer=0.1 * i, images={"center": _jpeg(value=40 * i)})
    return path


def test_table_with_absurd_row_count_is_refused_before_parsing(tmp_path) -> None:
    rec = _tiny_recording(tmp_path / "rec")
    table = rec / TABLE_FILE
    header = table.read_text().splitlines()[0]
    with open(table, "w") as handle:
        handle.write(header + "\n")
        handle.write("0,0,0,0,0,0,x\n" * (MAX_TABLE_ROWS + 1))
    with pytest.raises(RecordingError, match="more than 2000000 rows"):
        open_recording(rec)


@pytest.mark.parametrize("frame", ["1e30", "99999999999999999999999", "-1e300"])
def test_absurd_frame_numbers_are_refused(tmp_path, frame) -> None:
    rec = _tiny_recording(tmp_path / "rec")
    table = rec / TABLE_FILE
    lines = table.read_text().splitlines()
    lines[1] = frame + lines[1][1:]
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match="whole numbers"):
        open_recording(rec)


def test_meta_claiming_huge_camera_is_refused(tmp_path) -> None:
    rec = _tiny_recording(tmp_path / "rec")
    meta = json.loads((rec / "meta.json").read_text())
    meta["cameras"][0]["width"] = 10**9
    (rec / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match="outside 8..8192"):
        open_recording(rec)


def test_donkey_manifest_claiming_huge_counts_imports_what_is_there(tmp_path) -> None:
    tub = tmp_path / "tub"
    (tub / "images").mkdir(parents=True)
    (tub / "images" / "0.jpg").write_bytes(_jpeg())
    (tub / "manifest.json").write_text(
        '["cam/image_array", "user/angle", "user/throttle"]\n["image_array", "float", "float"]\n'
        '{}\n{}\n' + json.dumps({"paths": ["catalog_0.catalog"], "current_index": 10**18,
                                 "max_len": 10**18, "deleted_indexes": [10**29, -(10**18)]})
        + "\n")
    (tub / "catalog_0.catalog").write_text(json.dumps(
        {"cam/image_array": "0.jpg", "user/angle": 0.1, "user/throttle": 0.2,
         "_index": 10**30, "_timestamp_ms": 10**30}) + "\n")
    report = import_dataset(tub, tmp_path / "out")
    assert report.frames == 1


# --- unwritable or full outputs ---------------------------------------------------------------

def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    last = err.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]  # after any progress bar
    assert last.startswith("drive-viz: error: ") and err.count("drive-viz: error") == 1, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("outputs")
    rec = root / "rec"
    meta = RecordingMeta(source="test", fps=10.0, cameras=(CameraSpec("center", 64, 48),))
    with RecordingWriter(rec, meta) as writer:
        for i in range(12):
            writer.append(steer=0.05 * i - 0.3,
                          images={"center": np.full((48, 64, 3), 20 * i, np.uint8)})
    udacity = root / "udacity"
    (udacity / "IMG").mkdir(parents=True)
    (udacity / "IMG" / "a.jpg").write_bytes(_jpeg())
    (udacity / "driving_log.csv").write_text("IMG/a.jpg,,,0.1,0,0,0\n")
    model = root / "m.keras"
    build_dave2(seed=0).save(model)
    blocker = root / "a_file"
    blocker.write_text("not a folder")
    return {"rec": rec, "udacity": udacity, "model": model, "blocker": blocker}


@pytest.mark.parametrize("command", ["synth", "import", "train", "replay", "evaluate"])
def test_output_under_a_regular_file_is_one_line_and_input_untouched(inputs, command,
                                                                      capsys) -> None:
    out = inputs["blocker"] / "sub" / "out"
    rec, model = str(inputs["rec"]), str(inputs["model"])
    argv = {"synth": ["synth", str(out), "--frames", "2"],
            "import": ["import", str(inputs["udacity"]), str(out)],
            "train": ["train", rec, "--out", f"{out}.keras", "--epochs", "1", "--no-progress"],
            "replay": ["replay", rec, "--model", model, "--out", str(out), "--quiet"],
            "evaluate": ["evaluate", rec, "--model", model, "--out", str(out),
                         "--frames", "2"]}[command]
    before = {name: tree_digest(inputs[name]) for name in ("rec", "udacity")}
    model_bytes = inputs["model"].read_bytes()
    code, err = _run_cli(argv, capsys)
    _assert_one_line_error(code, err)
    assert str(inputs["blocker"]) in err
    assert {name: tree_digest(inputs[name]) for name in ("rec", "udacity")} == before
    assert inputs["model"].read_bytes() == model_bytes
    assert inputs["blocker"].read_text() == "not a folder"


def test_disk_full_while_recording_keeps_the_frames_written(tmp_path, monkeypatch,
                                                            capsys) -> None:
    import drive_viz.recording.writer as writer_module

    real_write = writer_module.write_atomic
    calls = []

    def fill_up(path, data):
        calls.append(path)
        if len(calls) > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(writer_module, "write_atomic", fill_up)
    out = tmp_path / "synth"
    code, err = _run_cli(["synth", str(out), "--frames", "20", "--no-masks"], capsys)
    _assert_one_line_error(code, err)
    assert "No space left on device" in err
    rec = open_recording(out)
    assert len(rec) == 6 and not rec.meta.finished
    assert all(rec.image(i).shape == (160, 320, 3) for i in range(len(rec)))


def test_disk_full_during_replay_leaves_no_output(inputs, tmp_path, monkeypatch, capsys) -> None:
    import drive_viz.runs.writer as writer_module

    def full(self, table):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.parquet_path))

    monkeypatch.setattr(writer_module.TableSink, "append", full)
    run = tmp_path / "run"
    before = tree_digest(inputs["rec"])
    code, err = _run_cli(["replay", str(inputs["rec"]), "--model", str(inputs["model"]),
                          "--out", str(run), "--quiet", "--no-video", "--methods", "saliency"],
                         capsys)
    _assert_one_line_error(code, err)
    assert "No space left on device" in err
    assert not run.exists()  # no file, and no folder: this run created it
    assert tree_digest(inputs["rec"]) == before


# --- replay past bad frames -------------------------------------------------------------------

def test_replay_counts_bad_frames_and_refuses_only_when_all_are_bad(inputs, tmp_path,
                                                                    capsys) -> None:
    import shutil

    rec = tmp_path / "rec"
    shutil.copytree(inputs["rec"], rec)
    images = rec / "images" / "center"
    (images / "000001.jpg").unlink()                                    # missing
    (images / "000003.jpg").write_bytes(_jpeg(width=40, height=30))     # wrong size
    (images / "000005.jpg").write_bytes(_forge_jpeg_size(_jpeg(64, 48), 60000, 60000))
    (images / "000007.jpg").write_bytes(b"\xff\xd8 garbage \xff\xd9")    # corrupt
    run = tmp_path / "run"
    code, err = _run_cli(["replay", str(rec), "--model", str(inputs["model"]), "--out",
                          str(run), "--quiet", "--no-video", "--methods", "saliency",
                          "--batch-size", "4"], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == {"selected": 12, "replayed": 8, "skipped": 4}
    assert sorted(entry["row"] for entry in summary["skipped"]["frames"]) == [1, 3, 5, 7]
    for path in images.iterdir():
        path.write_bytes(b"not an image")
    code, err = _run_cli(["replay", str(rec), "--model", str(inputs["model"]), "--out",
                          str(tmp_path / "run2"), "--quiet", "--no-video"], capsys)
    _assert_one_line_error(code, err)
    assert "every selected frame was unreadable" in err
    assert not (tmp_path / "run2").exists()  # no file, and no folder: this run created it
