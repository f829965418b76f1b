"""Per-frame analysis shared by replay and live: model, attention maps, statistics, display.

``FrameAnalyzer.analyse(inputs, steer_true, masks)`` runs ONE attention engine call on a batch
of network inputs and turns its output into everything a caller shows or stores: the
prediction, the raw maps, display heat (``RunningScale``, one per method, kept across calls so
frames are comparable), the first conv layer's activation grid (a ``LayerScale`` fitted on
the first batch and then held fixed) and the per-frame statistics columns. State carried
between calls (the running scales, the previous frame's maps for ``temporal_corr``) assumes
the batches arrive in drive order. Replay calls it with batches of ``batch_size`` frames,
live with one frame per simulation step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from drive_viz.attention import DEFAULT_METHODS
from drive_viz.errors import DriveVizError
from drive_viz.render.colormap import RunningScale

#: Prefix of the statistics columns of the first conv layer's activations (whatever its name).
ACTIVATION_COLUMNS = "first_conv"


def check_methods(methods: Sequence[str], layout: str, target: str) -> None:
    """Refuse unknown ``methods``, a ``layout`` method that is not one of them, or a
    ``target`` that ``parse_target`` cannot read, with one-line DriveVizErrors naming the
    option (whether a unit target exists in the model is checked when the engine is built)."""
    from drive_viz.attention import METHODS
    from drive_viz.attention.targets import parse_target

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise DriveVizError(f"--methods: unknown method(s) {unknown}; "
                            f"choose from {', '.join(METHODS)}")
    if layout not in methods:
        raise DriveVizError(f"--layout {layout!r} is not one of --methods {list(methods)}")
    parse_target(target)


@dataclass
class AnalysisBatch:
    """One ``analyse`` call's output for N frames.

    ``prediction`` (N,) float64 decoded steering; ``maps[method]`` (N, H, W) float32 raw maps
    over the model's input; ``heat[method]`` (N, H, W) float32 display heat in [0, 1];
    ``grids`` (N, h, w) float32 first conv layer's activation grid in [0, 1] (None without
    video); ``columns`` name -> (N,) arrays in table order: ``steer_true``, ``steer_pred``,
    ``abs_error``, ``throttle_pred`` (only when the contract names a throttle output),
    ``<method>_<statistic>``, ``first_conv_<summary>``; ``engine_ms`` the engine call and
    ``post_ms`` statistics, heat and grid, both per frame in milliseconds, and ``model_ms``
    their sum.
    """

    prediction: np.ndarray
    maps: dict[str, np.ndarray]
    heat: dict[str, np.ndarray]
    grids: np.ndarray | None
    columns: dict[str, np.ndarray]
    engine_ms: float
    post_ms: float

    @property
    def model_ms(self) -> float:
        return self.engine_ms + self.post_ms


class FrameAnalyzer:
    """The attention engine plus statistics and display scaling for a stream of frames.

    ``model``: a loaded steering model; ``contract``: its ``InputContract`` (None: the only
    output, linear); ``methods``: attention method names (``METHODS``); ``target``: what the
    maps explain (text form, see ``parse_target``); ``gradcam_layer``: conv layer for
    Grad-CAM (None: ``default_gradcam_layer``); ``with_video``: also tile the first conv
    layer's activation grid; ``batch_size``: pad smaller batches to this many frames so one
    traced shape serves the whole run (None: no padding).
    """

    def __init__(self, model: Any, methods: Sequence[str] = DEFAULT_METHODS,
                 target: str = "steer", *, with_video: bool = True,
                 batch_size: int | None = None, contract: Any = None,
                 gradcam_layer: str | None = None) -> None:
        from drive_viz.attention import AttentionEngine
        from drive_viz.attention.network import Network
        from drive_viz.attention.targets import parse_target

        self.methods = tuple(methods)
        self.with_video = with_video
        self.batch_size = batch_size
        network = Network(model, contract)
        if not network.conv_layers:
            raise DriveVizError(f"model {model.name!r} has no Conv2D layer: no activation grid")
        #: The first conv layer (by type, in graph order), whose activations are summarized.
        self.activation_layer = network.conv_layers[0]
        self.input_shape = (*network.input_hw, 3)
        self.engine = AttentionEngine(model, methods=self.methods, target=parse_target(target),
                                      gradcam_layer=gradcam_layer,
                                      activation_layers=(self.activation_layer,),
                                      contract=contract)
        self.scales = {m: RunningScale() for m in self.methods}
        self.layer_scale: Any = None
        self._previous_maps: dict[str, np.ndarray | None] = dict.fromkeys(self.methods)

    def warm_up(self, batch: int = 1) -> None:
        """Trace the engine for batches of ``batch`` frames (``batch_size`` when padding) now,
        so the first real frame does not pay for it; no running state changes."""
        self.engine(np.zeros((self.batch_size or batch, *self.input_shape), np.float32))

    def analyse(self, inputs: np.ndarray, steer_true: np.ndarray | Sequence[float],
                masks: Sequence[np.ndarray | None] | None = None) -> AnalysisBatch:
        """Analyse ``inputs`` (N, H, W, 3) float32 network inputs (``preprocess_batch``) of
        frames that follow the previous call's.

        ``steer_true`` (N,) recorded steering (NaN where unknown); ``masks``: N class masks
        (H, W) uint8 in the network's view, or None entries / None for frames without one.
        """
        from drive_viz.attention.grids import LayerScale, tile_activations
        from drive_viz.attention.stats import activation_summary, map_statistics

        tick = time.perf_counter()
        n = len(inputs)
        padded = inputs
        if self.batch_size is not None and n < self.batch_size:
            pad = np.zeros((self.batch_size - n, *self.input_shape), np.float32)
            padded = np.concatenate([inputs, pad])
        result = self.engine(padded)
        engine_done = time.perf_counter()
        prediction = np.asarray(result.prediction, np.float64).reshape(len(padded), -1)[:n, 0]
        true = np.asarray(steer_true, np.float64)
        columns: dict[str, np.ndarray] = {"steer_true": true, "steer_pred": prediction,
                                          "abs_error": np.abs(prediction - true)}
        if result.throttle is not None:
            columns["throttle_pred"] = np.asarray(result.throttle, np.float64)[:n]
        if masks is not None and all(mask is None for mask in masks):
            masks = None
        maps, heat = {}, {}
        for method in self.methods:
            raw = np.asarray(result.maps[method], np.float32)[:n]
            stats = map_statistics(raw, masks, self._previous_maps[method])
            self._previous_maps[method] = raw[-1].copy()
            for name, values in stats.items():
                columns[f"{method}_{name}"] = values
            maps[method] = raw
            heat[method] = self.scales[method].normalize(raw)
        acts = np.asarray(result.activations[self.activation_layer], np.float32)[:n]
        for name, values in activation_summary(acts).items():
            columns[f"{ACTIVATION_COLUMNS}_{name}"] = values
        grids = None
        if self.with_video:
            if self.layer_scale is None:
                self.layer_scale = LayerScale.fit(acts)
            grids = tile_activations(acts, self.layer_scale)
        done = time.perf_counter()
        return AnalysisBatch(prediction=prediction, maps=maps, heat=heat, grids=grids,
                             columns=columns, engine_ms=(engine_done - tick) * 1000 / n,
                             post_ms=(done - engine_done) * 1000 / n)
