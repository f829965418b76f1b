"""The one way drive-viz writes a file: to a hidden temp name beside it, then a rename.

A reader (or a crash) never sees half a file: the final name appears only when the content is
complete. Every command's outputs go through here (run folders through ``RunFolder``, which
uses the same temp names).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.errors import DriveVizError


def partial_path(path: Path) -> Path:
    """Where ``path`` is written while incomplete: ``.NAME.partial`` in the same folder."""
    return path.with_name(f".{path.name}.partial")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield the temp path to write ``path``'s content to; rename it to ``path`` when the
    block ends without an exception, delete it otherwise. OSError -> one-line DriveVizError."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise DriveVizError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def json_ready(value: Any) -> Any:
    """``value`` with NumPy scalars as Python numbers, tuples as lists and NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (NaN -> null) atomically."""
    write_atomic(path, json.dumps(json_ready(data), indent=2, allow_nan=False))
