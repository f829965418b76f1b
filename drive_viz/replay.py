"""``drive-viz replay``: run a recording through the model and the attention engine.

Four stages overlap in threads joined by bounded queues (OpenCV, TensorFlow and PyAV release
the GIL), so memory stays flat however long the drive is:

1. decode: JPEG -> RGB -> network input (and the mask in the network's view), in batches,
   ``DECODE_WORKERS`` batches at a time, in threads of lower priority (``DECODE_NICENESS``);
2. model + attention (the calling thread): prediction, raw maps, conv1 activations,
   statistics, display heat (``RunningScale``) and the activation grid;
3. render: the annotated frame;
4. write: the H.264 video (``ENCODER_THREADS``), and the per-frame table rows.

Outputs in RUN (each written to a ``*.partial`` name and renamed when complete, the video
last): ``frames.parquet``, ``frames.csv``, ``summary.json``, ``report.html``, ``annotated.mp4``.
A frame whose image is missing or corrupt is skipped, counted and listed in the summary.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import math
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drive_viz.analysis import (
    ACTIVATION_COLUMNS,
    DEFAULT_METHODS,
    AnalysisBatch,
    FrameAnalyzer,
    check_methods,
)
from drive_viz.errors import DriveVizError, FrameError
from drive_viz.model.contract import InputContract
from drive_viz.model.plausibility import print_warnings
from drive_viz.model.preprocess import (
    input_to_rgb,
    preprocess_batch,
    preprocess_mask,
)
from drive_viz.render.colormap import DEFAULT_OPACITY, blend_heat
from drive_viz.render.overlay import FRAME_SIZE, OverlayRenderer, Timeline, heat_on_frame
from drive_viz.run_folder import RunFolder

__all__ = ["ACTIVATION_COLUMNS", "DEFAULT_METHODS", "OUTPUT_FILES", "ReplayOptions",
           "replay"]

OUTPUT_FILES = ("frames.parquet", "frames.csv", "summary.json", "report.html", "annotated.mp4")
GALLERY_SIZE = 6
MAX_LISTED_SKIPS = 200
QUEUE_BATCHES = 1
#: Batches decoded at the same time (each in its own thread).
DECODE_WORKERS = 2
QUEUE_FRAMES = 8
#: Rows written to the tables at a time.
TABLE_CHUNK_ROWS = 256
#: Niceness added to the decode threads (see ``_yield_to_later_stages``).
DECODE_NICENESS = 10
TIMING_COLUMNS = ("decode_ms", "model_ms", "render_ms", "encode_ms")
#: libx264 threads for the video. The other stages already keep the cores busy: x264's own
#: choice (3 frame threads on 2 cores) cost 6.0 ms CPU per 1280x720 frame against 4.7 ms for
#: one thread (CRF), and 2 threads at the constant quantizer cost the same CPU as one but gave
#: no end-to-end gain in an interleaved A/B (4 runs each, 1,000 frames).
ENCODER_THREADS = 1


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay: rows ``start`` to ``end`` (exclusive; None = last) every ``stride``-th,
    from ``camera`` (None = the first camera)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    layout: str | None = None
    start: int = 0
    end: int | None = None
    stride: int = 1
    camera: str | None = None
    video: bool = True
    target: str = "steer"
    gradcam_layer: str | None = None
    batch_size: int = 32
    overwrite: bool = False
    progress: bool = True
    unsafe_model: bool = False

    @property
    def main_method(self) -> str:
        return self.layout or self.methods[0]


@dataclass
class _Batch:
    positions: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    frames_rgb: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    inputs: np.ndarray | None = None
    table: pd.DataFrame | None = None
    heat: dict[str, np.ndarray] = field(default_factory=dict)
    grids: np.ndarray | None = None


class _Stop(Exception):
    """Raised inside a stage when another stage failed."""


class _Pipeline:
    """Threads with bounded queues; the first error stops every stage and is re-raised."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.fail(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def put(self, box: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, box: queue.Queue) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return box.get(timeout=0.1)
            except queue.Empty:
                continue

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


class _Accumulator:
    """Running sums for the summary (no per-frame arrays are kept)."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: Counter[str] = Counter()
        self.column_sums: dict[str, float] = {}
        self.column_counts: dict[str, int] = {}

    def add(self, table: pd.DataFrame) -> None:
        true = table["steer_true"].to_numpy(np.float64)
        pred = table["steer_pred"].to_numpy(np.float64)
        self.count += len(table)
        self.sums.update({"abs": float(np.abs(pred - true).sum()),
                          "sq": float(((pred - true) ** 2).sum()),
                          "x": float(true.sum()), "y": float(pred.sum()),
                          "xx": float((true * true).sum()), "yy": float((pred * pred).sum()),
                          "xy": float((true * pred).sum())})
        for column in table.columns:
            if not pd.api.types.is_numeric_dtype(table[column]):
                continue
            values = table[column].to_numpy(np.float64)
            finite = np.isfinite(values)
            self.column_sums[column] = self.column_sums.get(column, 0.0) + float(
                values[finite].sum())
            self.column_counts[column] = self.column_counts.get(column, 0) + int(finite.sum())

    def mean(self, column: str) -> float | None:
        count = self.column_counts.get(column, 0)
        return self.column_sums[column] / count if count else None

    def steering(self) -> dict[str, float | None]:
        n = self.count
        if n == 0:
            return {"mae": None, "rmse": None, "correlation": None}
        s = self.sums
        cov = s["xy"] / n - (s["x"] / n) * (s["y"] / n)
        var_true = s["xx"] / n - (s["x"] / n) ** 2
        var_pred = s["yy"] / n - (s["y"] / n) ** 2
        corr = cov / math.sqrt(var_true * var_pred) if var_true > 1e-12 and var_pred > 1e-12 \
            else None
        return {"mae": s["abs"] / n, "rmse": math.sqrt(s["sq"] / n),
                "correlation": None if corr is None else max(-1.0, min(1.0, corr))}


class _Gallery:
    """The ``size`` frames with the largest key (entries from ``_gallery_entry``)."""

    def __init__(self, size: int = GALLERY_SIZE) -> None:
        self.size = size
        self._heap: list[tuple[float, int, dict[str, Any]]] = []

    def wants(self, key: float) -> bool:
        return math.isfinite(key) and (len(self._heap) < self.size or key > self._heap[0][0])

    def add(self, key: float, position: int, entry: dict[str, Any]) -> None:
        item = (key, position, entry)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, item)
        else:
            heapq.heappushpop(self._heap, item)

    def worst(self) -> list[dict[str, Any]]:
        return [entry for _, _, entry in sorted(self._heap, key=lambda item: -item[0])]


def _jpeg_data_uri(rgb: np.ndarray, quality: int = 80) -> str:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("thumbnail JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def replay(recording_path: str | Path, model_path: str | Path, out: str | Path,
           options: ReplayOptions = ReplayOptions()) -> dict[str, Any]:
    """Replay a recording through a model (see the module docstring); returns the summary.

    Everything that can be refused (recording, model, methods, camera, range, RUN folder) is
    checked before any frame is processed.
    """
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.recording.reader import open_recording

    rec = open_recording(recording_path)
    camera = options.camera or rec.cameras[0]
    rec.meta.camera(camera)
    check_methods(options.methods, options.main_method, options.target)
    if options.stride < 1 or options.batch_size < 1:
        raise DriveVizError("--stride and --batch-size must be at least 1")
    end = len(rec) if options.end is None else min(options.end, len(rec))
    positions_rows = list(range(max(options.start, 0), end, options.stride))
    if not positions_rows:
        raise DriveVizError(f"{rec.path}: no frames in rows {options.start}..{end} "
                            f"(the recording has {len(rec)} rows)")
    model = load_steering_model(model_path, unsafe=options.unsafe_model)
    prep = model_contract(model_path)
    outputs = RunFolder(Path(out), OUTPUT_FILES, options.overwrite)

    analyzer = FrameAnalyzer(model, options.methods, options.target, with_video=options.video,
                             batch_size=options.batch_size, contract=prep,
                             gradcam_layer=options.gradcam_layer)
    fps = rec.fps / options.stride
    steering = rec.steering()
    frame_numbers = rec.table["frame"].to_numpy(np.int64)
    times = rec.table["t"].to_numpy(np.float64)
    with_masks = rec.has_masks(camera)
    timeline = Timeline(steering[positions_rows])
    skipped: list[dict[str, Any]] = []
    skip_reasons: Counter[str] = Counter()
    mask_problems: list[str] = []
    accumulator = _Accumulator()
    by_error, off_road = _Gallery(), _Gallery()
    pipeline = _Pipeline()
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    analysed: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    rendered: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    started = time.perf_counter()

    def decode_batch(chunk: list[tuple[int, int]]) -> tuple[_Batch, list[tuple[int, str]],
                                                            list[str]]:
        """Decode the (position, row) frames of ``chunk``: their batch, the skipped (row,
        error) and the mask problems, merged by ``decode`` in drive order."""
        batch = _Batch()
        skips: list[tuple[int, str]] = []
        problems: list[str] = []
        for position, row in chunk:
            tick = time.perf_counter()
            try:
                rgb = rec.image(row, camera)
            except FrameError as exc:
                skips.append((row, str(exc)))
                continue
            mask = None
            if with_masks:
                try:
                    raw = rec.mask(row, camera)
                    mask = None if raw is None else preprocess_mask(raw, prep)
                except FrameError as exc:
                    problems.append(str(exc))
            batch.positions.append(position)
            batch.rows.append(row)
            batch.frames_rgb.append(rgb)
            batch.masks.append(mask)
            batch.decode_ms.append((time.perf_counter() - tick) * 1000)
        if batch.rows:
            _finish_inputs(batch, prep)
        return batch, skips, problems

    def decode() -> None:
        pairs = list(enumerate(positions_rows))
        chunks = [pairs[k:k + options.batch_size]
                  for k in range(0, len(pairs), options.batch_size)]
        pending: deque[Future] = deque()

        def hand_on() -> None:
            batch, skips, problems = pending.popleft().result()
            for row, error in skips:
                skip_reasons[error.split(": ", 1)[-1]] += 1
                if len(skipped) < MAX_LISTED_SKIPS:
                    skipped.append({"row": row, "frame": int(frame_numbers[row]),
                                    "reason": error})
            mask_problems.extend(problems[:MAX_LISTED_SKIPS - len(mask_problems)])
            if batch.rows:
                pipeline.put(decoded, batch)

        # JPEG/PNG decoding releases the GIL: DECODE_WORKERS batches decode side by side.
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="replay-decode",
                                initializer=_yield_to_later_stages) as pool:
            for chunk in chunks:
                if len(pending) == DECODE_WORKERS:
                    hand_on()
                pending.append(pool.submit(decode_batch, chunk))
            while pending:
                hand_on()
        pipeline.put(decoded, None)

    def analyse(batch: _Batch) -> _Batch:
        analysis: AnalysisBatch = analyzer.analyse(batch.inputs, steering[batch.rows],
                                                   batch.masks)
        n = len(batch.rows)
        columns: dict[str, Any] = {
            "frame": frame_numbers[batch.rows], "row": np.asarray(batch.rows, np.int64),
            "t": times[batch.rows], "target": np.full(n, str(analyzer.engine.target)),
            **analysis.columns,
            "decode_ms": np.asarray(batch.decode_ms), "model_ms": np.full(n, analysis.model_ms)}
        batch.heat = analysis.heat
        batch.grids = analysis.grids
        batch.table = pd.DataFrame(columns)
        _collect_gallery(batch, options, by_error, off_road)
        return batch

    def render() -> None:
        renderer = OverlayRenderer(options.main_method, options.methods, contract=prep,
                                   timeline=timeline, title=f"{rec.path.name} / {camera}")
        while (batch := pipeline.get(analysed)) is not None:
            table = batch.table
            render_ms = np.zeros(len(table))
            true, pred, frame, t = (table[column].tolist()
                                    for column in ("steer_true", "steer_pred", "frame", "t"))
            for k in range(len(table) if options.video else 0):
                tick = time.perf_counter()
                picture = renderer.draw(
                    batch.frames_rgb[k], batch.inputs[k],
                    {m: batch.heat[m][k] for m in options.methods}, batch.grids[k],
                    true[k], pred[k], frame[k], t[k], position=batch.positions[k])
                render_ms[k] = (time.perf_counter() - tick) * 1000
                pipeline.put(rendered, picture)
            table["render_ms"] = render_ms
            pipeline.put(rendered, table)  # after its frames: the writer fills encode_ms
        pipeline.put(rendered, None)

    def write() -> None:
        writer = _VideoSink(outputs.partial("annotated.mp4"), fps) if options.video else None
        table_sink = _TableSink(outputs.partial("frames.parquet"), outputs.partial("frames.csv"))
        progress = _progress_bar(len(positions_rows), options.progress)
        encode_ms: list[float] = []
        try:
            while (item := pipeline.get(rendered)) is not None:
                if isinstance(item, pd.DataFrame):
                    item["encode_ms"] = encode_ms if writer is not None else 0.0
                    encode_ms = []
                    table_sink.append(item)
                    accumulator.add(item)
                    if writer is None:
                        progress.update(len(item))
                    continue
                tick = time.perf_counter()
                writer.write(item)
                encode_ms.append((time.perf_counter() - tick) * 1000)
                progress.update(1)
            table_sink.finish()
        finally:
            progress.close()
            if writer is not None:
                writer.close()
            table_sink.close()

    success = False
    # The stages already keep the cores busy side by side; OpenCV's own worker pool would only
    # add hand-offs and spinning (800 frames: ~0.5 ms CPU per frame more). Restored at the end.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        pipeline.spawn(decode, "replay-decode")
        pipeline.spawn(render, "replay-render")
        pipeline.spawn(write, "replay-write")
        try:
            analyzer.warm_up()  # traced while the first batches decode
            while (batch := pipeline.get(decoded)) is not None:
                pipeline.put(analysed, analyse(batch))
            pipeline.put(analysed, None)
        except _Stop:
            pass
        except BaseException as exc:
            pipeline.fail(exc)
        pipeline.join()
        if pipeline.error is not None:
            raise pipeline.error
        elapsed = time.perf_counter() - started
        if accumulator.count == 0:
            raise DriveVizError(f"{rec.path}: every selected frame was unreadable "
                                f"({sum(skip_reasons.values())} skipped); nothing to replay")
        summary = _summary(rec, camera, model_path, options, end, positions_rows, accumulator,
                           skipped, skip_reasons, mask_problems, by_error, off_road, elapsed,
                           fps, with_masks)
        from drive_viz.model.plausibility import plausibility_warnings
        from drive_viz.report.html import write_report

        table = pd.read_parquet(outputs.partial("frames.parquet"))
        summary["warnings"] = plausibility_warnings(table["steer_pred"], table["steer_true"])

        galleries = {name: [_with_thumbnails(entry, options, prep) for entry in gallery.worst()]
                     for name, gallery in (("by_error", by_error), ("off_road", off_road))}
        outputs.partial("summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False),
                                                   encoding="utf-8")
        write_report(outputs.partial("report.html"), summary, table, galleries)
        tables_and_report = [name for name in OUTPUT_FILES if name != "annotated.mp4"]
        outputs.commit(*tables_and_report, *(["annotated.mp4"] if options.video else []))
        success = True
        return summary
    except BaseException:
        pipeline.stop.set()
        pipeline.join()
        raise
    finally:
        cv2.setNumThreads(opencv_threads)
        if not success:
            outputs.discard()


def _yield_to_later_stages() -> None:
    """Lower the calling decode thread's priority (Linux: niceness is per thread), so the
    later stages run first and decoding fills the idle time: frames then wait upstream, not
    downstream of the model, and the run does not end with a long encode-only tail."""
    if sys.platform == "linux" and DECODE_NICENESS:
        thread = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, thread,
                           os.getpriority(os.PRIO_PROCESS, thread) + DECODE_NICENESS)
        except OSError:
            pass  # a sandbox that forbids it: the run is only slower


def _finish_inputs(batch: _Batch, prep: InputContract) -> None:
    batch.inputs = preprocess_batch(batch.frames_rgb, prep)


def _collect_gallery(batch: _Batch, options: ReplayOptions, by_error: _Gallery,
                     off_road: _Gallery) -> None:
    """Offer each frame to the two worst-frame galleries (thumbnails are drawn at the end,
    by ``_with_thumbnails``, for the frames still in them: most candidates are pushed out)."""
    table = batch.table
    road = table.get(f"{options.main_method}_road_share")
    abs_error = table["abs_error"].tolist()
    off_road_share = None if road is None else (1.0 - road.to_numpy(np.float64)).tolist()
    for k in range(len(table)):
        keys = [(by_error, abs_error[k])]
        if off_road_share is not None:
            keys.append((off_road, off_road_share[k]))
        entry = None
        for gallery, key in keys:
            if gallery.wants(key):
                if entry is None:
                    entry = _gallery_entry(batch, k, options)
                gallery.add(key, batch.positions[k], entry)


def _gallery_entry(batch: _Batch, k: int, options: ReplayOptions) -> dict[str, Any]:
    """Frame ``k``'s table values, and under ``pictures`` what its thumbnails are drawn from:
    the camera frame, the network input and each method's display heat (copied out of the
    batch arrays, so an entry keeps only its own frame alive)."""
    table = batch.table
    road = table.get(f"{options.main_method}_road_share")
    return {
        "frame": int(table["frame"].iat[k]), "row": int(table["row"].iat[k]),
        "position": batch.positions[k],
        "t": float(table["t"].iat[k]), "steer_true": float(table["steer_true"].iat[k]),
        "steer_pred": float(table["steer_pred"].iat[k]),
        "abs_error": float(table["abs_error"].iat[k]),
        "off_road_share": None if road is None or not np.isfinite(road.iat[k])
        else 1.0 - float(road.iat[k]),
        "pictures": (batch.frames_rgb[k], batch.inputs[k].copy(),
                     {m: batch.heat[m][k].copy() for m in options.methods}),
    }


def _with_thumbnails(entry: dict[str, Any], options: ReplayOptions,
                     prep: InputContract) -> dict[str, Any]:
    """A gallery entry for the report: ``pictures`` replaced by JPEG data URIs, ``camera``
    (320 px wide, the main method's heat over the crop box) and ``maps`` (each method's heat
    on the input view)."""
    frame_rgb, input_yuv, heat = entry["pictures"]
    height, width = frame_rgb.shape[:2]
    size = (320, max(2, round(320 * height / width)))
    camera_view, _ = heat_on_frame(frame_rgb, heat[options.main_method], prep, size)
    view = input_to_rgb(input_yuv, prep)
    values = {key: value for key, value in entry.items() if key != "pictures"}
    return {**values, "camera": _jpeg_data_uri(camera_view),
            "maps": {m: _jpeg_data_uri(blend_heat(view, heat[m], DEFAULT_OPACITY))
                     for m in options.methods}}


class _VideoSink:
    """The H.264 writer at the renderer's frame size."""

    def __init__(self, path: Path, fps: float) -> None:
        from drive_viz.render.video import H264Writer

        self._writer = H264Writer(path, fps, FRAME_SIZE, threads=ENCODER_THREADS)
        self._closed = False

    def write(self, picture: np.ndarray) -> None:
        self._writer.write(picture)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


class _TableSink:
    """Appends the per-frame rows to the parquet file and the CSV file, ``TABLE_CHUNK_ROWS``
    rows at a time (one parquet row group each; fewer, larger writes cost half the CPU of one
    per batch)."""

    def __init__(self, parquet_path: Path, csv_path: Path) -> None:
        self.parquet_path = parquet_path
        self._csv = open(csv_path, "w", encoding="utf-8", newline="")
        self._parquet: Any = None
        self._schema: Any = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def append(self, table: pd.DataFrame) -> None:
        self._pending.append(table)
        self._pending_rows += len(table)
        if self._pending_rows >= TABLE_CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pd.concat(self._pending, ignore_index=True)
        self._pending, self._pending_rows = [], 0
        if self._parquet is None:
            self._schema = pa.Schema.from_pandas(table, preserve_index=False)
            self._parquet = pq.ParquetWriter(self.parquet_path, self._schema)
        self._parquet.write_table(pa.Table.from_pandas(table, schema=self._schema,
                                                       preserve_index=False))
        table.to_csv(self._csv, header=self._csv.tell() == 0, index=False,
                     float_format="%.6g", lineterminator="\n")

    def finish(self) -> None:
        """Write the rows still pending and close both files."""
        self._flush()
        self.close()

    def close(self) -> None:
        """Close both files (rows still pending are dropped: the run failed)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if not self._csv.closed:
            self._csv.close()


class _NoProgress:
    def update(self, count: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="replay", smoothing=0.1)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _summary(rec: Any, camera: str, model_path: str | Path, options: ReplayOptions, end: int,
             positions_rows: list[int], accumulator: _Accumulator,
             skipped: list[dict[str, Any]], skip_reasons: Counter[str],
             mask_problems: list[str], by_error: _Gallery, off_road: _Gallery,
             elapsed: float, fps: float, with_masks: bool) -> dict[str, Any]:
    from drive_viz.attention.stats import MAP_STATISTICS
    from drive_viz.attention.targets import parse_target

    def brief(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = ("frame", "row", "t", "steer_true", "steer_pred", "abs_error", "off_road_share")
        return [{k: entry[k] for k in keys} for entry in entries]

    statistics = {method: {stat: _finite_or_none(accumulator.mean(f"{method}_{stat}"))
                           for stat in MAP_STATISTICS} for method in options.methods}
    activations = {column: _finite_or_none(accumulator.mean(column))
                   for column in accumulator.column_sums if column.startswith(ACTIVATION_COLUMNS)}
    replayed = accumulator.count
    parameters = asdict(options)
    parameters.update(methods=list(options.methods), layout=options.main_method, end=end,
                      camera=camera)
    parameters.pop("progress")
    return {
        "recording": str(rec.path), "source": rec.source, "model": str(model_path),
        "target": str(parse_target(options.target)), "parameters": parameters,
        "frames": {"selected": len(positions_rows), "replayed": replayed,
                   "skipped": sum(skip_reasons.values())},
        "steering": accumulator.steering(),
        "statistics": statistics,
        "activations": activations,
        "worst_by_error": brief(by_error.worst()),
        "worst_off_road": brief(off_road.worst()) if with_masks else None,
        "skipped": {"count": sum(skip_reasons.values()), "by_reason": dict(skip_reasons),
                    "frames": skipped, "mask_problems": mask_problems},
        "timing": {"seconds": elapsed, "frames_per_second": replayed / elapsed if elapsed else None,
                   **{column: _finite_or_none(accumulator.mean(column))
                      for column in TIMING_COLUMNS}},
        "video": {"file": "annotated.mp4", "fps": fps, "width": FRAME_SIZE[0],
                  "height": FRAME_SIZE[1], "codec": "h264", "pix_fmt": "yuv420p",
                  "frames": replayed} if options.video else None,
    }


def _parse_methods(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz replay`` command."""
    options = ReplayOptions(
        methods=_parse_methods(args.methods), layout=args.layout, start=args.start,
        end=args.end, stride=args.stride, camera=args.camera, video=not args.no_video,
        target=args.target, gradcam_layer=args.gradcam_layer, batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.quiet, unsafe_model=args.unsafe_model)
    summary = replay(args.recording, args.model, args.out, options)
    _print_result(Path(args.out), summary)
    return 0


def _print_result(out: Path, summary: dict[str, Any]) -> None:
    steering = summary["steering"]
    frames = summary["frames"]
    mae = steering["mae"]
    error = f", MAE {mae:.4f}" if mae is not None else ""
    print(f"replayed {frames['replayed']} frames ({frames['skipped']} skipped){error}")
    if summary["video"]:
        print(f"video:  {out / 'annotated.mp4'}")
    print(f"report: {out / 'report.html'}")
    print_warnings(summary["warnings"])


def run_demo(args: argparse.Namespace) -> int:
    """The ``drive-viz demo`` command: synthesize a drive if needed, replay it, say where.

    Without the shipped model it falls back to an untrained DAVE-2 (seed 0) and says so:
    the pipeline and outputs are the same, the maps just explain a random network.
    """
    import tempfile

    from drive_viz.recording.format import META_FILE, read_meta

    recording = Path(args.recording)
    model = Path(args.model)
    exists = (recording / META_FILE).is_file()
    if not exists or not read_meta(recording).finished:
        from drive_viz.sim.synth import write_synthetic_recording

        # Absent, or left unfinished by an interrupted demo: (re)generate it.
        print(f"generating a synthetic drive of {args.frames} frames into {recording} ...")
        write_synthetic_recording(recording, frames=args.frames, seed=args.seed,
                                  overwrite=exists)
    with tempfile.TemporaryDirectory() as scratch:
        if not model.is_file():
            from drive_viz.model.dave2 import build_dave2

            print(f"warning: {model} is missing (train it with 'drive-viz train'); replaying "
                  "with an UNTRAINED DAVE-2, so the maps show a random network")
            model = Path(scratch) / "dave2_untrained.keras"
            build_dave2(seed=0).save(model)
        options = ReplayOptions(overwrite=True, progress=not args.quiet,
                                unsafe_model=args.unsafe_model)
        summary = replay(recording, model, args.out, options)
    _print_result(Path(args.out), summary)
    return 0
