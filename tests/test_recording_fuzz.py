"""Fuzzing: malformed tables, metadata, images and datasets raise DriveVizError, nothing else,
and nothing is written outside the folders given."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drive_viz.errors import DriveVizError
from drive_viz.recording import CameraSpec, RecordingMeta, RecordingWriter
from drive_viz.recording.format import META_FILE, TABLE_FILE
from drive_viz.recording.importers import import_dataset
from drive_viz.recording.reader import open_recording
from drive_viz.recording.validate import find_problems

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_, _JPEG = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
JPEG = _JPEG.tobytes()

number_cells = st.one_of(
    st.sampled_from(["", "0", "-1", "1e400", "nan", "inf", "0.5", "x", "1.5", "2.5",
                     "99999999999999999999999", "\""]), st.text(max_size=6))
path_cells = st.one_of(
    st.sampled_from(["", "images/center/000000.jpg", "../meta.json", "/etc/passwd", ".",
                     "images\\center\\000000.jpg", "images", "images/center/\x00.jpg",
                     "meta.json", "a,b"]), st.text(max_size=12))
cells = st.one_of(number_cells, path_cells)
table_rows = st.one_of(
    st.tuples(*[number_cells] * 6, path_cells, path_cells).map(list),
    st.lists(cells, max_size=9))
header_names = st.sampled_from(["frame", "t", "steer", "throttle", "brake", "speed",
                                "image_center", "mask_center", "junk", ""])
VALID_HEADER = ["frame", "t", "steer", "throttle", "brake", "speed", "image_center",
                "mask_center"]
headers = st.one_of(st.just(VALID_HEADER), st.lists(header_names, min_size=1, max_size=9))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@contextmanager
def sandbox() -> Iterator[Path]:
    """A fresh folder ``box`` inside a private one; after the block, assert nothing appeared
    beside its ``src`` and ``out`` children, nor beside ``box`` itself."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name) / "box"
        (root / "src").mkdir(parents=True)
        yield root
        assert set(os.listdir(root)) <= {"src", "out"}
        assert os.listdir(root.parent) == ["box"]


def valid_recording(folder: Path) -> None:
    meta = RecordingMeta(source="fuzz", fps=10.0, cameras=(CameraSpec("center", 16, 16),))
    with RecordingWriter(folder, meta) as writer:
        writer.append(steer=0.0, images={"center": JPEG})


def exercise(folder: Path) -> None:
    """Open, read every row's image and mask, and validate; only DriveVizError may escape."""
    try:
        rec = open_recording(folder)
        for i in range(min(len(rec), 20)):
            for reader in (rec.image, rec.mask):
                try:
                    reader(i, "center")
                except DriveVizError:
                    pass
        find_problems(rec)
    except DriveVizError as exc:
        assert "\n" not in str(exc)


@FUZZ
@example(header=VALID_HEADER, rows=[["0"] * 6 + ["images/center/\x00.jpg", ""]], tail=b"")
@example(header=VALID_HEADER, rows=[["99999999999999999999999"] + ["0"] * 5], tail=b"")
@given(header=headers,
       rows=st.lists(table_rows, max_size=6),
       tail=st.binary(max_size=8))
def test_malformed_tables_raise_only_drive_viz_errors(header, rows, tail):
    with sandbox() as root:
        folder = root / "out"
        valid_recording(folder)
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        (folder / TABLE_FILE).write_bytes(text.encode("utf-8", "surrogatepass") + tail)
        exercise(folder)


META_KEYS = ["fps", "version", "format", "source", "cameras", "mask_classes", "extra",
             "finished", "camera.name", "camera.width", "camera.height", "camera.fov", "camera.x"]


@FUZZ
@example(key="fps", value=10**400, raw=None)
@example(key="camera.fov", value=-(10**400), raw=None)
@given(key=st.sampled_from(META_KEYS), value=json_values,
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_malformed_metadata_raises_only_drive_viz_errors(key, value, raw):
    with sandbox() as root:
        folder = root / "out"
        valid_recording(folder)
        if raw is not None:
            (folder / META_FILE).write_bytes(raw)
        else:
            meta = json.loads((folder / META_FILE).read_text())
            if key.startswith("camera."):
                meta["cameras"][0][key.removeprefix("camera.")] = value
            else:
                meta[key] = value
            (folder / META_FILE).write_text(json.dumps(meta))
        exercise(folder)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200),
                      st.binary(max_size=100).map(lambda b: JPEG[:20] + b + b"\xff\xd9"),
                      st.integers(1, len(JPEG) - 1).map(lambda n: JPEG[:n])))
def test_malformed_image_files_raise_only_drive_viz_errors(data):
    with sandbox() as root:
        folder = root / "out"
        valid_recording(folder)
        (folder / "images" / "center" / "000000.jpg").write_bytes(data)
        exercise(folder)


def attempt_import(root: Path, format: str) -> None:
    src = root / "src"
    before = {p: p.read_bytes() if p.is_file() else None for p in src.rglob("*")}
    try:
        report = import_dataset(src, root / "out", format=format)
        exercise(root / "out")
        assert report.frames == len(open_recording(root / "out"))
    except DriveVizError as exc:
        assert "\n" not in str(exc)
    after = {p: p.read_bytes() if p.is_file() else None for p in src.rglob("*")}
    assert after == before  # the source is never modified


image_bytes = st.one_of(st.just(JPEG), st.binary(max_size=30),
                        st.integers(1, len(JPEG) - 1).map(lambda n: JPEG[:n]))


@FUZZ
@given(rows=st.lists(st.lists(cells, max_size=8), max_size=5),
       images=st.dictionaries(
           st.sampled_from(["a.jpg", "b.jpg", "center_2016_12_01_13_30_48_287.jpg"]),
           image_bytes, max_size=3))
def test_udacity_importer_on_malformed_logs(rows, images):
    with sandbox() as root:
        (root / "src" / "IMG").mkdir()
        for name, data in images.items():
            (root / "src" / "IMG" / name).write_bytes(data)
        text = "\n".join(",".join(r) for r in rows)
        (root / "src" / "driving_log.csv").write_text(text, encoding="utf-8",
                                                      errors="surrogatepass")
        attempt_import(root, "udacity")


@FUZZ
@given(manifest=st.lists(json_values, max_size=6), catalog=st.lists(json_values, max_size=5),
       raw_line=st.text(max_size=20), image=image_bytes, v1=st.booleans())
def test_donkey_importer_on_malformed_tubs(manifest, catalog, raw_line, image, v1):
    with sandbox() as root:
        src = root / "src"
        lines = [json.dumps(x) for x in catalog] + [raw_line]
        if v1:
            (src / "meta.json").write_text(json.dumps({"inputs": manifest, "types": catalog}))
            for i, record in enumerate(catalog):
                (src / f"record_{i}.json").write_text(json.dumps(record))
            (src / "0_cam-image_array_.jpg").write_bytes(image)
        else:
            (src / "manifest.json").write_text("\r\n".join(json.dumps(x) for x in manifest))
            (src / "catalog_0.catalog").write_text("\r\n".join(lines))
            (src / "images").mkdir()
            (src / "images" / "0_cam_image_array_.jpg").write_bytes(image)
        attempt_import(root, "donkey")


packt_names = st.one_of(
    st.builds(lambda f, c, s, t, b: f"{f:08d}_{c}_{s}_{t}_{b}.jpg",
              st.integers(0, 10**12), st.sampled_from(["MAIN", "LEFT", "RIGHT", "TOP", "main"]),
              st.sampled_from(["0.1", "-2.0", "nan", "inf", "x"]), st.just("0.5"),
              st.sampled_from(["0.0", "1e400"])),
    st.text(alphabet="0123456789_.MAINjpgLEFT-", min_size=1, max_size=30))


@FUZZ
@given(files=st.dictionaries(packt_names, image_bytes, max_size=5))
def test_packt_importer_on_malformed_names(files):
    with sandbox() as root:
        for name, data in files.items():
            if name not in (".", ".."):
                (root / "src" / name).write_bytes(data)
        attempt_import(root, "packt")
