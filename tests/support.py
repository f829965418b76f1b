"""Helpers shared by several test files (imported as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np


def tree_digest(folder: Path) -> str:
    """Hash of every path, file content and mode under ``folder`` (symlinks by target)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
        digest.update(str(path.lstat().st_mode).encode())
    return digest.hexdigest()


def dave2_float64(model: Any, activation: str = "elu") -> Any:
    """The same DAVE-2 weights run by Keras in float64: an implementation independent of the
    attention engine's, and precise enough for finite differences."""
    import keras

    from drive_viz.model.dave2 import build_dave2

    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    try:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
        clone = build_dave2(activation=activation, seed=0)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    clone.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return clone
