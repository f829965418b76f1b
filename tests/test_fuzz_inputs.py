"""Fuzzing what tests/test_recording_fuzz.py does not: image headers with arbitrary claimed
sizes and mutated bytes, and hostile image paths in every importer's records. Readers answer
only with DriveVizError subclasses and never touch anything outside the folders given."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drive_viz.errors import DriveVizError, FrameError
from drive_viz.recording.format import MAX_IMAGE_SIDE
from drive_viz.recording.images import decode_image, decode_mask
from drive_viz.recording.importers import import_dataset

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
JPEG = cv2.imencode(".jpg", np.full((24, 32, 3), 90, np.uint8))[1].tobytes()
PNG = cv2.imencode(".png", np.zeros((24, 32), np.uint8))[1].tobytes()
SOF = JPEG.index(b"\xff\xc0")
sides = st.one_of(st.integers(0, 65535), st.sampled_from([0, 1, 8, 8192, 8193, 60000, 65535]))
hostile_names = st.one_of(
    st.sampled_from(["/etc/hostname", "../outside/leak.jpg", "..", ".", "", "C:\\x\\leak.jpg",
                     "C:leak.jpg", "\\\\server\\share\\leak.jpg", "a/../../leak.jpg",
                     "images/../../outside/leak.jpg", "link.jpg", "leak.jpg\x00.jpg",
                     "~/leak.jpg", "%2e%2e/leak.jpg"]),
    st.text(max_size=20))


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@FUZZ
@given(width=sides, height=sides, png=st.booleans())
def test_claimed_sizes_decode_or_raise_frame_error(width, height, png) -> None:
    if png:
        data = PNG[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + PNG[24:]
    else:
        data = (JPEG[:SOF + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
                + JPEG[SOF + 9:])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.png" if png else "x.jpg")
        path.write_bytes(data)
        try:
            image = (decode_mask if png else decode_image)(path)
        except FrameError as exc:
            assert "\n" not in str(exc)
            return
        # Whatever decodes was within bounds (and is what the header said).
        assert 0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE
        assert image.shape[:2] == (height, width)


@FUZZ
@given(base=st.sampled_from([JPEG, PNG]), cuts=st.lists(
    st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=8)), max_size=4))
def test_mutated_image_bytes_raise_only_frame_error(base, cuts) -> None:
    data = bytearray(base)
    for position, replacement in cuts:
        position = min(position, len(data))
        data[position:position + len(replacement)] = replacement
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.img"
        path.write_bytes(bytes(data))
        for decode in (decode_image, decode_mask):
            try:
                decode(path)
            except FrameError:
                pass


def _sandbox_import(build) -> None:
    """Build a dataset in ``box/src`` next to ``box/outside`` (holding a readable image and a
    symlink target), import it into ``box/out``; only DriveVizError, ``outside`` unchanged,
    nothing from ``outside`` in the output."""
    with tempfile.TemporaryDirectory() as name:
        box = Path(name)
        outside = box / "outside"
        outside.mkdir()
        leak = cv2.imencode(".jpg", np.full((24, 32, 3), 250, np.uint8))[1].tobytes()
        (outside / "leak.jpg").write_bytes(leak)
        src = box / "src"
        src.mkdir()
        build(src, outside)
        before = _digest(outside)
        try:
            import_dataset(src, box / "out")
        except DriveVizError:
            pass
        assert _digest(outside) == before
        assert sorted(p.name for p in box.iterdir()) in (["outside", "src"],
                                                        ["out", "outside", "src"])
        assert all(p.read_bytes() != leak for p in (box / "out").rglob("*.jpg"))


@FUZZ
@given(names=st.lists(hostile_names, min_size=1, max_size=4))
def test_udacity_hostile_paths(names) -> None:
    def build(src: Path, outside: Path) -> None:
        (src / "IMG").mkdir()
        (src / "IMG" / "good.jpg").write_bytes(JPEG)
        (src / "IMG" / "link.jpg").symlink_to(outside / "leak.jpg")
        rows = ["IMG/good.jpg,,,0.1,0,0,0"]
        rows += [f'"{n.replace(chr(34), "")}",,,0.2,0,0,0' for n in names]
        (src / "driving_log.csv").write_text("\n".join(rows) + "\n", encoding="utf-8",
                                             errors="surrogatepass")

    _sandbox_import(build)


@FUZZ
@given(names=st.lists(hostile_names, min_size=1, max_size=4), v2=st.booleans(),
       catalogs=st.lists(hostile_names, max_size=2))
def test_donkey_hostile_paths(names, v2, catalogs) -> None:
    def build(src: Path, outside: Path) -> None:
        images = src / "images" if v2 else src
        images.mkdir(exist_ok=True)
        (images / "good.jpg").write_bytes(JPEG)
        (images / "link.jpg").symlink_to(outside / "leak.jpg")
        records = [{"cam/image_array": n, "user/angle": 0.1, "user/throttle": 0.1,
                    "_index": k} for k, n in enumerate(["good.jpg", *names])]
        if v2:
            (src / "manifest.json").write_text(
                '["cam/image_array"]\n["image_array"]\n{}\n{}\n'
                + json.dumps({"paths": ["catalog_0.catalog", *catalogs]}) + "\n")
            (src / "catalog_0.catalog").write_text("\n".join(json.dumps(r) for r in records))
        else:
            (src / "meta.json").write_text('{"inputs": ["cam/image_array"]}')
            for k, record in enumerate(records):
                (src / f"record_{k}.json").write_text(json.dumps(record))

    _sandbox_import(build)
