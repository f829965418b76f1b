"""The one recording reader: every caller (train, replay, evaluate, info) opens recordings here."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drive_viz.errors import FrameError, RecordingError
from drive_viz.recording.format import (
    LABEL_COLUMNS,
    TABLE_FILE,
    RecordingMeta,
    image_column,
    mask_column,
    read_meta,
)
from drive_viz.recording.images import decode_image, decode_mask

MAX_TABLE_BYTES = 1 << 29
#: 2 million rows is 27 hours at 20 fps; a table claiming more is refused before it is parsed.
MAX_TABLE_ROWS = 2_000_000


@dataclass(frozen=True)
class FrameRow:
    """One row of the table. ``t`` in seconds, ``steer`` in [-1, 1] (positive = right),
    ``throttle`` and ``brake`` in [0, 1], ``speed`` in m/s. Paths are absolute."""

    index: int
    frame: int
    t: float
    steer: float
    throttle: float
    brake: float
    speed: float
    images: dict[str, Path]
    masks: dict[str, Path]


class Recording:
    """A recording folder opened for reading.

    ``len(rec)`` is the number of rows; ``rec.image(i, camera)`` decodes row ``i``'s frame as
    RGB uint8 (H, W, 3). Rows are read once at open; images are decoded on demand.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta: RecordingMeta = read_meta(self.path)
        self.table: pd.DataFrame = _read_table(self.path / TABLE_FILE, self.meta)

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.meta.camera_names

    @property
    def fps(self) -> float:
        return float(self.meta.fps)

    @property
    def source(self) -> str:
        return self.meta.source

    def __len__(self) -> int:
        return len(self.table)

    def has_masks(self, camera: str) -> bool:
        column = mask_column(camera)
        return column in self.table.columns and bool(self.table[column].notna().any())

    def row(self, index: int) -> FrameRow:
        if not 0 <= index < len(self.table):
            raise IndexError(f"frame index {index} outside 0..{len(self.table) - 1}")
        values = self.table.iloc[index]
        images = {c: self._inside(values[image_column(c)], index) for c in self.cameras
                  if isinstance(values[image_column(c)], str)}
        masks = {c: self._inside(values[mask_column(c)], index) for c in self.cameras
                 if mask_column(c) in values and isinstance(values[mask_column(c)], str)}
        return FrameRow(
            index=index,
            frame=int(values["frame"]),
            t=float(values["t"]),
            steer=float(values["steer"]),
            throttle=float(values["throttle"]),
            brake=float(values["brake"]),
            speed=float(values["speed"]),
            images=images,
            masks=masks,
        )

    def image_path(self, index: int, camera: str | None = None) -> Path:
        camera = camera or self.cameras[0]
        self.meta.camera(camera)
        value = self.table[image_column(camera)].iat[index]
        if not isinstance(value, str):
            raise FrameError(f"{self.path / TABLE_FILE}: row {index} has no {camera} image")
        return self._inside(value, index)

    def image(self, index: int, camera: str | None = None) -> np.ndarray:
        """Row ``index``'s frame from ``camera`` (default: the first camera), RGB uint8 (H, W, 3).
        FrameError names the file when it is missing, corrupt or of the wrong size."""
        spec = self.meta.camera(camera or self.cameras[0])
        return decode_image(self.image_path(index, spec.name), (spec.width, spec.height))

    def mask(self, index: int, camera: str | None = None) -> np.ndarray | None:
        """Row ``index``'s class mask (uint8 (H, W), values in meta.mask_classes) or None."""
        spec = self.meta.camera(camera or self.cameras[0])
        column = mask_column(spec.name)
        if column not in self.table.columns:
            return None
        value = self.table[column].iat[index]
        if not isinstance(value, str):
            return None
        return decode_mask(self._inside(value, index), (spec.width, spec.height))

    def _inside(self, relative: str, index: int) -> Path:
        """Resolve a path from the table; refuse one that leaves the recording folder."""
        parts = Path(relative).parts
        if (Path(relative).is_absolute() or ".." in parts or "\\" in relative or not parts
                or "\0" in relative):
            raise FrameError(
                f"{self.path / TABLE_FILE}: row {index} path {relative!r} leaves the recording"
            )
        path = self.path / relative
        if path.is_symlink() and not path.resolve().is_relative_to(self.path.resolve()):
            raise FrameError(f"{path}: symlink points outside the recording")
        return path

    def __iter__(self) -> Iterator[FrameRow]:
        for index in range(len(self)):
            yield self.row(index)

    def steering(self) -> np.ndarray:
        """All rows' recorded steering, (N,) float64."""
        return self.table["steer"].to_numpy(dtype=np.float64)


def open_recording(path: str | Path) -> Recording:
    """Open a recording folder; RecordingError naming the file if it is not readable."""
    return Recording(path)


def _read_table(path: Path, meta: RecordingMeta) -> pd.DataFrame:
    if not path.is_file():
        raise RecordingError(f"{path}: missing")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise RecordingError(f"{path}: larger than {MAX_TABLE_BYTES} bytes")
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        # A writer killed mid-row leaves a partial last line: drop it, keep every whole row.
        raw = raw[: raw.rfind(b"\n") + 1]
    if not raw.strip():
        raise RecordingError(f"{path}: empty table (no header row)")
    if raw.count(b"\n") > MAX_TABLE_ROWS + 1:
        raise RecordingError(f"{path}: more than {MAX_TABLE_ROWS} rows; refusing to load it")
    try:
        table = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False,
                            na_values=[""], encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordingError(f"{path}: not a readable CSV table ({first_line})") from None
    required = list(LABEL_COLUMNS) + [image_column(c) for c in meta.camera_names]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RecordingError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in LABEL_COLUMNS:
        numeric = pd.to_numeric(table[column], errors="coerce")
        bad = table[column].notna() & numeric.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecordingError(
                f"{path}: column {column!r} is not numeric (row {row}: {table[column].iat[row]!r})"
            )
        table[column] = numeric.astype(np.float64)
    if table["frame"].isna().any() or not all(
        math.isfinite(v) and v == int(v) and abs(v) <= 2**53 for v in table["frame"]
    ):
        raise RecordingError(f"{path}: column 'frame' must hold whole numbers in every row")
    table["frame"] = table["frame"].astype(np.int64)
    for column in table.columns:
        if column.startswith(("image_", "mask_")):
            table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table.reset_index(drop=True)
