"""The recording format: a folder that describes itself.

::

    REC/
      meta.json              format name and version, source, fps, cameras, mask classes
      frames.csv             one row per frame, appended and flushed as frames arrive
      images/<camera>/NNNNNN.jpg   camera frames (JPEG, RGB)
      masks/<camera>/NNNNNN.png    optional ground-truth class masks (PNG, uint8 labels)

See docs/recording-format.md for the full description.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drive_viz.atomic import write_atomic
from drive_viz.errors import RecordingError

FORMAT_NAME = "drive-viz-recording"
FORMAT_VERSION = 1
META_FILE = "meta.json"
TABLE_FILE = "frames.csv"
LABEL_COLUMNS = ("frame", "t", "steer", "throttle", "brake", "speed")

#: Mask pixel values. A lane marking lies on the road, but its pixels carry the marking class.
MASK_CLASSES = {"other": 0, "road": 1, "lane_marking": 2, "distractor": 3}

MAX_IMAGE_SIDE = 8192
MAX_CAMERAS = 16
MAX_META_BYTES = 1 << 20
_CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _finite(value: float) -> bool:
    """``math.isfinite``, but False for an int too large for a float (JSON allows those)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def image_column(camera: str) -> str:
    """Table column holding ``camera``'s image path (relative to the recording folder)."""
    return f"image_{camera}"


def mask_column(camera: str) -> str:
    """Table column holding ``camera``'s mask path (relative to the recording folder)."""
    return f"mask_{camera}"


@dataclass(frozen=True)
class CameraSpec:
    """One camera: image size in pixels, horizontal field of view in degrees, and its pose
    relative to the vehicle in metres (x forward, y right, z up) and degrees (yaw, positive
    turns the camera to the right)."""

    name: str
    width: int
    height: int
    fov: float = 90.0
    x: float = 0.0
    y: float = 0.0
    z: float = 1.5
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _CAMERA_NAME.match(self.name):
            raise RecordingError(
                f"camera name {self.name!r} is not allowed (use 1-32 of A-Z a-z 0-9 _ -)"
            )
        for side in ("width", "height"):
            value = getattr(self, side)
            if not isinstance(value, int) or isinstance(value, bool):
                raise RecordingError(f"camera {self.name}: {side} must be an integer")
            if not 8 <= value <= MAX_IMAGE_SIDE:
                raise RecordingError(
                    f"camera {self.name}: {side} {value} is outside 8..{MAX_IMAGE_SIDE}"
                )
        for key in ("fov", "x", "y", "z", "yaw"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise RecordingError(f"camera {self.name}: {key} must be a number")
            if not _finite(value):
                raise RecordingError(f"camera {self.name}: {key} must be finite")
        if not 1.0 <= self.fov <= 179.0:
            raise RecordingError(f"camera {self.name}: fov {self.fov} is outside 1..179 degrees")


@dataclass(frozen=True)
class RecordingMeta:
    """Everything ``meta.json`` says about a recording. ``fps`` is the recording rate in
    frames per second; ``finished`` is False while a writer is still appending (or was killed)."""

    source: str
    fps: float
    cameras: tuple[CameraSpec, ...]
    mask_classes: dict[str, int] | None = None
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or len(self.source) > 200:
            raise RecordingError("source must be a string of at most 200 characters")
        if not isinstance(self.fps, (int, float)) or isinstance(self.fps, bool):
            raise RecordingError("fps must be a number")
        if not (_finite(self.fps) and 0 < self.fps <= 1000):
            raise RecordingError(f"fps {self.fps} is outside (0, 1000]")
        if not self.cameras:
            raise RecordingError("a recording needs at least one camera")
        if len(self.cameras) > MAX_CAMERAS:
            raise RecordingError(f"{len(self.cameras)} cameras is more than {MAX_CAMERAS}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise RecordingError(f"camera names repeat: {names}")

    def camera(self, name: str) -> CameraSpec:
        """The camera called ``name``; RecordingError if there is none."""
        for spec in self.cameras:
            if spec.name == name:
                return spec
        raise RecordingError(f"no camera {name!r}; this recording has {list(self.camera_names)}")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": self.source,
            "fps": self.fps,
            "cameras": [asdict(c) for c in self.cameras],
            "mask_classes": self.mask_classes,
            "finished": self.finished,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = META_FILE) -> RecordingMeta:
        """Parse and validate a ``meta.json`` object; RecordingError naming ``where`` if bad."""
        if not isinstance(data, dict):
            raise RecordingError(f"{where}: expected a JSON object")
        if data.get("format") != FORMAT_NAME:
            raise RecordingError(f"{where}: format is {data.get('format')!r}, not {FORMAT_NAME!r}")
        if data.get("version") != FORMAT_VERSION:
            raise RecordingError(
                f"{where}: unknown format version {data.get('version')!r} "
                f"(this drive-viz reads version {FORMAT_VERSION})"
            )
        try:
            cameras_raw = data["cameras"]
            if not isinstance(cameras_raw, list):
                raise RecordingError("cameras must be a list")
            cameras = []
            for raw in cameras_raw:
                if not isinstance(raw, dict):
                    raise RecordingError("each camera must be an object")
                known = {k: raw[k] for k in CameraSpec.__dataclass_fields__ if k in raw}
                cameras.append(CameraSpec(**known))
            mask_classes = data.get("mask_classes")
            if mask_classes is not None and not (
                isinstance(mask_classes, dict)
                and all(isinstance(k, str) and isinstance(v, int) for k, v in mask_classes.items())
            ):
                raise RecordingError("mask_classes must map names to integers")
            extra = data.get("extra") or {}
            if not isinstance(extra, dict):
                raise RecordingError("extra must be an object")
            return cls(
                source=data.get("source", "unknown"),
                fps=data["fps"],
                cameras=tuple(cameras),
                mask_classes=mask_classes,
                finished=bool(data.get("finished", False)),
                extra=extra,
            )
        except KeyError as missing:
            raise RecordingError(f"{where}: missing field {missing}") from None
        except TypeError as exc:
            raise RecordingError(f"{where}: {exc}") from None
        except RecordingError as exc:
            raise RecordingError(f"{where}: {exc}") from None


def read_meta(folder: Path) -> RecordingMeta:
    """Read and validate ``folder/meta.json``."""
    path = folder / META_FILE
    if not folder.is_dir():
        raise RecordingError(f"{folder}: not a folder")
    if not path.is_file():
        raise RecordingError(f"{path}: missing; {folder} is not a drive-viz recording")
    if path.stat().st_size > MAX_META_BYTES:
        raise RecordingError(f"{path}: larger than {MAX_META_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordingError(f"{path}: not valid JSON ({exc})") from None
    return RecordingMeta.from_json(data, where=str(path))


def write_meta(folder: Path, meta: RecordingMeta) -> None:
    """Write ``folder/meta.json`` atomically (temp file, then rename)."""
    write_atomic(folder / META_FILE, json.dumps(meta.to_json(), indent=2))
