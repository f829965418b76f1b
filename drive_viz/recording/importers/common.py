"""What every importer shares: the frames a source yields, label and image checks, the report,
and the one place frames are written (through ``RecordingWriter``)."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drive_viz.errors import FrameError, RecordingError
from drive_viz.recording.format import CameraSpec, RecordingMeta
from drive_viz.recording.images import read_image_bytes
from drive_viz.recording.writer import RecordingWriter

MAX_LOG_BYTES = 1 << 30
_JPEG_START = b"\xff\xd8"
EXAMPLES_PER_REASON = 3


@dataclass
class SourceFrame:
    """One frame found in a source dataset. ``where`` names it in reports (file and row);
    ``t`` is seconds from any origin (None: derive it from the row index and fps); ``speed``
    in m/s; ``images`` maps camera name to the image file inside the dataset folder."""

    where: str
    steer: float
    throttle: float = 0.0
    brake: float = 0.0
    speed: float = 0.0
    t: float | None = None
    images: dict[str, Path] = field(default_factory=dict)


@dataclass
class CameraPose:
    """A camera as the source describes it, before its image size is known: field of view in
    degrees, position in metres (x forward, y right, z up) and yaw in degrees."""

    name: str
    fov: float = 90.0
    x: float = 0.0
    y: float = 0.0
    z: float = 1.5
    yaw: float = 0.0

    def spec(self, width: int, height: int) -> CameraSpec:
        return CameraSpec(self.name, width, height, self.fov, self.x, self.y, self.z, self.yaw)


@dataclass
class Scan:
    """Everything an importer read from a source: its frames in time order, its cameras, the
    frame rate (frames per second) and notes stored in the recording's ``meta.json`` extra."""

    source: str
    fps: float
    cameras: list[CameraPose]
    frames: list[SourceFrame]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import did: frames written, frames skipped grouped by reason (with a few
    examples each), camera sizes (width, height) in pixels, and notes (assumptions made)."""

    format: str
    source: Path
    output: Path
    frames: int = 0
    fps: float = 0.0
    cameras: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped frame (or file) under ``reason``; keep the first few examples."""
        self.skipped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(where)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def lines(self) -> list[str]:
        """The short report the ``import`` command prints."""
        cameras = ", ".join(f"{name} {w}x{h}" for name, (w, h) in self.cameras.items())
        out = [f"imported {self.frames} frame(s) from {self.source} ({self.format}) "
               f"into {self.output}", f"cameras {cameras}; {self.fps:g} fps"]
        if self.skipped:
            out.append(f"skipped {self.skipped_total}:")
            for reason, count in self.skipped.most_common():
                out.append(f"  {count:6d}  {reason} (e.g. {'; '.join(self.examples[reason])})")
        else:
            out.append("skipped none")
        out.extend(f"note: {text}" for text in self.notes)
        return out


def read_text_file(path: Path, limit: int = MAX_LOG_BYTES) -> str:
    """A log or manifest as text; RecordingError naming it if it is missing or too large.
    Undecodable bytes become U+FFFD (a file name holding them is then simply not found)."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise RecordingError(f"{path}: larger than {limit} bytes")
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror or exc})") from None


def plain_file_name(name: str) -> bool:
    """True when ``name`` is a bare file name: no folder part, not ``.`` or ``..``, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def inside(root: Path, path: Path) -> bool:
    """True when ``path`` (after following symlinks) lies inside the folder ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def label_problem(frame: SourceFrame) -> str | None:
    """Why the frame's labels are unusable (steer/throttle/brake outside [-1, 1] or not finite,
    speed not finite), or None when they are fine."""
    for name in ("steer", "throttle", "brake"):
        value = getattr(frame, name)
        if not (isinstance(value, float) and math.isfinite(value) and -1.0 <= value <= 1.0):
            return "label outside [-1, 1] or NaN"
    if not math.isfinite(frame.speed):
        return "speed is not a finite number"
    return None


def estimate_fps(times: list[float], default: float) -> float:
    """Frames per second from the median step of increasing times in seconds; ``default``
    when there are fewer than two steps or the median step is not positive."""
    steps = np.diff(np.asarray(times, dtype=np.float64))
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if len(steps) == 0:
        return default
    fps = 1.0 / float(np.median(steps))
    return round(fps, 3) if 0.01 <= fps <= 1000 else default


def _image_size(path: Path) -> tuple[int, int]:
    """Decode ``path`` fully (that is what proves it is not corrupt); return (width, height)."""
    data = read_image_bytes(path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{path}: not a readable image")
    return image.shape[1], image.shape[0]


def write_recording(scan: Scan, root: Path, out: Path, overwrite: bool,
                    report: ImportReport) -> ImportReport:
    """Check every frame of ``scan`` (labels, images inside ``root``, decodable, camera size =
    the most common size), then write the good ones to ``out`` through RecordingWriter.
    JPEG files of the right size are copied byte for byte; other images are re-encoded.
    RecordingError (and nothing written) when no frame survives."""
    camera_names = [pose.name for pose in scan.cameras]
    sizes: dict[str, Counter[tuple[int, int]]] = {name: Counter() for name in camera_names}
    checked: list[tuple[SourceFrame, dict[str, tuple[int, int]]]] = []
    for frame in scan.frames:
        problem = label_problem(frame)
        if problem:
            report.skip(problem, frame.where)
            continue
        missing = [name for name in camera_names if name not in frame.images]
        if missing:
            report.skip("frame has no image for a camera the others have", frame.where)
            continue
        frame_sizes = _frame_sizes(frame, camera_names, root, report)
        if frame_sizes is None:
            continue
        for name, size in frame_sizes.items():
            sizes[name][size] += 1
        checked.append((frame, frame_sizes))
    if not checked:
        raise RecordingError(f"{report.source}: no usable frames ({_reasons(report)})")
    camera_sizes = {name: sizes[name].most_common(1)[0][0] for name in camera_names}
    keep = []
    for frame, frame_sizes in checked:
        odd = [n for n in camera_names if frame_sizes[n] != camera_sizes[n]]
        if odd:
            w, h = camera_sizes[odd[0]]
            report.skip(f"{odd[0]} image size differs from the camera's {w}x{h}", frame.where)
        else:
            keep.append(frame)
    meta = RecordingMeta(
        source=scan.source, fps=scan.fps,
        cameras=tuple(pose.spec(*camera_sizes[pose.name]) for pose in scan.cameras),
        extra={**scan.extra, "imported_from": str(report.source)[:500]})
    times = [f.t for f in keep]
    t0 = min(times) if all(t is not None for t in times) else None
    with RecordingWriter(out, meta, overwrite=overwrite) as writer:
        for frame in keep:
            images = _frame_images(frame, camera_names, camera_sizes, report)
            if images is None:
                continue
            t = None if t0 is None or frame.t is None else frame.t - t0
            writer.append(steer=frame.steer, throttle=frame.throttle, brake=frame.brake,
                          speed=frame.speed, images=images, t=t)
        written = writer.frames_written
    if written == 0:  # every image became unreadable after the check: remove the empty output
        shutil.rmtree(out, ignore_errors=True)
        raise RecordingError(f"{report.source}: no usable frames ({_reasons(report)})")
    report.frames = written
    report.fps = scan.fps
    report.cameras = camera_sizes
    return report


def _frame_sizes(frame: SourceFrame, camera_names: list[str], root: Path,
                 report: ImportReport) -> dict[str, tuple[int, int]] | None:
    result = {}
    for name in camera_names:
        path = frame.images[name]
        if not inside(root, path):
            report.skip("image path leaves the dataset folder", frame.where)
            return None
        try:
            result[name] = _image_size(path)
        except FrameError as exc:
            reason = "image missing" if str(exc).endswith(": missing") else "corrupt image"
            report.skip(reason, f"{frame.where}: {path.name}")
            return None
    return result


def _frame_images(frame: SourceFrame, camera_names: list[str],
                  camera_sizes: dict[str, tuple[int, int]],
                  report: ImportReport) -> dict[str, np.ndarray | bytes] | None:
    """Each camera's JPEG bytes (copied as they are: the check pass decoded them) or decoded
    RGB of other formats (re-encoded by the writer). None, reported, when a file became
    unreadable since the check."""
    images: dict[str, np.ndarray | bytes] = {}
    for name in camera_names:
        path = frame.images[name]
        try:
            data = read_image_bytes(path)
        except FrameError:
            report.skip("corrupt image", f"{frame.where}: {path.name}")
            return None
        if data[:2] == _JPEG_START:
            images[name] = data
            continue
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or (bgr.shape[1], bgr.shape[0]) != camera_sizes[name]:
            report.skip("corrupt image", f"{frame.where}: {path.name}")
            return None
        images[name] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return images


def _reasons(report: ImportReport) -> str:
    if not report.skipped:
        return "the source lists no frames"
    return "; ".join(f"{count} {reason}" for reason, count in report.skipped.most_common(3))
