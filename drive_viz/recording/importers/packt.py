"""Frames whose file name carries the labels: ``FRAME_CAMERA_STEER_THROTTLE_BRAKE.jpg``, e.g.
``00078459_MAIN_0.000000_0.020000_0.000000.jpg`` (the CARLA recorder of Packt's "Hands-On
Vision and Behavior for Self-Driving Cars", chapter 8). FRAME is CARLA's frame counter;
cameras MAIN, LEFT and RIGHT become center, left and right.

Files are grouped by frame number. A frame that lacks a camera the others have is skipped.
That book's recorder saves ONE camera per CARLA frame in turn (frame % 3: MAIN, LEFT, RIGHT),
so when no frame holds two cameras the MAIN frames become a centre-only recording and the
side-camera frames are reported as skipped. The file names hold no time: rows are assumed
to come at 10 per second, and ``t`` follows the frame counter so gaps in it are kept.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from drive_viz.recording.importers.common import CameraPose, ImportReport, Scan, SourceFrame

CAMERAS = {"MAIN": "center", "LEFT": "left", "RIGHT": "right"}
DEFAULT_FPS = 10.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_FILES = 2_000_000
#: The recorder's camera rig (CARLA transforms, metres; CARLA's y points right) and CARLA's
#: default RGB camera field of view.
POSES = {"center": CameraPose("center", fov=90.0, x=1.6, z=1.7),
         "left": CameraPose("left", fov=90.0, x=1.6, y=-4.0, z=1.7),
         "right": CameraPose("right", fov=90.0, x=1.6, y=4.0, z=1.7)}
_NAME = re.compile(r"^(\d{1,18})_([A-Za-z]+)_([^_]+)_([^_]+)_([^_]+)$")


def parse_name(name: str) -> tuple[int, str, float, float, float] | None:
    """(frame, CAMERA, steer, throttle, brake) from a file name, or None if it does not
    follow the convention (numbers that do not parse included)."""
    stem, suffix = os.path.splitext(name)
    match = _NAME.match(stem)
    if match is None or suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        steer, throttle, brake = (float(g) for g in match.groups()[2:])
    except ValueError:
        return None
    return int(match.group(1)), match.group(2).upper(), steer, throttle, brake


def _image_files(src: Path) -> list[Path]:
    """Every image file under ``src`` (sub-folders included, symlinked folders not followed)."""
    files: list[Path] = []
    for folder, subfolders, names in os.walk(src):
        subfolders.sort()
        files.extend(Path(folder) / n for n in sorted(names)
                     if n.lower().endswith(IMAGE_SUFFIXES))
        if len(files) > MAX_FILES:
            break
    return files


def looks_like(src: Path) -> bool:
    """True when some image under ``src`` is named by the convention."""
    return src.is_dir() and any(parse_name(p.name) for p in _image_files(src))


def scan(src: Path, report: ImportReport) -> tuple[Scan, Path]:
    """Group the files by frame number; return the frames and the dataset folder."""
    groups: dict[int, dict[str, tuple[Path, float, float, float]]] = defaultdict(dict)
    for path in _image_files(src):
        parsed = parse_name(path.name)
        if parsed is None:
            report.skip("file name is not FRAME_CAMERA_STEER_THROTTLE_BRAKE", path.name)
            continue
        frame, camera_code, steer, throttle, brake = parsed
        camera = CAMERAS.get(camera_code)
        if camera is None:
            report.skip(f"unknown camera {camera_code} (expected MAIN, LEFT or RIGHT)", path.name)
        elif camera in groups[frame]:
            report.skip("second file for the same frame and camera", path.name)
        else:
            groups[frame][camera] = (path, steer, throttle, brake)
    numbers = sorted(number for number, cams in groups.items() if cams)
    interleaved = len({c for n in numbers for c in groups[n]}) > 1 and all(
        len(groups[n]) == 1 for n in numbers)
    if interleaved:
        report.note("one camera per frame (the recorder saves MAIN, LEFT, RIGHT in turn): "
                    "imported the MAIN frames as a centre-only recording")
        for number in numbers:
            camera, (path, *_) = next(iter(groups[number].items()))
            if camera != "center":
                report.skip("side camera on its own frame (interleaved recording)", path.name)
        numbers = [n for n in numbers if "center" in groups[n]]
    cameras = Counter(c for n in numbers for c in groups[n])
    camera_names = [name for name in ("center", "left", "right") if name in cameras]
    frames = []
    for number in numbers:
        files = groups[number]
        path, steer, throttle, brake = files.get("center") or next(iter(files.values()))
        frames.append(SourceFrame(where=f"frame {number}", steer=steer, throttle=throttle,
                                  brake=brake, t=float(number),
                                  images={c: files[c][0] for c in files if c in camera_names}))
    step = float(np.median(np.diff(numbers))) if len(numbers) > 1 else 1.0
    for frame in frames:
        frame.t = frame.t / (step * DEFAULT_FPS) if math.isfinite(step) and step > 0 else None
    report.note(f"file names hold no time: assumed {DEFAULT_FPS:g} rows per second, "
                f"t follows the frame number ({step:g} frame(s) per row)")
    extra = {"importer": "packt", "frame_step": step,
             "camera_pose_note": "rig of the book's recorder: side cameras 4 m to each side"}
    return Scan("packt", DEFAULT_FPS, [POSES[n] for n in camera_names] or [POSES["center"]],
                frames, extra), src
