"""Feature visualization: the input that most excites a conv filter or a dense unit.

Activation maximization (Erhan et al. 2009) with the regularizers of Yosinski et al. 2015,
in the network's input space ((H, W, 3) float32; DAVE-2: YUV in [0, 255]):

1. start from seeded noise: mid-grey 127.5 plus Gaussian noise of standard deviation
   ``noise`` (YUV units);
2. each step, shift the images by a random ``(dy, dx)`` of at most ``jitter`` pixels
   (``np.roll``), take the gradient of the unit's score (a filter's activation averaged over
   its feature map, or a dense unit's value; post-activation) and shift it back;
3. ascend: ``x += step_size * g / mean(|g|)`` (the gradient normalized per image, so
   ``step_size`` is in YUV units per pixel);
4. L2 decay towards grey: ``x = 127.5 + (1 - decay) * (x - 127.5)``; clip to [0, 255];
5. every ``blur_every`` steps a Gaussian blur of ``blur_sigma`` pixels.

All requested units are optimized together as one batch (image i maximizes unit i). The
gradient comes from ``keras.Model(model.input, layer.output)`` traced once in a
``tf.function``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from drive_viz.errors import DriveVizError, ModelError
from drive_viz.model.contract import InputContract
from drive_viz.model.preprocess import input_to_rgb
from drive_viz.render.png import png_output, write_png

GREY = 127.5
#: Rendering of the grid PNG: tiles are zoomed, labelled above, separated by GAP pixels.
LABEL_HEIGHT = 18
GAP = 4
BACKGROUND = (24, 24, 24)


@dataclass(frozen=True)
class FeatureImages:
    """Result of :func:`maximize_activation` for ``units`` of ``layer``.

    ``inputs``: (F, H, W, 3) float32 network inputs (the model's input size and space);
    ``images``: the same as RGB uint8; ``start_score`` and ``final_score``: (F,) each unit's
    score on its starting noise and on its optimized image.
    """

    layer: str
    units: tuple[int, ...]
    inputs: np.ndarray
    images: np.ndarray
    start_score: np.ndarray
    final_score: np.ndarray


class LayerProbe:
    """One conv or dense layer of a steering model, traced once.

    ``scores(inputs)`` -> (N, c) float32: every unit's score, from the layer's block output
    as the attention engine sees it (post-activation; conv filters averaged over the
    feature map, or taken at feature-map cell ``position`` (row, col)). ``gradient(inputs,
    units)`` -> (N, H, W, 3): the gradient of unit ``units[i]``'s score on image i with
    respect to image i.
    """

    def __init__(self, model: Any, layer: str, position: tuple[int, int] | None = None,
                 contract: InputContract | None = None) -> None:
        import keras
        import tensorflow as tf

        from drive_viz.attention.network import Network

        names = [lay.name for lay in model.layers
                 if isinstance(lay, (keras.layers.Conv2D, keras.layers.Dense))]
        try:
            found = model.get_layer(layer)
        except ValueError:
            raise ModelError(f"model has no layer {layer!r}; conv and dense layers: "
                             f"{', '.join(names)}") from None
        if layer not in names:
            raise ModelError(f"layer {layer!r} ({type(found).__name__}) has no filters or "
                             f"units to visualize; choose one of {', '.join(names)}")
        network = Network(model, contract)
        shape = network.output_shapes[layer]
        self.layer = layer
        self.units = int(shape[-1])
        self.position = position
        if position is not None and not (len(shape) == 3 and 0 <= position[0] < shape[0]
                                         and 0 <= position[1] < shape[1]):
            raise ModelError(f"layer {layer!r} (output {shape}) has no feature-map cell "
                             f"{position}")
        def unit_scores(x: Any) -> Any:
            acts = network.forward(x)[1][layer]
            if position is not None:
                return acts[:, position[0], position[1], :]
            if len(acts.shape) == 4:
                acts = tf.reduce_mean(acts, axis=(1, 2))
            return acts

        @tf.function(reduce_retracing=True)
        def scores(x: Any) -> Any:
            return unit_scores(x)

        @tf.function(reduce_retracing=True)
        def gradient(x: Any, onehot: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                score = tf.reduce_sum(unit_scores(x) * onehot)
            return tape.gradient(score, x)

        self._scores = scores
        self._gradient = gradient

    def check_units(self, units: tuple[int, ...]) -> None:
        bad = [u for u in units if not 0 <= u < self.units]
        if bad:
            raise ModelError(f"layer {self.layer!r} has {self.units} units (0..{self.units - 1});"
                             f" {bad[0]} is out of range")

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        return self._scores(np.asarray(inputs, np.float32)).numpy()

    def gradient(self, inputs: np.ndarray, units: tuple[int, ...]) -> np.ndarray:
        onehot = np.eye(self.units, dtype=np.float32)[list(units)]
        return self._gradient(np.asarray(inputs, np.float32), onehot).numpy()


def maximize_activation(model: Any, layer: str, units: tuple[int, ...] | None = None, *,
                        steps: int = 128, seed: int = 0, step_size: float = 3.0,
                        noise: float = 8.0, decay: float = 0.002, jitter: int = 2,
                        blur_every: int = 8, blur_sigma: float = 0.5,
                        probe: LayerProbe | None = None,
                        contract: InputContract | None = None) -> FeatureImages:
    """The inputs that maximize ``units`` (default: all) of ``layer`` (see module doc).

    The images live in the model's input space (``contract``: its colour, scale and offset;
    None: DAVE-2's, YUV 0..255, at the model's input size): ``noise``, ``step_size`` and
    the grey start are in pixel levels 0..255 and mapped through scale and offset."""
    probe = probe or LayerProbe(model, layer)
    units = tuple(range(probe.units)) if units is None else tuple(int(u) for u in units)
    if not units:
        raise ModelError("no filters or units to visualize")
    probe.check_units(units)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if contract is None:
        contract = InputContract(input_size=tuple(int(d) for d in model.inputs[0].shape[1:3]))
    scale, offset = contract.scale, contract.offset
    low, high = sorted((offset, 255.0 * scale + offset))
    grey = GREY * scale + offset
    rng = np.random.default_rng(seed)
    x = (grey + noise * abs(scale) * rng.standard_normal((len(units), *contract.input_shape))
         ).astype(np.float32)
    x = np.clip(x, low, high)
    rows = np.arange(len(units))
    start_score = probe.scores(x)[rows, list(units)]
    for step in range(1, steps + 1):
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        shifted = np.roll(x, (dy, dx), axis=(1, 2))
        grad = np.roll(probe.gradient(shifted, units), (-dy, -dx), axis=(1, 2))
        grad /= np.abs(grad).mean(axis=(1, 2, 3), keepdims=True) + 1e-12
        x = grey + (1.0 - decay) * (x + step_size * abs(scale) * grad - grey)
        np.clip(x, low, high, out=x)
        if blur_every and step % blur_every == 0:
            for i in range(len(x)):
                x[i] = cv2.GaussianBlur(x[i], (0, 0), blur_sigma)
    final_score = probe.scores(x)[rows, list(units)]
    images = np.stack([input_to_rgb(image, contract) for image in x])
    return FeatureImages(layer, units, x, images, start_score, final_score)


def feature_grid(features: FeatureImages, cols: int = 4, zoom: int = 2) -> np.ndarray:
    """RGB uint8 grid of ``features.images``: tile i at row i // cols, column i % cols; each
    tile is the image zoomed ``zoom`` times with a LABEL_HEIGHT label ("conv1 #3") above it,
    tiles GAP pixels apart with a GAP border, on BACKGROUND."""
    count = len(features.units)
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    tile_h = features.images.shape[1] * zoom + LABEL_HEIGHT
    tile_w = features.images.shape[2] * zoom
    canvas = np.empty((rows * (tile_h + GAP) + GAP, cols * (tile_w + GAP) + GAP, 3), np.uint8)
    canvas[:] = BACKGROUND
    for i, (unit, image) in enumerate(zip(features.units, features.images, strict=True)):
        top = GAP + (i // cols) * (tile_h + GAP)
        left = GAP + (i % cols) * (tile_w + GAP)
        canvas[top:top + LABEL_HEIGHT, left:left + tile_w] = 0
        cv2.putText(canvas, f"{features.layer} #{unit}", (left + 4, top + LABEL_HEIGHT - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        canvas[top + LABEL_HEIGHT:top + tile_h, left:left + tile_w] = cv2.resize(
            image, (tile_w, tile_h - LABEL_HEIGHT), interpolation=cv2.INTER_NEAREST)
    return canvas


def parse_units(text: str | None) -> tuple[int, ...] | None:
    """``"0,3,5"`` or ``"0-7"`` (or a mix) -> (0, 3, 5); None -> None (all units)."""
    if text is None:
        return None
    units: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                first, last = part.split("-", 1)
                units.extend(range(int(first), int(last) + 1))
            else:
                units.append(int(part))
    except ValueError:
        raise DriveVizError(f"--filters {text!r}: expected numbers like 0,1,2 or 0-7") from None
    if not units:
        raise DriveVizError(f"--filters {text!r}: no filter numbers given")
    return tuple(units)


def _chosen_units(args: argparse.Namespace
                  ) -> tuple[str, tuple[int, ...] | None, tuple[int, int] | None]:
    """(layer, units, position) from ``--target`` or from ``--layer`` and ``--filters``."""
    from drive_viz.attention.targets import UnitTarget, parse_target

    if args.target is None:
        if args.layer is None:
            raise DriveVizError("give --layer (with optional --filters) or --target LAYER:UNIT")
        return args.layer, parse_units(args.filters), None
    if args.layer is not None or args.filters is not None:
        raise DriveVizError("--target names the layer and unit: drop --layer and --filters")
    target = parse_target(args.target)
    if target == "steer":
        return "steer", (0,), None
    if not isinstance(target, UnitTarget):
        raise DriveVizError(f"--target {args.target!r}: features maximizes one unit: steer, "
                            "LAYER:UNIT or LAYER:UNIT@ROW,COL")
    return target.layer, (target.unit,), target.position


def run(args: argparse.Namespace) -> int:
    """``drive-viz features``: write a labelled grid PNG of maximizing inputs."""
    from drive_viz.model.dave2 import load_steering_model, model_contract

    out = png_output(args.out)
    if args.steps < 1:
        raise DriveVizError(f"--steps {args.steps}: must be at least 1")
    layer, units, position = _chosen_units(args)
    model = load_steering_model(args.model, unsafe=args.unsafe_model)
    contract = model_contract(args.model)
    probe = LayerProbe(model, layer, position, contract)
    features = maximize_activation(model, layer, units, steps=args.steps, seed=args.seed,
                                   probe=probe, contract=contract)
    write_png(out, feature_grid(features))
    gain = float(np.median(features.final_score - features.start_score))
    what = args.target or f"{layer} filter(s)"
    print(f"wrote {out}: {len(features.units)} x {what}, {args.steps} steps, "
          f"median activation gain {gain:.3g}")
    return 0
