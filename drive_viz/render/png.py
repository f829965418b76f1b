"""Writing pictures (features, inspect, evaluation plots) as PNG files, atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from drive_viz.atomic import write_atomic
from drive_viz.errors import DriveVizError, OptionError


def png_output(text: str) -> Path:
    """The ``--out`` path of a command that writes one PNG, checked before any work is done."""
    out = Path(text)
    if out.suffix.lower() != ".png":
        raise OptionError(f"{out}: out must be a .png file", "out")
    if not out.parent.is_dir():
        raise DriveVizError(f"{out.parent}: output folder does not exist")
    return out


def png_bytes(rgb: np.ndarray, name: str = "picture") -> bytes:
    """RGB uint8 (H, W, 3) encoded as PNG; DriveVizError naming ``name`` if it cannot be."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DriveVizError(f"{name}: PNG encoding failed")
    return data.tobytes()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 (H, W, 3) as a PNG atomically; DriveVizError if it cannot."""
    data = png_bytes(rgb, str(path))
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise DriveVizError(f"{path}: cannot write ({exc.strerror})") from None
