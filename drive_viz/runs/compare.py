"""``drive-viz compare``: several steering models on one drive, side by side, in one pass.

Replay's stages (``drive_viz.runs.replay``) with several models: each frame is decoded once
and preprocessed through every model's own contract (``decode_batch`` with ``others``); each
model is analysed by its own ``FrameAnalyzer`` exactly as ``replay`` would analyse it alone
(``analyse_batch``); the per-model tables are joined with their columns prefixed by the
model's label, and each pair of models gets its prediction difference and the agreement of
its main-method maps on the camera-frame cells both models see
(``drive_viz.attention.agreement``). The run folder, tables, summary.json and report.html go
through ``RunWriter`` (with ``CompareSummary`` and the compare report), the video through the
one renderer's compare layout.

Columns of frames.parquet / frames.csv: ``frame``, ``row``, ``t``, ``target``, ``steer_true``,
``decode_ms``, ``render_ms``, ``encode_ms``; per model ``<label>_<column>`` for every column
``replay`` writes for that model (``steer_pred``, ``abs_error``, ``<method>_<statistic>``,
``<method>_empty``, ``first_conv_*``, ``model_ms``); per pair ``<a>_vs_<b>_pred_diff``
(A's prediction minus B's) and ``<a>_vs_<b>_<main method>_<pearson|spearman|top5_iou|
centroid_distance>``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drive_viz.analysis import FrameAnalyzer
from drive_viz.attention.agreement import (
    AGREEMENT_STATISTICS,
    CameraGrid,
    MapResampler,
    map_agreement,
)
from drive_viz.errors import DriveVizError, OptionError
from drive_viz.render.overlay import OverlayRenderer, Timeline, heat_on_frame
from drive_viz.render.video import quality_qp
from drive_viz.runs.pairs import mae_difference_interval
from drive_viz.runs.pipeline import run_stages
from drive_viz.runs.replay import (
    Batch,
    Drive,
    OutputStage,
    ReplayOptions,
    analyse_batch,
    decode_stage,
    progress_bar,
    run_head,
    select_rows,
    video_entry,
)
from drive_viz.runs.summary import EventGallery, RunSummary, _finite_or_none
from drive_viz.runs.writer import RunWriter, jpeg_data_uri

MAX_MODELS = 4
#: Columns every model shares (kept once, unprefixed).
SHARED_COLUMNS = ("frame", "row", "t", "target", "steer_true", "decode_ms")
#: Bootstrap block of the MAE difference interval, in seconds of drive time.
BOOTSTRAP_BLOCK_S = 2.0


@dataclass(frozen=True)
class Contender:
    """One model of a comparison: its ``label``, file, loaded model and input contract."""

    label: str
    path: Path
    model: Any
    contract: Any


def default_labels(model_paths: Sequence[str | Path]) -> list[str]:
    """The labels of models given without ``labels``: their file stems."""
    return [Path(path).stem for path in model_paths]


def check_labels(model_paths: Sequence[str | Path], labels: Sequence[str] | None) -> list[str]:
    """The labels of ``model_paths`` (``labels``, or the file stems); OptionError naming
    ``models`` or ``labels`` for fewer than 2 or more than MAX_MODELS models, a label count
    that does not match, an empty label, one containing ``_vs_`` (the pair columns' separator)
    and duplicates."""
    if not 2 <= len(model_paths) <= MAX_MODELS:
        raise OptionError(f"models: compare takes 2 to {MAX_MODELS} model files, got "
                          f"{len(model_paths)}", "models")
    if labels is None:
        labels = default_labels(model_paths)
    elif len(labels) != len(model_paths):
        raise OptionError(f"labels: {len(labels)} names for {len(model_paths)} models",
                          "labels")
    for label, path in zip(labels, model_paths, strict=True):
        if not label.strip() or "_vs_" in label:
            raise OptionError(f"labels: {label!r} (model {path}) must be non-empty and not "
                              "contain '_vs_'", "labels")
    for label in set(labels):
        same = [str(path) for name, path in zip(labels, model_paths, strict=True)
                if name == label]
        if len(same) > 1:
            raise OptionError(f"labels: {', '.join(same)} share the label {label!r} (give "
                              "distinct ones with labels)", "labels")
    return list(labels)


def load_contenders(model_paths: Sequence[str | Path], labels: Sequence[str],
                    frame_hw: tuple[int, int], unsafe: bool = False) -> list[Contender]:
    """Load every model and its contract, checking it fits its contract and that the crop
    leaves an image of a ``frame_hw`` (height, width) camera frame; the first that does not
    is a DriveVizError naming the model."""
    from drive_viz.model.contract import ContractError
    from drive_viz.model.dave2 import load_steering_model, model_contract

    contenders = []
    for label, path in zip(labels, model_paths, strict=True):
        contract = model_contract(path)
        model = load_steering_model(path, unsafe=unsafe, contract=contract)
        try:
            contract.crop_box(*frame_hw)
        except ContractError as exc:
            raise DriveVizError(f"{path} (model {label!r}): {exc}") from None
        contenders.append(Contender(label, Path(path), model, contract))
    return contenders


def pair_names(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair (a, b) of labels, a before b in the given order."""
    return list(itertools.combinations(labels, 2))


def model_columns(columns: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """For each label, its prefixed columns of a compare table -> the replay column names."""
    pairs = {f"{a}_vs_{b}_" for a, b in pair_names(labels)}
    out: dict[str, dict[str, str]] = {label: {} for label in labels}
    for column in columns:
        if column in SHARED_COLUMNS or any(column.startswith(p) for p in pairs):
            continue
        owners = [label for label in labels if column.startswith(f"{label}_")]
        if owners:
            owner = max(owners, key=len)  # "a_b_x" belongs to label "a_b", not "a"
            out[owner][column] = column[len(owner) + 1:]
    return out


class ComparePairs:
    """Per-frame pair columns: prediction differences and main-method map agreement on the
    camera-frame cells both models see, for frames of height x width pixels."""

    def __init__(self, contenders: Sequence[Contender], method: str,
                 frame_hw: tuple[int, int]) -> None:
        self.method = method
        self.grid = CameraGrid.for_frame(*frame_hw)
        self.resamplers = {c.label: MapResampler.build(self.grid, c.contract.crop_box(*frame_hw),
                                                       tuple(c.contract.input_size))
                           for c in contenders}
        self.pairs = pair_names([c.label for c in contenders])

    def columns(self, predictions: dict[str, np.ndarray],
                maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``predictions[label]`` (N,) and ``maps[label]`` (N, H, W) raw main-method maps over
        that model's input -> the pair columns, each (N,) float64."""
        on_grid = {label: resample(maps[label]) for label, resample in self.resamplers.items()}
        out: dict[str, np.ndarray] = {}
        for a, b in self.pairs:
            prefix = f"{a}_vs_{b}"
            out[f"{prefix}_pred_diff"] = predictions[a] - predictions[b]
            shared = self.resamplers[a].seen & self.resamplers[b].seen
            agreement = map_agreement(on_grid[a], on_grid[b], shared, self.grid.frame_hw)
            for statistic in AGREEMENT_STATISTICS:
                out[f"{prefix}_{self.method}_{statistic}"] = agreement[statistic]
        return out


class CompareSummary:
    """The summary of a compare run, fed like ``RunSummary`` (``add``, ``build``, ``worst``).

    One ``RunSummary`` per model (its steering MAE / RMSE / correlation, statistics and
    plausibility, from its own columns); per pair the absolute errors in drive order (8 bytes
    per frame and model, for the bootstrap), running agreement means and two event galleries:
    ``<a>_vs_<b>_steering`` (largest |prediction difference|) and ``<a>_vs_<b>_attention``
    (lowest Pearson agreement of the main-method maps, ranked by 1 - pearson).
    """

    def __init__(self, labels: Sequence[str], methods: Sequence[str], main_method: str,
                 fps: float, *, event_window_s: float) -> None:
        self.labels = list(labels)
        self.main_method = main_method
        self.fps = fps
        self.event_window_s = event_window_s
        self.models = {label: RunSummary(methods, main_method, fps, off_road=False,
                                         event_window_s=event_window_s) for label in labels}
        self.pairs = pair_names(labels)
        self.errors: dict[str, list[np.ndarray]] = {label: [] for label in labels}
        self.pair_sums: dict[str, list[float]] = {}
        self.galleries: dict[str, EventGallery] = {}
        for a, b in self.pairs:
            self.galleries[f"{a}_vs_{b}_steering"] = EventGallery(
                "abs_pred_diff", None, window_s=event_window_s)
            self.galleries[f"{a}_vs_{b}_attention"] = EventGallery(
                "attention_disagreement", main_method, window_s=event_window_s)
        self._columns: dict[str, dict[str, str]] | None = None

    @property
    def accumulator(self) -> Any:
        """The first model's running sums (its ``count`` is the frames compared)."""
        return self.models[self.labels[0]].accumulator

    def skip(self, row: int, frame: int, reason: str) -> None:
        for summary in self.models.values():
            summary.skip(row, frame, reason)

    def mask_problem(self, text: str) -> None:
        for summary in self.models.values():
            summary.mask_problem(text)

    def model_table(self, table: pd.DataFrame, label: str) -> pd.DataFrame:
        """Model ``label``'s rows as replay's table names them."""
        if self._columns is None:
            self._columns = model_columns(list(table.columns), self.labels)
        own = self._columns[label]
        shared = [c for c in SHARED_COLUMNS if c in table]
        return table[shared + list(own)].rename(columns=own)

    def add(self, table: pd.DataFrame, positions: Sequence[int],
            pictures: Callable[[int], Any] | None = None) -> None:
        """Add a chunk of compare rows (module docstring's columns)."""
        for label, summary in self.models.items():
            part = self.model_table(table, label)
            summary.accumulator.add(part)
            self.errors[label].append(part["abs_error"].to_numpy(np.float64))
        keys = {}
        for a, b in self.pairs:
            prefix = f"{a}_vs_{b}"
            diff = table[f"{prefix}_pred_diff"].to_numpy(np.float64)
            keys[f"{prefix}_steering"] = np.abs(diff)
            keys[f"{prefix}_attention"] = 1.0 - table[
                f"{prefix}_{self.main_method}_pearson"].to_numpy(np.float64)
            for statistic in ("pred_diff", *(f"{self.main_method}_{s}"
                                             for s in AGREEMENT_STATISTICS)):
                values = table[f"{prefix}_{statistic}"].to_numpy(np.float64)
                if statistic == "pred_diff":
                    values = np.abs(values)
                finite = values[np.isfinite(values)]
                sums = self.pair_sums.setdefault(f"{prefix}:{statistic}", [0.0, 0.0])
                sums[0] += float(finite.sum())
                sums[1] += len(finite)

        def entry_of(k: int, position: int) -> dict[str, Any]:
            entry = {"frame": int(table["frame"].iat[k]), "row": int(table["row"].iat[k]),
                     "position": position, "t": float(table["t"].iat[k]),
                     "steer_true": _finite_or_none(float(table["steer_true"].iat[k])),
                     "steer_pred": {label: float(table[f"{label}_steer_pred"].iat[k])
                                    for label in self.labels}}
            if pictures is not None:
                entry["pictures"] = pictures(k)
            return entry

        for k, position in enumerate(positions):
            make_entry = functools.cache(functools.partial(entry_of, k, position))
            for name, gallery in self.galleries.items():
                gallery.offer(position / self.fps, float(keys[name][k]), position, make_entry)

    def worst(self) -> dict[str, list[dict[str, Any]]]:
        """Each pair's disagreement events, worst first (after the last ``add``)."""
        return {name: gallery.worst() for name, gallery in self.galleries.items()}

    def build(self, head: dict[str, Any], selected: int, elapsed: float) -> dict[str, Any]:
        """summary.json: ``head``, ``kind: "compare"``, frame counts, ``models`` (each one's
        steering, statistics, empty maps and warnings), ``pairs``, skipped frames, timing."""
        models = {}
        for label, summary in self.models.items():
            common = summary.build({}, selected, elapsed)
            models[label] = {**common["steering"], "statistics": common["statistics"],
                             "empty_maps": common["empty_maps"],
                             "warnings": common["warnings"],
                             "model_ms": summary.accumulator.mean("model_ms")}
        first = self.models[self.labels[0]].build({}, selected, elapsed)
        block = max(1, round(BOOTSTRAP_BLOCK_S * self.fps))
        worst = self.worst()
        pairs = {}
        for a, b in self.pairs:
            prefix = f"{a}_vs_{b}"
            error_a = np.concatenate(self.errors[a])
            error_b = np.concatenate(self.errors[b])
            both = np.isfinite(error_a) & np.isfinite(error_b)
            value, low, high = mae_difference_interval(error_a, error_b, block)

            def mean(statistic: str, prefix: str = prefix) -> float | None:
                total, count = self.pair_sums[f"{prefix}:{statistic}"]
                return _finite_or_none(total / count) if count else None

            pairs[prefix] = {
                "a": a, "b": b, "frames": int(both.sum()),
                "share_a_better": float((error_a[both] < error_b[both]).mean())
                if both.any() else None,
                "mae_difference": {"value": _finite_or_none(value), "low": _finite_or_none(low),
                                   "high": _finite_or_none(high), "block_frames": block,
                                   "confidence": 0.95},
                "mean_abs_pred_diff": mean("pred_diff"),
                "agreement": {"method": self.main_method,
                              **{s: mean(f"{self.main_method}_{s}")
                                 for s in AGREEMENT_STATISTICS}},
                "events": {"steering": [_brief(e) for e in worst[f"{prefix}_steering"]],
                           "attention": [_brief(e) for e in worst[f"{prefix}_attention"]]},
            }
        return {**head, "kind": "compare", "frames": first["frames"], "models": models,
                "pairs": pairs, "event_window_s": self.event_window_s,
                "skipped": first["skipped"], "timing": {
                    "seconds": elapsed, "frames_per_second": first["timing"]["frames_per_second"],
                    **{c: self.accumulator.mean(c) for c in ("decode_ms", "render_ms",
                                                             "encode_ms")}}}


def _brief(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in ("frame", "row", "t", "steer_true", "steer_pred",
                                        "statistic", "method", "value")}


class CompareThumbnails:
    """Gallery pictures -> data URIs: every model's main-method heat over the camera frame,
    through its own contract (320 px wide)."""

    def __init__(self, contenders: Sequence[Contender]) -> None:
        self.contracts = {c.label: c.contract for c in contenders}

    def __call__(self, entry: dict[str, Any]) -> dict[str, Any]:
        values = {key: value for key, value in entry.items() if key != "pictures"}
        if "pictures" not in entry:
            return {**values, "maps": {}}
        frame_rgb, heat = entry["pictures"]
        height, width = frame_rgb.shape[:2]
        size = (320, max(2, round(320 * height / width)))
        return {**values, "maps": {
            label: jpeg_data_uri(heat_on_frame(frame_rgb, heat[label], contract, size)[0])
            for label, contract in self.contracts.items()}}


def analyse_compare(analyzers: dict[str, FrameAnalyzer], pairs: ComparePairs, drive: Drive,
                    batch: Batch) -> Batch:
    """Stage 2 for several models: each model's ``analyse_batch`` on its own inputs, the
    tables joined with prefixed columns and the pair columns; ``batch.heat`` becomes
    label -> main-method display heat (N, H, W) of that model."""
    tables, heat, maps, predictions = {}, {}, {}, {}
    views = [(batch.inputs, batch.masks), *batch.views]
    for (label, analyzer), (inputs, masks) in zip(analyzers.items(), views, strict=True):
        single = Batch(positions=batch.positions, rows=batch.rows, frames_rgb=batch.frames_rgb,
                       masks=masks, decode_ms=batch.decode_ms, inputs=inputs)
        analyse_batch(analyzer, drive, single)
        tables[label] = single.table
        heat[label] = single.heat[pairs.method]
        maps[label] = single.maps[pairs.method]
        predictions[label] = single.table["steer_pred"].to_numpy(np.float64)
    first = next(iter(tables.values()))
    columns: dict[str, Any] = {c: first[c] for c in SHARED_COLUMNS}
    for label, table in tables.items():
        columns.update({f"{label}_{c}": table[c] for c in table.columns
                        if c not in SHARED_COLUMNS})
    columns.update(pairs.columns(predictions, maps))
    batch.table = pd.DataFrame(columns)
    batch.heat = heat
    return batch


def render_compare(renderer: OverlayRenderer, labels: Sequence[str], batch: Batch,
                   video: bool) -> Any:
    """Stage 3 for several models: the compare layout's frames; sets ``render_ms``."""
    table = batch.table
    render_ms = np.zeros(len(table))
    predictions = [table[f"{label}_steer_pred"].tolist() for label in labels]
    true, frame, t = (table[c].tolist() for c in ("steer_true", "frame", "t"))
    for k in range(len(table) if video else 0):
        tick = time.perf_counter()
        picture = renderer.draw_compare(
            batch.frames_rgb[k], [batch.heat[label][k] for label in labels],
            [p[k] for p in predictions], true[k], frame[k], t[k], position=batch.positions[k])
        render_ms[k] = (time.perf_counter() - tick) * 1000
        yield picture
    table["render_ms"] = render_ms


def compare(recording_path: str | Path, model_paths: Sequence[str | Path], out: str | Path,
            options: ReplayOptions | None = None,
            labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Compare 2 to 4 models on a recording (module docstring); returns the summary.

    Labels, every model (load, fit to its contract and to the camera frame), the recording,
    camera, range and the RUN folder are checked before any frame is processed; a refused or
    failed run leaves no output behind.
    """
    options = options or ReplayOptions()
    labels = check_labels(model_paths, labels)
    drive = select_rows(recording_path, options)
    spec = drive.rec.meta.camera(drive.camera)
    frame_hw = (spec.height, spec.width)
    contenders = load_contenders(model_paths, labels, frame_hw, options.unsafe_model)
    main = options.main_method
    pairs = ComparePairs(contenders, main, frame_hw)
    summary = CompareSummary(labels, options.methods, main, drive.fps,
                             event_window_s=options.event_window_s)
    from drive_viz.report.html import write_compare_report

    with RunWriter(out, summary, contenders[0].contract, overwrite=options.overwrite,
                   video_fps=drive.fps if options.video else None,
                   video_size=options.video_size, video_qp=quality_qp(options.video_quality),
                   embed_video=options.video and options.embed_video,
                   thumbnails=CompareThumbnails(contenders),
                   report=write_compare_report) as writer:
        # The compare layout shows no activation grid: no model tiles one.
        analyzers = {c.label: FrameAnalyzer(c.model, options.methods, options.target,
                                            with_video=False,
                                            batch_size=options.batch_size, contract=c.contract,
                                            gradcam_layer=options.gradcam_layer)
                     for c in contenders}
        renderer = OverlayRenderer(
            main, options.methods, contract=contenders[0].contract,
            timeline=Timeline(drive.steering[drive.rows], series=len(contenders)),
            title=f"{drive.rec.path.name} / {drive.camera}", size=options.video_size,
            panels=[(c.label, c.contract) for c in contenders])
        decode = decode_stage(drive, summary, contenders[0].contract, options.batch_size,
                              others=[c.contract for c in contenders[1:]])

        def render(batch: Batch, emit: Any) -> None:
            for picture in render_compare(renderer, labels, batch, options.video):
                emit(picture)
            emit(batch)

        def warm_up() -> None:
            for analyzer in analyzers.values():
                analyzer.warm_up()

        started = time.perf_counter()
        progress = progress_bar(len(drive.rows), options.progress, "compare")
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            run_stages(decode, functools.partial(analyse_compare, analyzers, pairs, drive),
                       render, _CompareOutput(writer, progress, options.video), warm_up=warm_up)
        finally:
            cv2.setNumThreads(opencv_threads)
            progress.close()
        elapsed = time.perf_counter() - started
        if summary.accumulator.count == 0:
            raise DriveVizError(f"{drive.rec.path}: every selected frame was unreadable; "
                                "nothing to compare")
        return writer.publish(_head(drive, contenders, options), len(drive.rows), elapsed,
                              {"video": video_entry(drive, summary, options) if options.video
                               else None})


class _CompareOutput(OutputStage):
    """Replay's output stage; a batch's gallery pictures are the camera frame and every
    model's main-method heat."""

    def pictures(self, batch: Batch) -> Callable[[int], Any]:
        def of(k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return batch.frames_rgb[k], {label: heat[k].copy()
                                         for label, heat in batch.heat.items()}

        return of


def _head(drive: Drive, contenders: Sequence[Contender], options: ReplayOptions
          ) -> dict[str, Any]:
    """Replay's head, with the models by label instead of one model."""
    head = run_head(drive, contenders[0].path, options)
    head.pop("model")
    return {**head, "labels": [c.label for c in contenders],
            "model_files": {c.label: str(c.path) for c in contenders},
            "contracts": {c.label: c.contract.to_json() for c in contenders}}


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz compare`` command."""
    options = ReplayOptions(
        methods=args.methods, layout=args.layout, start=args.start, end=args.end,
        stride=args.stride, camera=args.camera, video=not args.no_video, target=args.target,
        gradcam_layer=args.gradcam_layer, batch_size=args.batch_size, overwrite=args.overwrite,
        progress=not args.quiet, unsafe_model=args.unsafe_model,
        event_window_s=args.event_window, video_size=args.video_size,
        video_quality=args.video_quality, embed_video=args.embed_video)
    labels = None if args.labels is None else [s.strip() for s in args.labels.split(",")]
    summary = compare(args.recording, args.model, args.out, options, labels)
    out = Path(args.out)
    print(f"compared {len(summary['models'])} models on {summary['frames']['replayed']} frames "
          f"({summary['frames']['skipped']} skipped)")
    for label, model in summary["models"].items():
        mae = model["mae"]
        print(f"  {label}: MAE {mae:.4f}" if mae is not None else f"  {label}: MAE n/a")
    for name, pair in summary["pairs"].items():
        diff = pair["mae_difference"]
        if diff["value"] is not None and math.isfinite(diff["value"]):
            print(f"  {name}: MAE difference {diff['value']:+.4f} "
                  f"[{diff['low']:+.4f}, {diff['high']:+.4f}] (95%)")
    if summary["video"]:
        print(f"video:  {out / 'annotated.mp4'}")
    print(f"report: {out / 'report.html'}")
    return 0
