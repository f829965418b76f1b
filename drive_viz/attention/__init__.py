"""Attention maps for steering networks: one engine computes every method in fused passes.

``AttentionEngine`` (batched, traced once) and ``attribute`` (one method) are the API;
``METHODS`` lists the method names with their sign and scale. Names are imported on first
use, so ``drive_viz.attention.<submodule>`` does not pull in TensorFlow by itself.
"""

from __future__ import annotations

import importlib
from typing import Any

#: What replay, live and the engine compute when no methods are named.
DEFAULT_METHODS = ("saliency", "gradcam", "visualbackprop")

_EXPORTS = {
    "AttentionEngine": "engine", "AttentionResult": "engine", "attribute": "engine",
    "engine_for": "engine",
    "NAMED_FILLS": "engine", "default_gradcam_layer": "engine",
    "METHODS": "catalog", "Method": "catalog",
    "OUTPUT_TARGETS": "targets", "UnitTarget": "targets", "parse_target": "targets",
    "TargetError": "targets", "gap_head": "engine",
}
__all__ = sorted([*_EXPORTS, "DEFAULT_METHODS"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drive_viz.attention' has no attribute {name!r}")
    return getattr(importlib.import_module(f"drive_viz.attention.{_EXPORTS[name]}"), name)
