"""Udacity self-driving-car simulator logs: ``driving_log.csv`` plus an ``IMG/`` folder.

The CSV has columns center, left, right, steering, throttle, brake, speed, with or without a
header row. Image paths in it are often absolute paths from the recording machine (Windows
ones too), so every image is looked up BY FILE NAME in the ``IMG/`` folder next to the CSV; a
path with a ``..`` part, or a file whose symlink leaves the dataset folder, skips the row.
The log has no time column: ``t`` comes from the time stamp in the centre image's name
(``center_2016_12_01_13_30_48_287.jpg``) when every name has one, else from frame / 10 fps.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime
from pathlib import Path

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

LOG_FILE = "driving_log.csv"
IMAGE_FOLDER = "IMG"
COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")
DEFAULT_FPS = 10.0
MPH_TO_M_PER_S = 0.44704
#: Lateral offset of the side cameras in metres: an approximate value (the simulator does not
#: publish its camera rig); it is written into the recording's metadata.
SIDE_CAMERA_OFFSET_M = 1.0
#: Unity's default camera has a 60 degree vertical field of view; for the simulator's 2:1
#: (320x160) frames that is 2 * atan(2 * tan(30 deg)) = 98.2 degrees horizontally.
HORIZONTAL_FOV_DEG = round(math.degrees(2 * math.atan(2 * math.tan(math.radians(30)))), 1)
_STAMP = re.compile(r"_(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{3})\.[A-Za-z]+$")


def looks_like(src: Path) -> bool:
    """True when ``src`` is a Udacity log folder (or the CSV itself)."""
    return (src / LOG_FILE).is_file() or (src.is_file() and src.suffix.lower() == ".csv")


def scan(src: Path, report: ImportReport) -> tuple[Scan, Path]:
    """Read the log; return the frames and the dataset folder (the CSV's folder)."""
    log = src if src.is_file() else src / LOG_FILE
    root = log.parent
    if not src.is_file() and not inside(root, log):
        raise RecordingError(f"{log}: symlink leaves the dataset folder; not read")
    rows = _read_rows(log)
    header = _header(rows[0])
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise RecordingError(f"{log}: empty table (no frames)")
    columns = header or {name: i for i, name in enumerate(COLUMNS)}
    side_cameras = [name for name in ("left", "right") if name in columns
                    and sum(bool(_field(row, columns[name])) for row in rows) * 2 >= len(rows)]
    frames: list[SourceFrame] = []
    for number, row in enumerate(rows, start=2 if header else 1):
        where = f"{log.name} line {number}"
        frame = _frame(row, columns, ["center", *side_cameras], root, where, report)
        if frame is not None:
            frames.append(frame)
    stamps = [_time_stamp(frame.images["center"].name) for frame in frames]
    if frames and all(s is not None for s in stamps):
        for frame, stamp in zip(frames, stamps, strict=True):
            frame.t = stamp
        fps = estimate_fps([s for s in stamps if s is not None], DEFAULT_FPS)
    else:
        fps = DEFAULT_FPS
        report.note(f"image names carry no time stamp: t = frame / {DEFAULT_FPS:g} fps")
    poses = [CameraPose("center", fov=HORIZONTAL_FOV_DEG)]
    poses += [CameraPose(name, fov=HORIZONTAL_FOV_DEG,
                         y=SIDE_CAMERA_OFFSET_M if name == "right" else -SIDE_CAMERA_OFFSET_M)
              for name in side_cameras]
    extra = {"importer": "udacity", "speed_units": "m/s (converted from the log's mph)",
             "side_camera_offset_m": SIDE_CAMERA_OFFSET_M,
             "camera_pose_note": "side camera offset and field of view are approximate"}
    return Scan("udacity", fps, poses, frames, extra), root


def _read_rows(log: Path) -> list[list[str]]:
    text = read_text_file(log)
    try:
        rows = [[value.strip() for value in row]
                for row in csv.reader(io.StringIO(text, newline="")) if any(v.strip() for v in row)]
    except csv.Error as exc:
        raise RecordingError(f"{log}: not a readable CSV table ({exc})") from None
    if not rows:
        raise RecordingError(f"{log}: empty table (no frames)")
    return rows


def _header(first_row: list[str]) -> dict[str, int] | None:
    """Column positions from a header row; None when the first row is data (its steering
    field, the fourth, is a number)."""
    if len(first_row) >= 4 and _number(first_row[3]) is not None:
        return None
    names = [value.lower() for value in first_row]
    if "center" not in names or "steering" not in names:
        return None
    return {name: names.index(name) for name in COLUMNS if name in names}


def _field(row: list[str], index: int) -> str:
    return row[index] if index < len(row) else ""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _frame(row: list[str], columns: dict[str, int], cameras: list[str], root: Path, where: str,
           report: ImportReport) -> SourceFrame | None:
    steer = _number(_field(row, columns["steering"]))
    if steer is None:
        report.skip("steering is not a number", where)
        return None
    labels = {}
    for name in ("throttle", "brake", "speed"):
        text = _field(row, columns[name]) if name in columns else ""
        value = _number(text) if text else 0.0
        if value is None:
            report.skip(f"{name} is not a number", where)
            return None
        labels[name] = value
    images = {}
    for camera in cameras:
        logged = _field(row, columns[camera])
        if not logged:
            report.skip("frame has no image for a camera the others have", where)
            return None
        path = _resolve(logged, root)
        if path is None:
            report.skip("image path leaves the dataset folder", where)
            return None
        images[camera] = path
    return SourceFrame(where=where, steer=steer, throttle=labels["throttle"],
                       brake=labels["brake"], speed=labels["speed"] * MPH_TO_M_PER_S,
                       images=images)


def _resolve(logged: str, root: Path) -> Path | None:
    """The image a logged path names: its file name inside ``root/IMG``. None for a path
    with a ``..`` part or no file name."""
    parts = re.split(r"[\\/]", logged)
    name = parts[-1]
    if ".." in parts or not plain_file_name(name):
        return None
    return root / IMAGE_FOLDER / name


def _time_stamp(name: str) -> float | None:
    """Seconds since the epoch (local wall clock, UTC-less) from ``..._YYYY_MM_DD_HH_MM_SS_mmm``."""
    match = _STAMP.search(name)
    if match is None:
        return None
    year, month, day, hour, minute, second, millis = (int(g) for g in match.groups())
    try:
        stamp = datetime(year, month, day, hour, minute, second, millis * 1000)
    except ValueError:
        return None
    return (stamp - datetime(1970, 1, 1)).total_seconds()
