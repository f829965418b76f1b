"""Check a recording and summarize it (what ``drive-viz info`` prints)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drive_viz.errors import FrameError
from drive_viz.recording.format import LABEL_COLUMNS, TABLE_FILE, image_column
from drive_viz.recording.images import read_image_bytes
from drive_viz.recording.reader import Recording

MAX_PROBLEMS_LISTED = 50


def find_problems(rec: Recording, check_images: bool = True) -> list[str]:
    """Every problem found, one line each, naming the file: NaN labels, steering outside
    [-1, 1], time going backwards, repeated frame numbers, and (with ``check_images``)
    missing, truncated, unreadable or wrong-size images. The list stops at 50 entries plus
    one line counting the rest."""
    problems: list[str] = []
    table_path = rec.path / TABLE_FILE
    table = rec.table
    if len(table) == 0:
        problems.append(f"{table_path}: no frames")
    if not rec.meta.finished:
        problems.append(f"{rec.path / 'meta.json'}: not marked finished (the writer was "
                        "interrupted or is still running)")
    for column in LABEL_COLUMNS:
        nan_rows = np.flatnonzero(table[column].isna().to_numpy())
        if len(nan_rows):
            problems.append(f"{table_path}: {len(nan_rows)} row(s) with no {column} "
                            f"(first: row {int(nan_rows[0])})")
    steer = table["steer"].to_numpy(dtype=np.float64)
    outside = np.flatnonzero(np.abs(steer) > 1.0)
    if len(outside):
        problems.append(f"{table_path}: {len(outside)} row(s) with steer outside [-1, 1] "
                        f"(first: row {int(outside[0])})")
    t = table["t"].to_numpy(dtype=np.float64)
    backwards = np.flatnonzero(np.diff(t) < 0)
    if len(backwards):
        problems.append(f"{table_path}: time goes backwards {len(backwards)} time(s) "
                        f"(first: row {int(backwards[0]) + 1})")
    repeated = table["frame"].duplicated().to_numpy()
    if repeated.any():
        problems.append(f"{table_path}: {int(repeated.sum())} repeated frame number(s) "
                        f"(first: row {int(np.flatnonzero(repeated)[0])})")
    if check_images:
        image_problems = []
        for camera in rec.cameras:
            spec = rec.meta.camera(camera)
            for index in range(len(rec)):
                try:
                    _check_image(rec.image_path(index, camera), spec.width, spec.height)
                except FrameError as exc:
                    image_problems.append(str(exc))
        if len(image_problems) > MAX_PROBLEMS_LISTED:
            rest = len(image_problems) - MAX_PROBLEMS_LISTED
            image_problems = image_problems[:MAX_PROBLEMS_LISTED] + [
                f"... and {rest} more image problem(s)"]
        problems.extend(image_problems)
    return problems


def _check_image(path: Path, width: int, height: int) -> None:
    """Cheap whole-file check: a 1/8-scale decode (much faster than a full one)."""
    data = read_image_bytes(path)
    small = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None:
        raise FrameError(f"{path}: not a readable image")
    expected = (math.ceil(height / 8), math.ceil(width / 8))
    if small.shape[:2] != expected:
        raise FrameError(f"{path}: image size does not match the camera's {width}x{height}")


def summarize(rec: Recording, check_images: bool = True) -> dict[str, Any]:
    """The JSON object ``drive-viz info --json`` prints."""
    steer = rec.steering()
    finite = steer[np.isfinite(steer)]
    t = rec.table["t"].to_numpy(dtype=np.float64)
    finite_t = t[np.isfinite(t)]
    return {
        "path": str(rec.path),
        "frames": len(rec),
        "cameras": list(rec.cameras),
        "camera_specs": [dict(vars(c)) for c in rec.meta.cameras],
        "fps": rec.fps,
        "source": rec.source,
        "finished": rec.meta.finished,
        "has_masks": {c: rec.has_masks(c) for c in rec.cameras},
        "steer_min": float(finite.min()) if len(finite) else None,
        "steer_max": float(finite.max()) if len(finite) else None,
        "steer_mean": float(finite.mean()) if len(finite) else None,
        "duration_s": float(finite_t.max() - finite_t.min()) if len(finite_t) > 1 else 0.0,
        "columns": [c for c in rec.table.columns if c in LABEL_COLUMNS
                    or c.startswith(("image_", "mask_"))],
        "image_columns": [image_column(c) for c in rec.cameras],
        "problems": find_problems(rec, check_images),
    }
