"""Counterfactual renders: which scene element does the model's steering depend on, and do
the attention maps point at it?

A synthetic recording stores its seed, the world's settings (``meta.json`` ``extra.world``)
and the car's pose per row (``POSE_COLUMNS``), so :class:`Rerenderer` draws any of its frames
again, bit for bit as before JPEG, or with one element left out:

``centre_line``  the dashed centre line, painted as the asphalt under it;
``edge_lines``   the solid edge lines, likewise;
``road_edge``    the verge (all ground beyond the asphalt) drawn as asphalt: no road edge;
``distractors``  the objects beside the road;
``shadows``      the shadow bands;
``above_crop``   every image row above the model's crop replaced by ``NEUTRAL_FILL`` (the
                 network never sees those rows: its steering must not move at all).

:func:`counterfactual_evaluation` measures per frame f and element e the causal importance
``|f(x without e) - f(x)|`` (both renders go through the same engine call) and each method's
attention share on e, ``sum(|m| * c_e) / sum(|m|)``, where ``c_e`` is the share of each
network-input pixel the element covers (its render mask, cropped and area-resized like the
frame). Over the (frame, element) pairs where the element is in the network's view, it
reports per method the Spearman rank correlation between attention share and causal
importance (``rank_agreement``) and the share of frames whose most attended element is the
most causal one (``hit_rate``, against ``hit_chance``, the mean of 1 / elements in view).
``above_crop`` is the control: never in view, left out of both, its largest change is
reported (``above_crop_max_delta``). A counterfactual whose network input equals the frame's
own bit for bit is not run again (its change is exactly 0): the control checks the crop, not
the floating-point noise of where an input sits in a batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from drive_viz.errors import RecordingError
from drive_viz.model.contract import InputContract
from drive_viz.model.preprocess import preprocess_batch
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.render_road import SCENE_ELEMENTS
from drive_viz.sim.world import POSE_COLUMNS, RecordedPose, SyntheticWorld

ELEMENTS = (*SCENE_ELEMENTS, "above_crop")
#: RGB of what replaces the rows above the crop.
NEUTRAL_FILL = (128, 128, 128)
#: Frames per engine call (each with 1 + len(ELEMENTS) inputs).
_FRAMES_PER_CALL = 16
#: Settings whose value sets a spacing or size: a tiny one would make the world huge.
_LOWER_BOUNDED = ("distractor_spacing", "shadow_spacing", "dash_period", "dash_length",
                  "min_radius", "max_radius", "fov", "fps", "view_distance", "wheelbase")


def _world_config(raw: Any, where: str) -> SyntheticWorldConfig:
    """``extra.world`` of a recording's meta.json -> the config; RecordingError naming
    ``where`` on anything that is not a known setting of the right type and a sane size
    (within 10x of the default, at least 1/10 of it for spacings and sizes)."""
    if not isinstance(raw, dict):
        raise RecordingError(f"{where}: extra.world is missing; this recording cannot be "
                             "drawn again (record it with this drive-viz's synth)")
    fields = {f.name: f for f in dataclasses.fields(SyntheticWorldConfig)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RecordingError(f"{where}: extra.world has unknown setting(s) {unknown}")
    default = SyntheticWorldConfig()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        reference = getattr(default, name)
        if isinstance(reference, bool):
            ok = isinstance(value, bool)
        elif isinstance(reference, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not isinstance(reference, bool):
            ok = (math.isfinite(value) and abs(value) <= max(10 * abs(reference), 10)
                  and (name not in _LOWER_BOUNDED or value >= reference / 10))
        if not ok:
            raise RecordingError(f"{where}: extra.world.{name} = {value!r} is not a usable "
                                 f"value (default {reference!r})")
        values[name] = value
    try:
        return SyntheticWorldConfig(**values)
    except ValueError as exc:
        raise RecordingError(f"{where}: extra.world: {exc}") from None


class Rerenderer:
    """Draws the frames of a synthetic ``recording`` (a ``Recording``) again, whole or with
    scene elements left out. RecordingError when the recording lacks what that takes."""

    def __init__(self, recording: Any) -> None:
        where = f"{recording.path}/meta.json"
        extra = recording.meta.extra
        if recording.source != "synthetic":
            raise RecordingError(f"{recording.path}: counterfactual renders need a synthetic "
                                 f"recording (this one is from {recording.source!r})")
        seed = extra.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise RecordingError(f"{where}: extra.seed must be a non-negative integer")
        missing = [c for c in POSE_COLUMNS if c not in recording.table.columns]
        if missing:
            raise RecordingError(f"{recording.path}: frames.csv has no {', '.join(missing)} "
                                 "(the car's pose per row); re-record it with this "
                                 "drive-viz's synth")
        config = _world_config(extra.get("world"), where)
        self.recording = recording
        self.world = SyntheticWorld(config, seed)
        self.world.reset(render=False)
        for spec in recording.meta.cameras:
            if spec not in self.world.cameras:
                raise RecordingError(f"{where}: camera {spec.name!r} is not what "
                                     "extra.world describes")
        table = recording.table
        self._poses = np.full((len(table), len(POSE_COLUMNS)), np.nan)
        for j, column in enumerate(POSE_COLUMNS):
            self._poses[:, j] = np.asarray(
                [_to_float(v) for v in table[column].to_numpy()], np.float64)

    def pose(self, row: int) -> RecordedPose:
        """Row ``row``'s recorded pose; RecordingError if it is not five finite numbers."""
        values = self._poses[row]
        if not np.isfinite(values).all():
            raise RecordingError(f"{self.recording.path}: row {row} has no usable "
                                 f"{'/'.join(POSE_COLUMNS)}")
        return RecordedPose(*map(float, values))

    def render(self, row: int, camera: str, hide: Sequence[str] = ()) -> np.ndarray:
        """Row ``row``'s ``camera`` frame drawn again without the scene elements ``hide``
        (from ``SCENE_ELEMENTS``): RGB uint8 (H, W, 3)."""
        self.world.restore(self.pose(row))
        return self.world.render(camera, frozenset(hide))[0]

    def element_masks(self, row: int, camera: str) -> dict[str, np.ndarray]:
        """Where each of ``SCENE_ELEMENTS`` lies in row ``row``'s frame: name -> bool (H, W)."""
        self.world.restore(self.pose(row))
        return self.world.element_masks(camera)


def _to_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def fill_above_crop(rgb: np.ndarray, contract: InputContract) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) with the rows above ``contract``'s crop set to
    NEUTRAL_FILL."""
    out = rgb.copy()
    out[:contract.crop_box(*rgb.shape[:2])[0]] = NEUTRAL_FILL
    return out


def input_coverage(mask: np.ndarray, contract: InputContract) -> np.ndarray:
    """The share of each network-input pixel that a bool element mask (H, W) covers: float32
    (rows, columns) of the model's input in [0, 1] (the contract's crop, then an area resize,
    so a pixel's value is the covered fraction of its source area)."""
    top, bottom, left, right = contract.crop_box(*mask.shape[:2])
    rows, columns = contract.input_size
    return cv2.resize(mask[top:bottom, left:right].astype(np.float32), (columns, rows),
                      interpolation=cv2.INTER_AREA)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from drive_viz.attention.evaluate import spearman_rows

    if len(a) < 2:
        return math.nan
    return float(spearman_rows(np.asarray(a)[None], np.asarray(b)[None])[0])


def counterfactual_evaluation(model: Any, rerenderer: Rerenderer, rows: Sequence[int],
                              camera: str, prep: InputContract, methods: Sequence[str],
                              **engine_options: Any) -> dict[str, Any]:
    """Causal importance of each element of ``ELEMENTS`` and each method's attention on it,
    on the recording rows ``rows``; see the module doc. Every input (the re-rendered frame
    and its counterfactuals) goes through one ``AttentionEngine``; the baseline methods of
    ``evaluate`` (``sobel``) come from the inputs. Returns the ``counterfactuals`` section of
    evaluation.json (lists per frame in the order of ``frames``). ``engine_options``: as
    ``MapMaker``'s (seed, Grad-CAM layer, ...); the contract is ``prep``."""
    from drive_viz.attention.engine import AttentionEngine
    from drive_viz.attention.evaluate import BASELINE_METHODS, MapMaker

    maker = MapMaker(model, methods, **{**engine_options, "contract": prep})
    engine = maker.engine or AttentionEngine(model, (), contract=prep)
    rows = [int(r) for r in rows]
    count, kinds = len(rows), len(ELEMENTS) + 1
    base = np.empty(count)
    delta = np.empty((count, len(ELEMENTS)))
    cover = np.empty((count, len(ELEMENTS), *prep.input_size), np.float32)
    shares = {m: np.empty((count, len(ELEMENTS))) for m in methods}
    for start in range(0, count, _FRAMES_PER_CALL):
        chunk = rows[start:start + _FRAMES_PER_CALL]
        frames = []
        for i, row in enumerate(chunk, start):
            original = rerenderer.render(row, camera)
            frames += [original, *(rerenderer.render(row, camera, (e,)) for e in SCENE_ELEMENTS),
                       fill_above_crop(original, prep)]
            masks = rerenderer.element_masks(row, camera)
            for j, element in enumerate(SCENE_ELEMENTS):
                cover[i, j] = input_coverage(masks[element], prep)
            cover[i, -1] = 0.0  # above_crop: never in the network's view
        inputs = preprocess_batch(frames, prep)
        # A counterfactual the network sees exactly as the frame itself (above_crop, or an
        # element out of view) is not run again: it is the same input, its change is 0.
        source = np.arange(len(inputs))
        for first in range(0, len(inputs), kinds):
            for k in range(first + 1, first + kinds):
                if np.array_equal(inputs[k], inputs[first]):
                    source[k] = first
        unique, position = np.unique(source, return_inverse=True)
        result = engine(inputs[unique])
        prediction = np.asarray(result.prediction, np.float64).reshape(len(unique), -1)[:, 0]
        prediction = prediction[position].reshape(len(chunk), kinds)
        done = slice(start, start + len(chunk))
        base[done] = prediction[:, 0]
        delta[done] = np.abs(prediction[:, 1:] - prediction[:, :1])
        originals = inputs[::kinds]
        first_of = np.searchsorted(unique, np.arange(0, len(inputs), kinds))
        for method in methods:
            maps = result.maps[method][first_of] if method in result.maps \
                else BASELINE_METHODS[method](originals, prep)
            mass = np.abs(np.asarray(maps, np.float64))
            total = mass.sum(axis=(1, 2))[:, None]
            on = np.einsum("fhw,fehw->fe", mass, cover[done].astype(np.float64))
            with np.errstate(invalid="ignore", divide="ignore"):
                shares[method][done] = np.where(total > 0, on / total, np.nan)
    present = cover.reshape(count, len(ELEMENTS), -1).sum(axis=2) > 0
    ranked = present & np.isfinite(delta)
    in_view = ranked.sum(axis=1)
    contested = (in_view >= 2) & (np.where(ranked, delta, -1).max(axis=1) > 0)

    def most(values: np.ndarray) -> np.ndarray:
        return np.where(ranked, np.nan_to_num(values, nan=-1.0), -np.inf).argmax(axis=1)

    causal = most(delta)
    report_methods: dict[str, Any] = {}
    for method in methods:
        share = shares[method]
        pairs = ranked & np.isfinite(share)
        per_frame = [_spearman(share[f, pairs[f]], delta[f, pairs[f]]) for f in range(count)]
        per_frame = [v for v in per_frame if math.isfinite(v)]
        hits = (most(share) == causal)[contested]
        report_methods[method] = {
            "rank_agreement": _spearman(share[pairs], delta[pairs]),
            "rank_agreement_per_frame": float(np.mean(per_frame)) if per_frame else math.nan,
            "hit_rate": float(hits.mean()) if hits.size else math.nan,
            "attention_share": {e: share[:, j].tolist() for j, e in enumerate(ELEMENTS)},
            "mean_attention_share": {e: _masked_mean(share[:, j], present[:, j])
                                     for j, e in enumerate(ELEMENTS)},
        }
    area = cover.mean(axis=(2, 3))
    return {
        "elements": list(ELEMENTS),
        "frames": rows,
        "camera": camera,
        "fill": list(NEUTRAL_FILL),
        "steer": base.tolist(),
        "delta_steer": {e: delta[:, j].tolist() for j, e in enumerate(ELEMENTS)},
        "in_view": {e: present[:, j].tolist() for j, e in enumerate(ELEMENTS)},
        "area_share": {e: area[:, j].tolist() for j, e in enumerate(ELEMENTS)},
        "mean_delta_steer": {e: _masked_mean(delta[:, j], present[:, j] | (e == "above_crop"))
                             for j, e in enumerate(ELEMENTS)},
        "mean_area_share": {e: _masked_mean(area[:, j], present[:, j])
                            for j, e in enumerate(ELEMENTS)},
        "most_causal_frames": {e: int(((causal == j) & contested).sum())
                               for j, e in enumerate(ELEMENTS)},
        "frames_ranked": int(contested.sum()),
        "hit_chance": float(np.mean(1.0 / in_view[contested])) if contested.any() else math.nan,
        "above_crop_max_delta": float(delta[:, -1].max()) if count else math.nan,
        "methods": report_methods,
    }


def _masked_mean(values: np.ndarray, keep: np.ndarray) -> float:
    chosen = values[keep & np.isfinite(values)]
    return float(chosen.mean()) if chosen.size else math.nan


def summary_lines(section: dict[str, Any] | None) -> list[str]:
    """Console (and evaluation.html) lines for a ``counterfactual_evaluation`` result: each
    element's mean causal importance, then each method's agreement with it."""
    if not section:
        return []
    lines = [f"  {e:<22} without it, steering changes by {section['mean_delta_steer'][e]:.4f} "
             f"on average; most causal in {section['most_causal_frames'][e]} of "
             f"{section['frames_ranked']} frames" for e in section["elements"]]
    for method, result in section["methods"].items():
        lines.append(f"  {method:<22} rank agreement {result['rank_agreement']:+.2f}, most "
                     f"attended = most causal in {result['hit_rate']:.0%} of frames (chance "
                     f"{section['hit_chance']:.0%})")
    return lines
