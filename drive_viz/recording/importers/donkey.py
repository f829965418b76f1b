"""donkeycar tubs, both layouts.

v2 (donkeycar >= 4): ``manifest.json`` is newline-delimited JSON: the inputs (list), their
types (list), user metadata, manifest metadata, and catalog metadata (``paths`` of the
``catalog_N.catalog`` files, ``current_index``, ``max_len``, ``deleted_indexes``). Each catalog
line is one record: ``cam/image_array`` names a file in ``images/``, ``user/angle`` and
``user/throttle`` are the labels, ``_index`` and ``_timestamp_ms`` are donkeycar's own.
Records whose index is in ``deleted_indexes`` are left out, as donkeycar itself does.

v1: ``meta.json`` (``inputs``, ``types``), ``record_N.json`` per frame and
``N_cam-image_array_.jpg`` images, all in the tub folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from drive_viz.errors import RecordingError
from drive_viz.recording.importers.common import (
    CameraPose,
    ImportReport,
    Scan,
    SourceFrame,
    estimate_fps,
    inside,
    plain_file_name,
    read_text_file,
)

MANIFEST_FILE = "manifest.json"
V1_META_FILE = "meta.json"
IMAGE_KEY = "cam/image_array"
STEER_KEY = "user/angle"
THROTTLE_KEY = "user/throttle"
#: donkeycar's default drive loop rate (DRIVE_LOOP_HZ), used when records carry no time.
DEFAULT_FPS = 20.0
#: The donkeycar kit's wide-angle Raspberry Pi camera is sold as a 160 degree lens (nominal).
CAMERA_FOV_DEG = 160.0
MAX_MANIFEST_BYTES = 64 << 20
MAX_RECORD_BYTES = 1 << 20
_CATALOG = re.compile(r"^catalog_(\d+)\.catalog$")
_RECORD = re.compile(r"^record_(\d+)\.json$")


def looks_like(src: Path) -> bool:
    """True when ``src`` is a donkeycar tub (v2 manifest, or v1 meta.json plus records)."""
    return is_v2(src) or _v1_meta(src) is not None


def is_v2(src: Path) -> bool:
    return (src / MANIFEST_FILE).is_file()


def scan(src: Path, report: ImportReport) -> tuple[Scan, Path]:
    """Read the tub's records in index order; return the frames and the tub folder."""
    if is_v2(src):
        inputs, types, frames = _scan_v2(src, report)
        layout = "donkeycar-v2"
    else:
        inputs, types, frames = _scan_v1(src, report)
        layout = "donkeycar-v1"
    if all(frame.t is not None for frame in frames) and frames:
        fps = estimate_fps([f.t for f in frames if f.t is not None], DEFAULT_FPS)
    else:
        fps = DEFAULT_FPS
        for frame in frames:
            frame.t = None
        report.note(f"records carry no time stamp: t = frame / {DEFAULT_FPS:g} fps "
                    "(donkeycar's default loop rate)")
    extra = {"importer": layout, "donkey_inputs": inputs[:64], "donkey_types": types[:64],
             "speed_note": "donkeycar records no speed: speed is 0",
             "camera_pose_note": f"field of view is the kit lens's nominal {CAMERA_FOV_DEG:g} deg"}
    return Scan("donkey", fps, [CameraPose("center", fov=CAMERA_FOV_DEG)], frames, extra), src


def _image_key(inputs: list[Any], types: list[Any]) -> str:
    """The first input of type image_array (donkeycar's camera), else ``cam/image_array``."""
    for name, kind in zip(inputs, types, strict=False):
        if kind == "image_array" and isinstance(name, str):
            return name
    return IMAGE_KEY


def _scan_v2(tub: Path, report: ImportReport) -> tuple[list[Any], list[Any], list[SourceFrame]]:
    manifest = tub / MANIFEST_FILE
    if not inside(tub, manifest):
        raise RecordingError(f"{manifest}: symlink leaves the tub folder; not read")
    lines = []
    for number, line in enumerate(read_text_file(manifest, MAX_MANIFEST_BYTES).splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                raise RecordingError(f"{manifest}: line {number} is not JSON") from None
    if len(lines) < 2 or not isinstance(lines[0], list) or not isinstance(lines[1], list):
        raise RecordingError(f"{manifest}: does not start with the inputs and types lists")
    inputs, types = lines[0], lines[1]
    catalog_meta = next((line for line in reversed(lines)
                         if isinstance(line, dict) and "paths" in line), {})
    deleted = catalog_meta.get("deleted_indexes") or []
    deleted_indexes = {i for i in deleted if isinstance(i, int)} if isinstance(deleted, list) \
        else set()
    catalogs = _catalog_paths(tub, catalog_meta.get("paths"), report)
    image_key = _image_key(inputs, types)
    frames: list[SourceFrame] = []
    position = 0
    for catalog in catalogs:
        text = read_text_file(catalog, MAX_MANIFEST_BYTES)
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{catalog.name} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            index = record.get("_index") if isinstance(record, dict) else None
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            position += 1
            if not isinstance(record, dict):
                report.skip("unreadable record", where)
                continue
            if index in deleted_indexes:
                report.skip("deleted in the tub's manifest (deleted_indexes)", where)
                continue
            frame = _frame(record, image_key, tub / "images", where, report,
                           _seconds(record.get("_timestamp_ms")))
            if frame is not None:
                frames.append(frame)
    return inputs, types, frames


def _catalog_paths(tub: Path, listed: Any, report: ImportReport) -> list[Path]:
    """The catalog files in order: as the manifest lists them, else ``catalog_N`` by N."""
    if isinstance(listed, list) and listed:
        paths = []
        for name in listed:
            if not isinstance(name, str) or not plain_file_name(name) \
                    or not inside(tub, tub / name):
                report.skip("catalog path leaves the tub folder", f"{MANIFEST_FILE}: {name!r}")
            elif not (tub / name).is_file():
                report.skip("catalog file missing", name)
            else:
                paths.append(tub / name)
        return paths
    found = [(int(m.group(1)), p) for p in tub.iterdir() if (m := _CATALOG.match(p.name))]
    paths = []
    for _, path in sorted(found):
        if not inside(tub, path):
            report.skip("catalog path leaves the tub folder", path.name)
        elif path.is_file():
            paths.append(path)
    return paths


def _v1_meta(tub: Path) -> dict[str, Any] | None:
    path = tub / V1_META_FILE
    if not path.is_file() or not inside(tub, path):
        return None
    try:
        meta = json.loads(read_text_file(path, MAX_RECORD_BYTES))
    except (json.JSONDecodeError, RecordingError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("inputs"), list) else None


def _scan_v1(tub: Path, report: ImportReport) -> tuple[list[Any], list[Any], list[SourceFrame]]:
    meta = _v1_meta(tub) or {}
    inputs = meta.get("inputs", [])
    types = meta.get("types", []) if isinstance(meta.get("types"), list) else []
    image_key = _image_key(inputs, types)
    records = sorted((int(m.group(1)), p) for p in tub.iterdir() if (m := _RECORD.match(p.name)))
    if not records:
        raise RecordingError(f"{tub}: donkeycar v1 tub without record_N.json files")
    frames = []
    for _, path in records:
        if not inside(tub, path):
            report.skip("record path leaves the tub folder", path.name)
            continue
        try:
            record = json.loads(read_text_file(path, MAX_RECORD_BYTES))
        except (json.JSONDecodeError, RecordingError):
            record = None
        if not isinstance(record, dict):
            report.skip("unreadable record", path.name)
            continue
        frame = _frame(record, image_key, tub, path.name, report,
                       _seconds(record.get("milliseconds")))
        if frame is not None:
            frames.append(frame)
    return inputs, types, frames


def _as_float(value: Any) -> float | None:
    """A JSON number as float; None for anything else (bools, strings, ints too big)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _seconds(milliseconds: Any) -> float | None:
    value = _as_float(milliseconds)
    return None if value is None else value / 1000.0


def _frame(record: dict[str, Any], image_key: str, folder: Path, where: str,
           report: ImportReport, t: float | None) -> SourceFrame | None:
    steer, throttle = _as_float(record.get(STEER_KEY)), _as_float(record.get(THROTTLE_KEY))
    if steer is None or throttle is None:
        report.skip(f"{STEER_KEY} or {THROTTLE_KEY} missing or not a number", where)
        return None
    name = record.get(image_key)
    if not isinstance(name, str) or not name:
        report.skip("record names no camera image", where)
        return None
    if not plain_file_name(name):
        report.skip("image path leaves the dataset folder", where)
        return None
    return SourceFrame(where=where, steer=steer, throttle=throttle, t=t,
                       images={"center": folder / name})
