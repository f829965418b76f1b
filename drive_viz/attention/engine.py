"""The attention engine: every requested map for a batch of network inputs, in fused passes.

``AttentionEngine(model, methods=...)`` traces its TensorFlow functions once (per input batch
shape) and reuses them on every call. The shared pass is ONE forward and (when a gradient
method is asked for) ONE backward pass that yields the prediction, the activations, saliency,
gradient, gradient x input, and Grad-CAM / Grad-CAM++ on the Grad-CAM layer and on any extra
``gradcam_layers`` (one backward pass reaches them all); VisualBackProp and CAM (GAP heads)
reuse its forward activations. Guided backprop, SmoothGrad, integrated gradients and occlusion
need passes of their own; Guided Grad-CAM(++) multiplies the guided pass's map with the shared
pass's Grad-CAM(++) map; LRP (``lrp``) runs one forward and one relevance pass per rule.
``attribute(model, inputs, method=...)`` is the one-method shortcut.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from drive_viz.attention import DEFAULT_METHODS
from drive_viz.attention import methods as m
from drive_viz.attention.catalog import METHODS
from drive_viz.attention.lrp import DEFAULT_EPSILON, LRP_RULES, check_lrp, lrp_maps
from drive_viz.attention.network import Network
from drive_viz.attention.targets import Target, TargetError, check_target, target_score
from drive_viz.errors import ModelError

#: Named baselines and fill values: RGB pixels put through the model's input contract
#: (``zeros`` is 0 in the network's input space). For DAVE-2 (YUV, scale 1): black is
#: (0, 128, 128), gray (128, 128, 128), zeros (0, 0, 0).
NAMED_FILLS = {"black": (0, 0, 0), "gray": (128, 128, 128), "zeros": None}
_OCCLUSION_CHUNK = 128
#: Frames per backward pass when SmoothGrad / integrated gradients batch their samples.
_GRADIENT_BATCH = 64


@dataclass
class AttentionResult:
    """One engine call's output for N frames.

    ``prediction`` (N,) float32 decoded steering; ``throttle`` (N,) float32 decoded throttle
    (None when the contract names no throttle output); ``maps`` method name -> (N, H, W)
    float32 raw map over the model's input (sign and scale in ``METHODS``); ``activations``
    layer name -> that layer's output, e.g. DAVE-2's conv1 (N, 31, 98, 24) float32,
    post-activation; ``gradcam_by_layer``: conv layer name -> its Grad-CAM map (N, H, W)
    float32 for the engine's ``gradcam_layers``.
    """

    prediction: np.ndarray
    throttle: np.ndarray | None = None
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    gradcam_by_layer: dict[str, np.ndarray] = field(default_factory=dict)


def gap_head(model: Any) -> tuple[str, Any]:
    """(conv layer under the GAP, output Dense layer) of a model whose head is
    GlobalAveragePooling2D then one linear Dense (Dropout allowed); ModelError otherwise."""
    import keras

    layers = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]
    pools = [i for i, lay in enumerate(layers)
             if isinstance(lay, keras.layers.GlobalAveragePooling2D)]
    head = [lay for lay in layers[pools[-1] + 1:] if not isinstance(lay, keras.layers.Dropout)] \
        if pools else []
    below = layers[:pools[-1]] if pools else []
    convs = [i for i, lay in enumerate(below) if isinstance(lay, keras.layers.Conv2D)]
    block_ok = bool(convs) and all(
        isinstance(lay, keras.layers.Activation | keras.layers.BatchNormalization
                   | keras.layers.Dropout) for lay in below[convs[-1] + 1:])
    if not (len(head) == 1 and isinstance(head[0], keras.layers.Dense)
            and keras.activations.serialize(head[0].activation) == "linear" and block_ok):
        raise ModelError(f"model {model.name!r}: cam needs a GAP head (Conv2D, "
                         "GlobalAveragePooling2D, then one linear Dense output, as "
                         "'drive-viz train --head gap' builds); use gradcam for this model")
    return below[convs[-1]].name, head[0]


def default_gradcam_layer(network: Network) -> str:
    """The deepest conv layer at least 5x5 (localizes in 2-D; DAVE-2: conv3, 5x22), else
    the deepest conv layer."""
    if not network.conv_layers:
        raise ModelError("the model has no Conv2D layer to compute Grad-CAM on")
    for name in reversed(network.conv_layers):
        if min(network.geometry[name].out_hw) >= 5:
            return name
    return network.conv_layers[-1]


class AttentionEngine:
    """Computes attention maps for batches of network inputs (N, H, W, 3) float32.

    ``contract``: the model's ``InputContract`` (which output is steering and throttle, how
    decoded, and the input space fills are expressed in; default: the only output, linear,
    DAVE-2's YUV 0..255). ``methods``: names from ``METHODS``. ``target``: ``"steer"``,
    ``"left"``, ``"maintain"``, ``"throttle"`` or a ``UnitTarget`` (see ``targets``).
    ``gradcam_layer``: conv layer for Grad-CAM(++) (default ``default_gradcam_layer``).
    ``activation_layers``: layers whose outputs to return.
    ``gradcam_layers``: conv layers whose Grad-CAM maps to return in ``gradcam_by_layer``,
    all from the one shared backward pass. ``cam`` needs a GAP head (``gap_head``) and the
    target ``"steer"`` or ``"left"``.
    SmoothGrad: ``smoothgrad_samples`` noisy copies, noise std ``smoothgrad_sigma`` x 255
    pixel levels (times the contract's scale), ``seed``. Integrated gradients: ``ig_steps``
    midpoint-rule steps from ``ig_baseline`` (a name in ``NAMED_FILLS``, a number, or an
    array broadcastable to the inputs).
    Occlusion: ``occlusion_patch`` x ``occlusion_patch`` squares every ``occlusion_stride``
    pixels, filled with ``occlusion_fill`` (name, number or a triple in the input space).
    LRP: ``lrp_eps`` is the epsilon rule's stabilizer (in each layer's pre-activation units).
    ``trace_counts`` counts how often each pass was traced.
    """

    def __init__(self, model: Any, methods: Sequence[str] = DEFAULT_METHODS,
                 target: Target = "steer", gradcam_layer: str | None = None,
                 activation_layers: Sequence[str] = (), *,
                 gradcam_layers: Sequence[str] = (), smoothgrad_samples: int = 16,
                 smoothgrad_sigma: float = 0.15, seed: int = 0, ig_steps: int = 32,
                 ig_baseline: str | float | np.ndarray = "black", occlusion_patch: int = 10,
                 occlusion_stride: int = 5,
                 occlusion_fill: str | float | Sequence[float] = "gray",
                 lrp_eps: float = DEFAULT_EPSILON, contract: Any = None) -> None:
        unknown = [name for name in methods if name not in METHODS]
        if unknown:
            raise ValueError(f"unknown attention method(s) {unknown}; "
                             f"known: {', '.join(METHODS)}")
        self.network = Network(model, contract)
        self.contract = self.network.contract
        self.methods = tuple(dict.fromkeys(methods))
        check_target(target, self.network.output_shapes)
        if target == "throttle" and self.network.throttle_layer is None:
            raise TargetError("target 'throttle': the model's contract names no throttle "
                              "output")
        self.target = target
        missing = [name for name in activation_layers if name not in self.network.layer_names]
        if missing:
            raise ModelError(f"layer(s) {missing} not in the model (layers: "
                             f"{', '.join(self.network.layer_names)})")
        self.activation_layers = tuple(dict.fromkeys(activation_layers))
        #: Grad-CAM(++) maps the shared pass computes: the requested ones and the factors of
        #: the requested Guided Grad-CAM(++).
        self._cam_maps = tuple(dict.fromkeys(
            [name for name in self.methods if name in m.CAM_METHODS]
            + [m.GUIDED_CAM_METHODS[name] for name in self.methods
               if name in m.GUIDED_CAM_METHODS]))
        self._wants_guided = "guided_backprop" in self.methods or any(
            name in m.GUIDED_CAM_METHODS for name in self.methods)
        for name in (gradcam_layer, *gradcam_layers):
            if name is not None and name not in self.network.conv_layers:
                raise ModelError(f"Grad-CAM layer {name!r} is not a Conv2D layer of the model "
                                 f"(conv layers: {', '.join(self.network.conv_layers)})")
        if gradcam_layer is None and self._cam_maps:
            gradcam_layer = default_gradcam_layer(self.network)
        self.gradcam_layer = gradcam_layer
        self.gradcam_layers = tuple(dict.fromkeys(gradcam_layers))
        self._cam_head: tuple[str, Any] | None = None
        if "cam" in self.methods:
            if target not in ("steer", "left"):
                raise TargetError(f"cam explains the steering output: target must be 'steer' "
                                  f"or 'left', not {str(target)!r}")
            self._cam_head = gap_head(model)
            if (self._cam_head[1].name != self.network.steering_layer
                    or self.contract.steering.bins is not None):
                raise ModelError(f"cam needs the GAP head's Dense {self._cam_head[1].name!r} "
                                 "to be the linear steering output")
        self._vbp_layers: list[str] = []
        self._vbp_backmaps: list[tuple[np.ndarray, np.ndarray]] = []
        if "visualbackprop" in self.methods:
            if not self.network.conv_layers:
                raise ModelError("the model has no Conv2D layer for VisualBackProp")
            self._vbp_layers = self.network.conv_chain()
            below = [None, *self._vbp_layers[:-1]]
            self._vbp_backmaps = [self.network.backmaps(name, shallower)
                                  for name, shallower in zip(self._vbp_layers, below,
                                                             strict=True)]
        if smoothgrad_samples < 1 or ig_steps < 1:
            raise ValueError("smoothgrad_samples and ig_steps must be >= 1")
        if not lrp_eps >= 0:
            raise ValueError(f"lrp_eps must be >= 0, not {lrp_eps}")
        self.lrp_eps = float(lrp_eps)
        if any(name in LRP_RULES for name in self.methods):
            check_lrp(self.network, target)  # no LRP rule or a bins head: fails here
        self.smoothgrad_samples = int(smoothgrad_samples)
        self.smoothgrad_sigma = float(smoothgrad_sigma)
        self.seed = int(seed)
        self.ig_steps = int(ig_steps)
        self._fill_array(ig_baseline, "ig_baseline")  # a bad name fails here, not mid-replay
        self.ig_baseline = ig_baseline
        self._occlusion_masks = m.occlusion_patches(self.network.input_hw, occlusion_patch,
                                                    occlusion_stride)
        self._occlusion_fill = self._fill_array(occlusion_fill, "occlusion_fill")
        self.trace_counts: dict[str, int] = {}
        self._shared = tf.function(self._shared_pass)
        self._guided = tf.function(self._guided_pass)
        self._smoothgrad = tf.function(self._smoothgrad_pass)
        self._integrated = tf.function(self._integrated_gradients_pass)
        self._occluded_scores = tf.function(self._occlusion_pass)
        self._lrp = tf.function(self._lrp_pass)

    def __call__(self, inputs: np.ndarray,
                 baseline: str | float | np.ndarray | None = None) -> AttentionResult:
        """All requested maps for ``inputs`` (N, H, W, 3) float32 network inputs.

        ``baseline`` overrides ``ig_baseline`` for this call.
        """
        x = self._check_inputs(inputs)
        shared = {key: value.numpy() for key, value in self._shared(x).items()}
        result = AttentionResult(prediction=shared.pop("prediction"),
                                 throttle=shared.pop("throttle", None))
        result.activations = {name: shared.pop(f"layer:{name}")
                              for name in self.activation_layers}
        result.gradcam_by_layer = {name: shared.pop(f"gradcam:{name}")
                                   for name in self.gradcam_layers}
        result.maps.update(shared)
        if self._wants_guided:
            result.maps["guided_backprop"] = self._guided(x).numpy()
            for name, cam_name in m.GUIDED_CAM_METHODS.items():
                if name in self.methods:
                    result.maps[name] = m.guided_gradcam(result.maps["guided_backprop"],
                                                         result.maps[cam_name])
        if "smoothgrad" in self.methods:
            result.maps["smoothgrad"] = self._smoothgrad(x).numpy()
        if "integrated_gradients" in self.methods:
            spec = self.ig_baseline if baseline is None else baseline
            try:
                reference = np.broadcast_to(self._fill_array(spec, "baseline"), x.shape)
            except ValueError:
                raise ValueError(f"baseline of shape {np.shape(spec)} does not broadcast to "
                                 f"the inputs {tuple(x.shape)}") from None
            result.maps["integrated_gradients"] = self._integrated(
                x, tf.constant(reference, tf.float32)).numpy()
        if "occlusion" in self.methods:
            result.maps["occlusion"] = self._occlusion(x)
        if any(name in LRP_RULES for name in self.methods):
            result.maps.update({name: value.numpy() for name, value in self._lrp(x).items()})
        result.maps = {name: result.maps[name] for name in self.methods}
        return result

    def _check_inputs(self, inputs: np.ndarray) -> tf.Tensor:
        array = np.asarray(inputs, dtype=np.float32)
        expected = (*self.network.input_hw, 3)
        if array.ndim != 4 or array.shape[1:] != expected or array.shape[0] == 0:
            raise ModelError(f"attention inputs have shape {array.shape}; the model takes "
                             f"(N, {', '.join(map(str, expected))}) with N >= 1")
        return tf.constant(array)

    def _fill_array(self, spec: str | float | Sequence[float] | np.ndarray,
                    what: str) -> np.ndarray:
        """A named fill (``NAMED_FILLS``: an RGB pixel through the contract's colour, scale
        and offset), a number or a triple in the input space (or a full array) as float32."""
        if isinstance(spec, str):
            if spec not in NAMED_FILLS:
                raise ValueError(f"{what} must be one of {tuple(NAMED_FILLS)}, a number or an "
                                 f"array, not {spec!r}")
            if NAMED_FILLS[spec] is None:
                return np.zeros(3, np.float32)
            from drive_viz.model.preprocess import convert_pixels

            pixel = np.asarray(NAMED_FILLS[spec], np.uint8).reshape(1, 1, 3)
            return convert_pixels(pixel, self.contract).reshape(3)
        return np.asarray(spec, np.float32)

    def _count_trace(self, name: str) -> None:
        self.trace_counts[name] = self.trace_counts.get(name, 0) + 1

    def _input_gradient(self, x: tf.Tensor, guided: bool = False) -> tf.Tensor:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            heads, layers = self.network.forward(x, guided=guided)
            score = target_score(self.target, heads, layers)
        return tape.gradient(score, x)

    def _shared_pass(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        self._count_trace("shared")
        wants_input_grad = any(name in m.INPUT_GRADIENT_METHODS for name in self.methods)
        cam_layers = list(dict.fromkeys(
            ([self.gradcam_layer] if self._cam_maps else []) + list(self.gradcam_layers)))
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            heads, layers = self.network.forward(x)
            score = target_score(self.target, heads, layers)
        sources = ([x] if wants_input_grad else []) + [layers[name] for name in cam_layers]
        # A layer above a unit target's layer does not affect the score: zero gradient.
        grads = tape.gradient(score, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
                              ) if sources else []
        layer_grads = dict(zip(cam_layers, grads[len(grads) - len(cam_layers):], strict=True))
        out = {"prediction": heads["steering"]}
        if "throttle" in heads:
            out["throttle"] = heads["throttle"]
        out.update({f"layer:{name}": layers[name] for name in self.activation_layers})
        for name in self.gradcam_layers:
            out[f"gradcam:{name}"] = m.upsample_to_input(
                m.gradcam(layers[name], layer_grads[name]), self.network.geometry[name],
                self.network.input_hw)
        if wants_input_grad:
            input_grad = grads[0]
            if "saliency" in self.methods:
                out["saliency"] = m.saliency(input_grad)
            if "gradient" in self.methods:
                out["gradient"] = m.gradient(input_grad)
            if "gradient_x_input" in self.methods:
                out["gradient_x_input"] = m.gradient_x_input(input_grad, x)
        if self._cam_maps:
            activations = layers[self.gradcam_layer]
            cam_grad = layer_grads[self.gradcam_layer]
            geometry = self.network.geometry[self.gradcam_layer]
            if "gradcam" in self._cam_maps:
                out["gradcam"] = m.upsample_to_input(
                    m.gradcam(activations, cam_grad), geometry, self.network.input_hw)
            if "gradcam_plus_plus" in self._cam_maps:
                out["gradcam_plus_plus"] = m.upsample_to_input(
                    m.gradcam_plus_plus(activations, cam_grad, score), geometry,
                    self.network.input_hw)
        if self._cam_head is not None:
            conv_name, dense = self._cam_head
            weights = dense.kernel.value[:, 0]
            if self.target == "left":
                weights = -weights
            out["cam"] = m.upsample_to_input(
                m.class_activation_map(layers[conv_name], weights),
                self.network.geometry[conv_name], self.network.input_hw)
        if "visualbackprop" in self.methods:
            out["visualbackprop"] = m.visualbackprop(
                [layers[name] for name in self._vbp_layers], self._vbp_backmaps)
        return out

    def _guided_pass(self, x: tf.Tensor) -> tf.Tensor:
        self._count_trace("guided_backprop")
        return m.gradient(self._input_gradient(x, guided=True))

    def _smoothgrad_pass(self, x: tf.Tensor) -> tf.Tensor:
        self._count_trace("smoothgrad")
        count = x.shape[0]
        weights, chunks, per_chunk = _chunked(self.smoothgrad_samples, count)
        total = tf.zeros(tf.shape(x)[:3], tf.float32)
        for chunk in tf.range(chunks):
            noise = tf.random.stateless_normal((per_chunk * count, *x.shape[1:]),
                                               seed=tf.stack([self.seed, chunk]),
                                               stddev=self.smoothgrad_sigma * 255.0
                                               * abs(self.contract.scale))
            noisy = tf.tile(x, (per_chunk, 1, 1, 1)) + noise
            maps = tf.reshape(m.saliency(self._input_gradient(noisy)),
                              (per_chunk, count, *x.shape[1:3]))
            total += tf.tensordot(tf.constant(weights)[chunk], maps, axes=1)
        return total / self.smoothgrad_samples

    def _integrated_gradients_pass(self, x: tf.Tensor, baseline: tf.Tensor) -> tf.Tensor:
        self._count_trace("integrated_gradients")
        count = x.shape[0]
        weights, chunks, per_chunk = _chunked(self.ig_steps, count)
        alphas = tf.constant((np.arange(chunks * per_chunk, dtype=np.float32) + 0.5)
                             .reshape(chunks, per_chunk) / self.ig_steps)
        total = tf.zeros_like(x)
        for chunk in tf.range(chunks):
            alpha = tf.reshape(alphas[chunk], (per_chunk, 1, 1, 1, 1))
            points = tf.reshape(baseline[None] + alpha * (x - baseline)[None],
                                (per_chunk * count, *x.shape[1:]))
            grads = tf.reshape(self._input_gradient(points), (per_chunk, count, *x.shape[1:]))
            total += tf.tensordot(tf.constant(weights)[chunk], grads, axes=1)
        return tf.reduce_sum((x - baseline) * total, axis=-1) / self.ig_steps

    def _lrp_pass(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        self._count_trace("lrp")
        return lrp_maps(self.network, x, self.target,
                        [name for name in self.methods if name in LRP_RULES], eps=self.lrp_eps)

    def _occlusion_pass(self, frame: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        self._count_trace("occlusion")
        occluded = frame * (1.0 - masks) + tf.constant(self._occlusion_fill) * masks
        heads, layers = self.network.forward(occluded)
        return target_score(self.target, heads, layers)

    def _occlusion(self, x: tf.Tensor) -> np.ndarray:
        masks = self._occlusion_masks
        count = len(masks)
        # One or more all-zero masks pad the last chunk: the first gives the unoccluded score.
        padded = np.zeros((-(-(count + 1) // _OCCLUSION_CHUNK) * _OCCLUSION_CHUNK,
                           *masks.shape[1:], 1), np.float32)
        padded[:count, ..., 0] = masks
        coverage = masks.sum(axis=0)
        maps = np.empty(x.shape[:3], np.float32)
        for index in range(x.shape[0]):
            frame = x[index:index + 1]
            scores = np.concatenate([
                self._occluded_scores(frame, tf.constant(padded[start:start + _OCCLUSION_CHUNK]))
                .numpy() for start in range(0, len(padded), _OCCLUSION_CHUNK)])
            drops = scores[count] - scores[:count]
            maps[index] = np.tensordot(drops, masks, axes=1) / coverage
        return maps


def _chunked(samples: int, count: int) -> tuple[np.ndarray, int, int]:
    """Split ``samples`` evaluations of a batch of ``count`` frames into chunks of about
    ``_GRADIENT_BATCH`` frames: weights (chunks, per_chunk) float32, 1 for real samples and 0
    for the padding of the last chunk; the number of chunks; samples per chunk."""
    per_chunk = max(1, min(samples, _GRADIENT_BATCH // count))
    chunks = -(-samples // per_chunk)
    weights = (np.arange(chunks * per_chunk) < samples).astype(np.float32)
    return weights.reshape(chunks, per_chunk), chunks, per_chunk


_ENGINE_CACHE: OrderedDict[tuple, tuple[Any, AttentionEngine]] = OrderedDict()
_ENGINE_CACHE_SIZE = 8


def engine_for(model: Any, method: str, target: Target = "steer", *,
               layer: str | None = None, steps: int = 32, samples: int = 16,
               sigma: float = 0.15, seed: int = 0, patch: int = 10, stride: int = 5,
               fill: str | float | Sequence[float] = "gray",
               contract: Any = None) -> AttentionEngine:
    """The cached one-method engine ``attribute`` uses (the 8 most recent are kept)."""
    key = (id(model), method, target, layer, steps, samples, sigma, seed, patch, stride,
           fill if isinstance(fill, str | int | float) else tuple(fill), contract)
    cached = _ENGINE_CACHE.get(key)
    if cached is None or cached[0] is not model:
        engine = AttentionEngine(model, (method,), target, gradcam_layer=layer,
                                 smoothgrad_samples=samples, smoothgrad_sigma=sigma, seed=seed,
                                 ig_steps=steps, occlusion_patch=patch,
                                 occlusion_stride=stride, occlusion_fill=fill,
                                 contract=contract)
        cached = (model, engine)
    _ENGINE_CACHE[key] = cached
    _ENGINE_CACHE.move_to_end(key)
    while len(_ENGINE_CACHE) > _ENGINE_CACHE_SIZE:
        _ENGINE_CACHE.popitem(last=False)
    return cached[1]


def attribute(model: Any, inputs: np.ndarray, method: str, target: Target = "steer", *,
              layer: str | None = None, steps: int = 32,
              baseline: str | float | np.ndarray = "black", samples: int = 16,
              sigma: float = 0.15, seed: int = 0, patch: int = 10, stride: int = 5,
              fill: str | float | Sequence[float] = "gray",
              contract: Any = None) -> np.ndarray:
    """One method's raw map (N, H, W) float32 for ``inputs`` (N, H, W, 3) network inputs
    (``contract``: as in ``AttentionEngine``).

    ``layer``: Grad-CAM layer; ``steps``/``baseline``: integrated gradients; ``samples``/
    ``sigma``/``seed``: SmoothGrad; ``patch``/``stride``/``fill``: occlusion. Engines are
    cached per (model, method, target, options) by ``engine_for``, so repeated calls do not
    retrace.
    """
    engine = engine_for(model, method, target, layer=layer, steps=steps, samples=samples,
                        sigma=sigma, seed=seed, patch=patch, stride=stride, fill=fill,
                        contract=contract)
    return engine(inputs, baseline=baseline).maps[method]
