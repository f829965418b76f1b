"""The one recording writer: synthetic world, CARLA recorder, importers and live all append here.

Crash safety: ``meta.json`` is written first (``finished: false``); each frame's image files
are written through a temp name and renamed, and only then is its table row appended and
flushed. A process killed at any moment leaves a readable recording of every frame whose row
was written; the reader drops a partial last line. ``close()`` marks the recording finished.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
from pathlib import Path
from types import TracebackType

import numpy as np

from drive_viz.atomic import write_atomic
from drive_viz.errors import DriveVizError, RecordingError
from drive_viz.recording.format import (
    LABEL_COLUMNS,
    META_FILE,
    TABLE_FILE,
    RecordingMeta,
    image_column,
    mask_column,
    write_meta,
)
from drive_viz.recording.images import encode_jpeg, encode_mask_png


class RecordingWriter:
    """Append frames to a new recording folder.

    >>> with RecordingWriter(out, meta) as writer:
    ...     writer.append(steer=0.1, throttle=0.5, images={"center": rgb})

    ``images`` maps camera name to RGB uint8 (H, W, 3) arrays or to already-encoded JPEG
    bytes (importers copy JPEGs without re-encoding). ``masks`` maps camera name to uint8
    (H, W) class labels. ``extra_columns`` names further table columns (after the standard
    ones) whose text each ``append`` gives in ``extra``. ``overwrite=True`` replaces an
    existing recording (only a folder that holds a ``meta.json`` is ever deleted).
    """

    def __init__(self, path: str | Path, meta: RecordingMeta, *, overwrite: bool = False,
                 with_masks: bool = False, extra_columns: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.meta = dataclasses.replace(meta, finished=False)
        self._prepare_folder(overwrite)
        self.with_masks = with_masks
        self.columns = list(LABEL_COLUMNS) + [image_column(c) for c in meta.camera_names]
        if with_masks:
            self.columns += [mask_column(c) for c in meta.camera_names]
        clash = set(extra_columns) & set(self.columns)
        if clash:
            raise ValueError(f"extra column(s) {sorted(clash)} are standard columns")
        self.extra_columns = tuple(extra_columns)
        self.columns += list(self.extra_columns)
        # meta.json first: a folder killed at any later point is still recognisably a
        # recording, so a rerun with --overwrite may replace it.
        write_meta(self.path, self.meta)
        for camera in meta.camera_names:
            (self.path / "images" / camera).mkdir(parents=True, exist_ok=True)
            if with_masks:
                (self.path / "masks" / camera).mkdir(parents=True, exist_ok=True)
        self._table = open(self.path / TABLE_FILE, "w", encoding="utf-8", newline="")
        self._write_line(self.columns)
        self.frames_written = 0

    def _prepare_folder(self, overwrite: bool) -> None:
        if self.path.exists():
            if not self.path.is_dir():
                raise RecordingError(f"{self.path}: exists and is not a folder")
            if any(self.path.iterdir()):
                if not overwrite:
                    raise RecordingError(f"{self.path}: already exists (pass --overwrite)")
                if not (self.path / META_FILE).is_file():
                    raise RecordingError(
                        f"{self.path}: not empty and not a recording; refusing to overwrite it"
                    )
                _remove_recording(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot create ({exc.strerror})") from None

    def append(self, *, steer: float, throttle: float = 0.0, brake: float = 0.0,
               speed: float = 0.0, t: float | None = None, frame: int | None = None,
               images: dict[str, np.ndarray | bytes],
               masks: dict[str, np.ndarray] | None = None,
               extra: dict[str, str] | None = None) -> int:
        """Write one frame; return its frame number. ``t`` defaults to frame / fps seconds;
        ``extra`` holds the text of the ``extra_columns`` (missing ones stay empty)."""
        frame = self.frames_written if frame is None else int(frame)
        t = frame / self.meta.fps if t is None else float(t)
        missing = set(self.meta.camera_names) - set(images)
        if missing:
            raise ValueError(f"frame {frame}: no image for camera(s) {sorted(missing)}")
        row: dict[str, object] = {"frame": frame, "t": f"{t:.6f}", "steer": f"{steer:.6f}",
                                  "throttle": f"{throttle:.6f}", "brake": f"{brake:.6f}",
                                  "speed": f"{speed:.4f}"}
        row.update({name: (extra or {}).get(name, "") for name in self.extra_columns})
        try:
            for camera in self.meta.camera_names:
                image = images[camera]
                data = image if isinstance(image, bytes) else encode_jpeg(image)
                relative = f"images/{camera}/{frame:06d}.jpg"
                write_atomic(self.path / relative, data)
                row[image_column(camera)] = relative
                if self.with_masks:
                    mask = (masks or {}).get(camera)
                    if mask is None:
                        row[mask_column(camera)] = ""
                        continue
                    relative = f"masks/{camera}/{frame:06d}.png"
                    write_atomic(self.path / relative, encode_mask_png(mask))
                    row[mask_column(camera)] = relative
            self._write_line([row[c] for c in self.columns])
        except OSError as exc:
            raise DriveVizError(
                f"{self.path}: cannot write frame {frame} ({exc.strerror})") from None
        self.frames_written += 1
        return frame

    def _write_line(self, values: list[object]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._table.write(buffer.getvalue())
        self._table.flush()

    def close(self) -> None:
        """Flush the table to disk and mark the recording finished."""
        if self._table.closed:
            return
        self._table.flush()
        os.fsync(self._table.fileno())
        self._table.close()
        self.meta = dataclasses.replace(self.meta, finished=True)
        write_meta(self.path, self.meta)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._table.close()


def _remove_recording(folder: Path) -> None:
    """Delete a recording folder with ``meta.json`` last, so that a deletion killed half-way
    leaves a folder that is still recognisably a recording (and may be overwritten again)."""
    for child in folder.iterdir():
        if child.name == META_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    shutil.rmtree(folder)
