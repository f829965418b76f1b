"""Can the attention maps be trusted? Sanity checks, deletion/insertion, mask agreement.

``drive-viz evaluate REC --model M --out DIR`` runs three checks on frames of a recording,
computing every map with the one attention engine (``AttentionEngine``):

Model-randomization sanity check (Adebayo et al. 2018)
    The model's layers are re-initialized cumulatively from the top down (stage 1 re-draws
    ``steer``, stage 2 also ``dense3``, ..., the last stage every layer down to ``conv1``),
    each with its own initializer (biases with theirs, normally zeros), seeded. At each stage
    the Spearman rank correlation between the trained model's map and the randomized model's
    map is taken per frame, on ``|m|`` (ties get their average rank); the mean over frames is
    reported. A method that explains the model should fall towards 0; one whose maps stay
    near 1 (like the ``sobel`` baseline) does not depend on the weights.

Deletion and insertion (Petsiuk et al. 2018), for a steering regression
    Pixels (all three channels) are ordered by ``|m|``, most salient first. In ``k`` steps
    the first ``j/k`` of them are deleted (replaced by the baseline image: the input blurred
    with a Gaussian of ``BLUR_SIGMA`` pixels, or each channel's mean) or inserted (copied from
    the input into the baseline image). The curve value at step j is
    ``mean_i |f(x_ij) - f(x_i)| / mean_i |f(b_i) - f(x_i)|`` over frames i (a ratio of means,
    so frames where the baseline barely moves the output do not blow up): deletion rises from
    0 to 1, insertion falls from 1 to 0. Deletion AUC: higher is better; insertion AUC: lower
    is better. ``random`` is the same with a seeded random pixel order, the reference to beat.

Mask agreement (recordings with class masks, labels ``MASK_CLASSES``)
    ``marking_attention_share``: mean share of the map's mass (``|m|``, as in
    ``stats.map_statistics``) on lane-marking pixels; ``marking_area_share``: mean share of
    the image those pixels cover; ``marking_ratio`` = attention / area (> 1: attends to
    markings more than chance). The same for road (road + marking). Pointing game: a frame
    is a hit when the map's largest ``|m|`` pixel lies within ``tolerance`` pixels (Chebyshev
    distance, in the 66x200 view) of a road or marking pixel; a map that is zero everywhere
    is a miss. ``pointing_chance`` is the hit rate of a uniformly random point.

``DIR/evaluation.json`` keys: ``recording``, ``model``, ``camera``, ``frames`` (row indices
evaluated), ``skipped`` ([{``row``, ``reason``}]: unreadable frames are skipped),
``methods``, ``seed``, ``prediction_mae`` (mean |model - recorded steering|),
``sanity_check`` {``stages``, ``spearman_mean`` {method: [per stage]}, ``spearman_std``},
``deletion`` and ``insertion`` {``fractions``, ``baseline``, ``curves`` {method or "random":
[...]}, ``auc`` {...}}, ``masks`` (null without masks) {``frames_with_masks``,
``tolerance_px``, ``marking_area_share``, ``road_area_share``, ``pointing_chance``,
``methods`` {method: {``marking_attention_share``, ``marking_ratio``,
``road_attention_share``, ``road_ratio``, ``pointing_hit_rate``}}}, ``plots``
{``sanity_check``, ``deletion_insertion``: file names}. Undefined numbers are null.
With ``--shift-test``, ``--causal-blobs`` and ``--road``: ``shift_test``, ``causal_blobs`` and
``road`` (see ``drive_viz.attention.causal``).

Baseline method ``sobel``: the Sobel gradient magnitude of the input's luma (whatever the
contract's colour order, scale and offset: ``input_luma``). It ignores
the model entirely, so it must FAIL the sanity check; it is there as the reference for what
an input-only "explanation" scores.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drive_viz.atomic import write_json_atomic
from drive_viz.attention.catalog import METHODS, parse_methods
from drive_viz.attention.causal import run_causal_tests, summary_lines
from drive_viz.attention.counterfactual import summary_lines as counterfactual_lines
from drive_viz.attention.stats import map_statistics
from drive_viz.errors import DriveVizError, FrameError
from drive_viz.model.contract import DAVE2_CONTRACT, InputContract
from drive_viz.recording.format import MASK_CLASSES
from drive_viz.render.charts import line_chart
from drive_viz.render.png import write_png

DEFAULT_METHODS = ("saliency", "gradcam", "visualbackprop", "sobel")
BLUR_SIGMA = 10.0
BASELINES = ("blur", "mean")
_PREDICT_CHUNK = 256

Predict = Callable[[np.ndarray], np.ndarray]


def input_luma(inputs: np.ndarray, contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """The luma of network inputs (N, H, W, 3) in the frame's 0..255 units -> (N, H, W) float32:
    the contract's scale and offset undone, then the Y channel of a ``yuv`` contract, or
    0.299 R + 0.587 G + 0.114 B (BT.601, the Y that the YUV conversion computes) of an ``rgb``
    or ``bgr`` one."""
    values = np.asarray(inputs, np.float32)
    if contract.offset != 0.0 or contract.scale != 1.0:
        values = (values - np.float32(contract.offset)) / np.float32(contract.scale)
    if contract.colour == "yuv":
        return np.ascontiguousarray(values[..., 0])
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return values @ (weights if contract.colour == "rgb" else weights[::-1])


def sobel_map(inputs: np.ndarray, contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """Model-independent baseline: Sobel gradient magnitude of the luma (``input_luma``) of
    ``inputs`` (N, H, W, 3) network inputs under ``contract`` -> (N, H, W) float32."""
    luma = input_luma(inputs, contract)
    out = np.empty(luma.shape, np.float32)
    for i, y in enumerate(luma):
        out[i] = cv2.magnitude(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    return out


#: Maps that need no model: name -> function of the inputs and their contract.
BASELINE_METHODS: dict[str, Callable[[np.ndarray, InputContract], np.ndarray]] = {
    "sobel": sobel_map}


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (both
    (N, ...) flattened per row) -> (N,) float64; ties get their average rank; NaN when a row
    is constant."""
    ra = _average_ranks(np.asarray(a).reshape(len(a), -1))
    rb = _average_ranks(np.asarray(b).reshape(len(b), -1))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (ra * rb).sum(axis=1) / denominator
    corr[~(denominator > 0)] = np.nan
    return np.clip(corr, -1.0, 1.0)


def _average_ranks(rows: np.ndarray) -> np.ndarray:
    n, size = rows.shape
    order = np.argsort(rows, axis=1, kind="stable")
    ranks = np.empty((n, size), np.float64)
    for i in range(n):
        ordered = rows[i, order[i]]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], size]
        ranks[i, order[i]] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def randomization_stages(model: Any) -> list[str]:
    """Names of the layers with weights, from the output down (DAVE-2: steer, dense3, ...,
    conv1): the order of the cascading randomization."""
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def _reinitialize(layer: Any, seed: int) -> None:
    """Re-draw ``layer``'s kernel and bias from the layer's own initializers, seeded."""
    import keras

    for index, attribute in enumerate(("kernel", "bias")):
        variable = getattr(layer, attribute, None)
        if variable is None:
            continue
        # A seed of its own per (seed, layer, variable), never the small integers the model
        # itself may have been built with (which would re-draw the very same weights).
        draw_seed = int(np.random.SeedSequence([seed, index, *layer.name.encode()])
                        .generate_state(1)[0] >> 1)
        initializer = getattr(layer, f"{attribute}_initializer", None)
        config = initializer.get_config() if initializer is not None else {}
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": draw_seed})
        elif initializer is None:
            initializer = keras.initializers.GlorotUniform(seed=draw_seed)
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))


class MapMaker:
    """All requested maps for a model: engine methods in one fused engine call, baseline
    methods from the inputs. Built once per model; sees later weight changes."""

    def __init__(self, model: Any, methods: Sequence[str], **engine_options: Any) -> None:
        from drive_viz.attention.engine import AttentionEngine

        self.methods = tuple(methods)
        self.contract = engine_options.get("contract") or DAVE2_CONTRACT
        engine_methods = [m for m in self.methods if m not in BASELINE_METHODS]
        self.engine = AttentionEngine(model, engine_methods, **engine_options) \
            if engine_methods else None

    def __call__(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        maps = self.engine(inputs).maps if self.engine is not None else {}
        return {m: maps[m] if m in maps else BASELINE_METHODS[m](inputs, self.contract)
                for m in self.methods}


def sanity_check(model: Any, inputs: np.ndarray, methods: Sequence[str], *, seed: int = 0,
                 trained_maps: Mapping[str, np.ndarray] | None = None,
                 **engine_options: Any) -> dict[str, Any]:
    """Cascading model-randomization check on ``inputs`` (N, H, W, 3) network inputs.

    Returns {"stages": [layer names], "spearman_mean": {method: [per stage]},
    "spearman_std": {...}}; the model itself is not modified (a clone is randomized).
    """
    import keras

    if trained_maps is None:
        trained_maps = MapMaker(model, methods, **engine_options)(inputs)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    randomized = MapMaker(clone, methods, **engine_options)
    stages = randomization_stages(clone)
    means: dict[str, list[float]] = {m: [] for m in methods}
    stds: dict[str, list[float]] = {m: [] for m in methods}
    for name in stages:
        _reinitialize(clone.get_layer(name), seed)
        maps = randomized(inputs)
        for method in methods:
            corr = spearman_rows(np.abs(trained_maps[method]), np.abs(maps[method]))
            means[method].append(_nan_stat(np.nanmean, corr))
            stds[method].append(_nan_stat(np.nanstd, corr))
    return {"stages": stages, "spearman_mean": means, "spearman_std": stds}


def _nan_stat(function: Callable[[np.ndarray], Any], values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(function(finite)) if finite.size else math.nan


def baseline_images(inputs: np.ndarray, kind: str = "blur") -> np.ndarray:
    """What deleted pixels become: ``"blur"`` (Gaussian, BLUR_SIGMA px) or ``"mean"`` (each
    frame's per-channel mean), (N, H, W, 3) float32."""
    inputs = np.asarray(inputs, np.float32)
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(x, (0, 0), BLUR_SIGMA) for x in inputs])
    if kind == "mean":
        return np.broadcast_to(inputs.mean(axis=(1, 2), keepdims=True), inputs.shape).copy()
    raise ValueError(f"baseline must be one of {BASELINES}, not {kind!r}")


def deletion_insertion(predict: Predict, inputs: np.ndarray, maps: Mapping[str, np.ndarray],
                       *, steps: int = 16, baseline: str = "blur",
                       seed: int = 0) -> dict[str, dict[str, Any]]:
    """Deletion and insertion curves (see the module doc) for each map in ``maps`` and for
    a seeded random order (key ``"random"``).

    ``predict``: (M, H, W, 3) -> (M,) steering. Returns {"deletion": {"fractions",
    "baseline", "curves", "auc"}, "insertion": {...}}; fractions are the (steps + 1,)
    shares of pixels deleted or inserted.
    """
    inputs = np.asarray(inputs, np.float32)
    n, height, width, _ = inputs.shape
    pixels = height * width
    base = baseline_images(inputs, baseline)
    reference = _predict_chunked(predict, inputs)
    scale = float(np.mean(np.abs(_predict_chunked(predict, base) - reference)))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * pixels).astype(np.int64)
    rng = np.random.default_rng(seed)
    orders = {name: np.argsort(-np.abs(m.reshape(n, pixels)), axis=1, kind="stable")
              for name, m in maps.items()}
    orders["random"] = np.stack([rng.permutation(pixels) for _ in range(n)])
    result: dict[str, dict[str, Any]] = {
        kind: {"fractions": fractions.tolist(), "baseline": baseline, "curves": {}, "auc": {}}
        for kind in ("deletion", "insertion")}
    frames_per_chunk = max(1, _PREDICT_CHUNK // (2 * (steps + 1)))
    for name, order in orders.items():
        change = np.zeros((2, steps + 1))
        for start in range(0, n, frames_per_chunk):
            stop = min(n, start + frames_per_chunk)
            rank = np.empty((stop - start, pixels), np.int64)
            np.put_along_axis(rank, order[start:stop], np.arange(pixels)[None], axis=1)
            chosen = (rank[:, None, :] < counts[None, :, None]).reshape(
                stop - start, steps + 1, height, width, 1)
            x = inputs[start:stop, None]
            b = base[start:stop, None]
            batch = np.concatenate([np.where(chosen, b, x), np.where(chosen, x, b)], axis=1)
            outputs = _predict_chunked(predict, batch.reshape(-1, height, width, 3))
            outputs = outputs.reshape(stop - start, 2, steps + 1)
            change += np.abs(outputs - reference[start:stop, None, None]).sum(axis=0)
        curves = change / n / scale if scale > 0 else np.full_like(change, np.nan)
        for index, kind in enumerate(("deletion", "insertion")):
            result[kind]["curves"][name] = curves[index].tolist()
            result[kind]["auc"][name] = _trapezoid(curves[index], fractions)
    return result


def _trapezoid(values: np.ndarray, x: np.ndarray) -> float:
    """Area under ``values`` over ``x`` by the trapezoid rule."""
    return float(((values[1:] + values[:-1]) / 2 * np.diff(x)).sum())


def _predict_chunked(predict: Predict, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predict(inputs[i:i + _PREDICT_CHUNK])).reshape(-1)
                           for i in range(0, len(inputs), _PREDICT_CHUNK)])


def mask_agreement(maps: Mapping[str, np.ndarray], masks: Sequence[np.ndarray | None],
                   tolerance: int = 2) -> dict[str, Any] | None:
    """Attention on lane markings and road vs their area, and the pointing game (see the
    module doc). ``masks``: per frame (H, W) uint8 labels or None. None if no frame has
    a mask."""
    present = [i for i, mask in enumerate(masks) if mask is not None]
    if not present:
        return None
    labels = np.stack([masks[i] for i in present])
    marking = labels == MASK_CLASSES["lane_marking"]
    road = marking | (labels == MASK_CLASSES["road"])
    size = 2 * tolerance + 1
    kernel = np.ones((size, size), np.uint8)
    near_road = np.stack([cv2.dilate(r.astype(np.uint8), kernel) > 0 for r in road])
    marking_area = float(marking.mean())
    road_area = float(road.mean())
    out: dict[str, Any] = {
        "frames_with_masks": len(present), "tolerance_px": tolerance,
        "marking_area_share": marking_area, "road_area_share": road_area,
        "pointing_chance": float(near_road.mean()), "methods": {}}
    for method, method_maps in maps.items():
        chosen = np.abs(np.asarray(method_maps)[present])
        stats = map_statistics(chosen, labels)
        marking_share = _nan_stat(np.mean, stats["marking_share"])
        road_share = _nan_stat(np.mean, stats["road_share"])
        flat = chosen.reshape(len(present), -1)
        peak = flat.argmax(axis=1)
        hits = near_road.reshape(len(present), -1)[np.arange(len(present)), peak]
        hits &= flat.max(axis=1) > 0
        out["methods"][method] = {
            "marking_attention_share": marking_share,
            "marking_ratio": marking_share / marking_area if marking_area > 0 else math.nan,
            "road_attention_share": road_share,
            "road_ratio": road_share / road_area if road_area > 0 else math.nan,
            "pointing_hit_rate": float(hits.mean()),
        }
    return out


# --- plots (drive_viz.render.charts) -----------------------------------------------------

def plot_sanity_check(check: Mapping[str, Any]) -> np.ndarray:
    """The randomization cascade: mean Spearman correlation per stage, one line per method."""
    stages = check["stages"]
    threshold = f"passes below {RANDOMIZATION_THRESHOLD:g}"
    series = {**check["spearman_mean"], threshold: [RANDOMIZATION_THRESHOLD] * len(stages)}
    return line_chart("Sanity check: Spearman(trained, randomized) vs layers re-drawn",
                      list(range(len(stages))), series, y_range=(-1.0, 1.0), dashed=[threshold],
                      x_labels=[f"+{s}" for s in stages],
                      x_title="layers re-drawn (cumulative, from the output down)",
                      y_title="mean Spearman rho",
                      size=(760, 420))


def plot_deletion_insertion(curves: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """Deletion (left) and insertion (right) curves side by side; random order dashed."""
    panels = []
    verb = {"deletion": "removed (most salient first)",
            "insertion": "added back (most salient first)"}
    for kind in ("deletion", "insertion"):
        data = curves[kind]
        values = [v for c in data["curves"].values() for v in c if math.isfinite(v)]
        top = max([1.0, *values]) * 1.05
        labelled = {f"{name} {data['auc'][name]:.2f}": curve
                    for name, curve in data["curves"].items()}
        title = f"{kind} (AUC in legend), {data['baseline']} baseline"
        panels.append(line_chart(title, data["fractions"], labelled, y_range=(0.0, top),
                                 dashed=[n for n in labelled if n.startswith("random ")],
                                 x_title=f"fraction of pixels {verb[kind]}",
                                 y_title="|f(x_k) - f(x)|", size=(680, 420)))
    return np.concatenate(panels, axis=1)


# --- verdicts ---------------------------------------------------------------------------

#: A method passes the randomization check when the mean Spearman rank correlation between
#: its maps on the trained model and on the model with every layer re-drawn is below this.
RANDOMIZATION_THRESHOLD = 0.5


def verdicts(check: Mapping[str, Any], curves: Mapping[str, Mapping[str, Any]],
             methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: ``randomization`` {"rho" (all layers re-drawn), "threshold", "passes"},
    ``deletion`` {"auc", "random_auc", "better"} (higher AUC is better) and ``insertion``
    {"auc", "random_auc", "better"} (lower is better); None where a number is NaN."""
    out = {}
    for method in methods:
        rho = check["spearman_mean"][method][-1]
        entry: dict[str, Any] = {"randomization": {
            "rho": rho, "threshold": RANDOMIZATION_THRESHOLD,
            "passes": bool(rho < RANDOMIZATION_THRESHOLD) if math.isfinite(rho) else None}}
        for kind, sign in (("deletion", 1), ("insertion", -1)):
            auc, random_auc = curves[kind]["auc"][method], curves[kind]["auc"]["random"]
            entry[kind] = {"auc": auc, "random_auc": random_auc,
                           "better": bool(sign * (auc - random_auc) > 0)
                           if math.isfinite(auc) and math.isfinite(random_auc) else None}
        out[method] = entry
    return out


def verdict_lines(results: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The verdicts as sentences, per method (the console and evaluation.html print these)."""
    def word(value: bool | None, yes: str, no: str) -> str:
        return "undecided (NaN)" if value is None else yes if value else no

    lines = {}
    for method, entry in results.items():
        rand, deletion, insertion = (entry[k] for k in ("randomization", "deletion",
                                                        "insertion"))
        lines[method] = [
            f"randomization check {word(rand['passes'], 'PASSES', 'FAILS')}: rho "
            f"{rand['rho']:+.2f} with every layer re-drawn (passes below "
            f"{rand['threshold']:g})",
            f"deletion curve {word(deletion['better'], 'BETTER', 'WORSE')} than random order "
            f"(AUC {deletion['auc']:.2f} vs {deletion['random_auc']:.2f}, higher is better)",
            f"insertion curve {word(insertion['better'], 'BETTER', 'WORSE')} than random order "
            f"(AUC {insertion['auc']:.2f} vs {insertion['random_auc']:.2f}, lower is better)"]
    return lines


# --- command ---------------------------------------------------------------------------------

def _read_frames(recording: Any, wanted: np.ndarray, camera: str
                 ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None],
                            list[dict[str, Any]]]:
    """Decode the ``wanted`` rows' frames and masks, skipping unreadable frames (a bad mask
    only loses that frame's mask). Returns the rows kept, their RGB frames, their masks (None
    where absent) and the skipped rows with the reason; DriveVizError if every frame is bad."""
    rows, frames, masks, skipped = [], [], [], []
    with_masks = recording.has_masks(camera)
    for row in wanted.tolist():
        try:
            frame = recording.image(row, camera)
        except FrameError as exc:
            skipped.append({"row": row, "reason": str(exc)})
            continue
        mask = None
        if with_masks:
            try:
                mask = recording.mask(row, camera)
            except FrameError as exc:
                skipped.append({"row": row, "reason": f"mask only: {exc}"})
        rows.append(row)
        frames.append(frame)
        masks.append(mask)
    if not frames:
        raise DriveVizError(f"{recording.path}: none of the {len(wanted)} chosen frames could be "
                            f"read (first: {skipped[0]['reason']})")
    return np.asarray(rows), frames, masks, skipped


def _counterfactual_hook(recording: Any) -> Any:
    """``--counterfactuals``: the recording's Rerenderer (refuses recordings it cannot draw)."""
    from drive_viz.attention.counterfactual import Rerenderer

    return Rerenderer(recording)


def run(args: argparse.Namespace) -> int:
    """``drive-viz evaluate``: sanity check, deletion/insertion and mask agreement."""
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.plausibility import plausibility_warnings, print_warnings
    from drive_viz.model.preprocess import preprocess_batch, preprocess_mask
    from drive_viz.recording.reader import open_recording

    methods = parse_methods(args.methods, known=(*METHODS, *BASELINE_METHODS))
    if args.frames < 1:
        raise DriveVizError(f"--frames {args.frames}: must be at least 1")
    if args.steps < 1:
        raise DriveVizError(f"--steps {args.steps}: must be at least 1")
    if args.tolerance < 0:
        raise DriveVizError(f"--tolerance {args.tolerance}: must be >= 0")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DriveVizError(f"{out}: exists and is not a folder")
    try:  # an unwritable --out fails now, not after the evaluation
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DriveVizError(f"{out}: cannot create ({exc.strerror or exc})") from None
    recording = open_recording(args.recording)
    if len(recording) == 0:
        raise DriveVizError(f"{recording.path}: the recording has no frames")
    camera = args.camera or recording.cameras[0]
    recording.meta.camera(camera)
    rerenderer = _counterfactual_hook(recording) if getattr(args, "counterfactuals", False) \
        else None
    model = load_steering_model(args.model, unsafe=args.unsafe_model)
    prep = model_contract(args.model)

    wanted = np.unique(np.linspace(0, len(recording) - 1, min(args.frames, len(recording)))
                       .round().astype(int))
    rows, frames, masks, skipped = _read_frames(recording, wanted, camera)
    inputs = preprocess_batch(frames, prep)
    masks = [None if m is None else preprocess_mask(m, prep) for m in masks]

    engine_options = {"seed": args.seed, "contract": prep, "gradcam_layer": args.gradcam_layer}
    maps = MapMaker(model, methods, **engine_options)(inputs)
    from drive_viz.attention.network import steering_predictor

    predict = steering_predictor(model, prep)
    prediction = predict(inputs)
    steering = recording.steering()[rows]
    warnings = plausibility_warnings(prediction, steering)
    check = sanity_check(model, inputs, methods, trained_maps=maps, **engine_options)
    curves = deletion_insertion(predict, inputs, maps, steps=args.steps,
                                baseline=args.baseline, seed=args.seed)
    agreement = mask_agreement(maps, masks, args.tolerance)
    causal = run_causal_tests(lambda x: _predict_chunked(predict, x), inputs, maps,
                              shift=args.shift_test, blobs=args.causal_blobs,
                              road_curves=args.road, seed=args.seed)

    out.mkdir(parents=True, exist_ok=True)
    plots = {"sanity_check": "sanity_check.png", "deletion_insertion": "deletion_insertion.png"}
    pictures = {"sanity_check": plot_sanity_check(check),
                "deletion_insertion": plot_deletion_insertion(curves)}
    for key, picture in pictures.items():
        write_png(out / plots[key], picture)
    results = verdicts(check, curves, methods)
    report = {
        "recording": str(recording.path), "model": str(args.model), "camera": camera,
        "frames": rows.tolist(), "skipped": skipped, "methods": list(methods),
        "seed": args.seed,
        "prediction_mae": float(np.nanmean(np.abs(prediction - steering))),
        "warnings": warnings,
        "sanity_check": check, **curves, "masks": agreement, "plots": plots, **causal,
        "verdicts": results,
    }
    if rerenderer is not None:
        from drive_viz.attention.counterfactual import counterfactual_evaluation

        report["counterfactuals"] = counterfactual_evaluation(
            model, rerenderer, rows, camera, prep, methods, **engine_options)
    write_json_atomic(out / "evaluation.json", report)
    lines = verdict_lines(results)
    from drive_viz.report.evaluation import write_evaluation_page

    write_evaluation_page(out / "evaluation.html", report, lines, pictures, {
        "Warnings": [warning["message"] for warning in warnings],
        "Causal tests": summary_lines(causal),
        "Counterfactual renders": counterfactual_lines(report.get("counterfactuals"))})
    print(f"wrote {out / 'evaluation.json'} and evaluation.html ({len(rows)} frames, "
          f"methods: {', '.join(methods)})")
    for method in methods:
        print(f"  {method}")
        for line in lines[method]:
            print(f"    {line}")
    for line in summary_lines(causal) + counterfactual_lines(report.get("counterfactuals")):
        print(line)
    print_warnings(warnings)
    return 0
