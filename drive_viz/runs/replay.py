"""``drive-viz replay``: run a recording through the model and the attention engine.

Five stages, each a function here that can be read and tested alone:

1. ``decode_batch``: JPEG -> RGB -> network input (and the mask in the network's view) for a
   batch of rows; an unreadable frame is skipped and reported;
2. ``analyse_batch``: prediction, raw maps, statistics, display heat and the activation grid
   (``FrameAnalyzer``), as the batch's per-frame table; with ``causal_blobs``, then
   ``blob_batch``: the layout map's blobs and which are causal (Kim & Canny 2017,
   ``drive_viz.attention.causal.frame_blobs``), three more columns;
3. ``render_batch``: the annotated frames;
4. ``OutputStage.encode``: the H.264 video (``ENCODER_THREADS``);
5. ``OutputStage.write``: the tables, the summary's running sums and galleries
   (``RunWriter``), which writes summary.json and report.html at the end.

``runs.pipeline.run_stages`` overlaps them in threads with bounded queues (decode in
``DECODE_WORKERS`` threads of lower priority, the model in the calling thread), so memory stays
flat however long the drive is. The run folder's layout is the run writer's (``OUTPUT_FILES``).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drive_viz.analysis import ACTIVATION_COLUMNS, DEFAULT_METHODS, FrameAnalyzer, check_methods
from drive_viz.attention.causal import BLOB_THRESHOLD, Predict, frame_blobs
from drive_viz.errors import DriveVizError, FrameError, OptionError
from drive_viz.model.dave2 import LoadedModel, load_model
from drive_viz.model.plausibility import print_warnings
from drive_viz.model.preprocess import preprocess_batch, preprocess_mask
from drive_viz.render.overlay import FRAME_SIZE, OverlayRenderer, Timeline
from drive_viz.render.video import DEFAULT_QUALITY, check_video_size, quality_qp
from drive_viz.runs.pipeline import ordered_map, run_stages
from drive_viz.runs.summary import EVENT_WINDOW_S, RunSummary
from drive_viz.runs.writer import ENCODER_THREADS, OUTPUT_FILES, RunWriter

__all__ = ["ACTIVATION_COLUMNS", "DEFAULT_METHODS", "ENCODER_THREADS", "OUTPUT_FILES",
           "ReplayOptions", "replay"]

#: Batches decoded at the same time (each in its own thread).
DECODE_WORKERS = 2


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay: rows ``start`` to ``end`` (exclusive; None = last; past the last row:
    up to it, reported in the summary) every ``stride``-th, from ``camera`` (None = the first
    camera). ``methods`` may be given as comma-separated text; it is stored as the tuple of
    names. ``event_window_s``: seconds within which gallery frames join a worse frame's event.
    Bad values raise OptionError naming the field."""

    methods: tuple[str, ...] | str = DEFAULT_METHODS
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
    event_window_s: float = EVENT_WINDOW_S
    #: Video (width, height) in pixels, even; the overlay layout scales to it.
    video_size: tuple[int, int] = FRAME_SIZE
    #: Named x264 quality level (``drive_viz.render.video.QUALITY_QP``).
    video_quality: str = DEFAULT_QUALITY
    #: Put the video inside report.html as a base64 data URI (about 4/3 of the video's size).
    embed_video: bool = False
    #: Find the layout map's blobs and which are causal, per frame (``blob_batch``).
    causal_blobs: bool = False
    #: |delta steer| above which a removed blob counts as causal.
    blob_threshold: float = BLOB_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", check_methods(self.methods, self.layout,
                                                          self.target))
        if self.stride < 1 or self.batch_size < 1:
            raise OptionError("stride and batch_size must be at least 1", "stride",
                              "batch_size")
        check_event_window(self.event_window_s)
        if not (math.isfinite(self.blob_threshold) and self.blob_threshold >= 0):
            raise OptionError(f"blob_threshold {self.blob_threshold} must be a number >= 0",
                              "blob_threshold")
        check_video_size(self.video_size)
        quality_qp(self.video_quality)

    @property
    def main_method(self) -> str:
        return self.layout or self.methods[0]


def check_event_window(seconds: float) -> None:
    """OptionError unless ``seconds`` is a finite number >= 0."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise OptionError(f"event_window_s {seconds} must be a number of seconds >= 0",
                          "event_window_s")


@dataclass(frozen=True)
class Drive:
    """The rows of one camera of a recording that a replay reads: ``rows[k]`` is the table row
    of the k-th replayed position; ``end`` the row it stops before, ``end_requested`` what was
    asked (None: the end); ``fps`` rows per second of drive time after the stride; per table
    row: ``steering`` (recorded), ``frame_numbers`` and ``times`` (seconds)."""

    rec: Any
    camera: str
    rows: list[int]
    end: int
    end_requested: int | None
    fps: float
    with_masks: bool
    steering: np.ndarray
    frame_numbers: np.ndarray
    times: np.ndarray


def select_rows(recording_path: str | Path, options: ReplayOptions) -> Drive:
    """Open the recording and pick the rows to replay; refuses an unknown camera and an empty
    selection (one-line DriveVizError)."""
    from drive_viz.recording.reader import open_recording

    rec = open_recording(recording_path)
    camera = options.camera or rec.cameras[0]
    rec.meta.camera(camera)
    end = len(rec) if options.end is None else min(options.end, len(rec))
    rows = list(range(max(options.start, 0), end, options.stride))
    if not rows:
        raise DriveVizError(f"{rec.path}: no frames in rows {options.start}..{end} "
                            f"(the recording has {len(rec)} rows)")
    return Drive(rec, camera, rows, end, options.end, rec.fps / options.stride,
                 rec.has_masks(camera), rec.steering(), rec.table["frame"].to_numpy(np.int64),
                 rec.table["t"].to_numpy(np.float64))


@dataclass
class Batch:
    """Consecutive replayed frames: their ``positions`` in the run and table ``rows``, camera
    frames RGB uint8 (H, W, 3), masks (66, 200) uint8 in the network's view (or None),
    ``inputs`` (N, 66, 200, 3) float32; after ``analyse_batch`` the per-frame ``table``, display
    ``heat`` method -> (N, 66, 200) float32 and activation ``grids`` (N, h, w), and the raw
    ``maps`` method -> (N, 66, 200) float32; after ``blob_batch``, ``blobs``: per frame its
    blobs as (mask (66, 200) bool, causal). ``views``: for each further contract given to
    ``decode_batch`` (compare), its (inputs, masks) of these frames."""

    positions: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    frames_rgb: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    inputs: np.ndarray | None = None
    table: pd.DataFrame | None = None
    heat: dict[str, np.ndarray] = field(default_factory=dict)
    grids: np.ndarray | None = None
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    views: list[tuple[np.ndarray, list[np.ndarray | None]]] = field(default_factory=list)
    blobs: list[list[tuple[np.ndarray, bool]]] | None = None

    def pictures(self, k: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Frame ``k``'s gallery pictures, copied out of the batch arrays so an entry keeps
        only its own frame alive."""
        return (self.frames_rgb[k], self.inputs[k].copy(),
                {m: heat[k].copy() for m, heat in self.heat.items()})


@dataclass
class Decoded:
    """One decoded batch with the (row, error) of its skipped frames and its mask problems."""

    batch: Batch
    skips: list[tuple[int, str]]
    mask_problems: list[str]


def decode_batch(drive: Drive, prep: Any, chunk: Sequence[tuple[int, int]],
                 others: Sequence[Any] = ()) -> Decoded:
    """Stage 1: decode the (position, row) frames of ``chunk`` and preprocess them with
    ``prep`` (and, into ``batch.views``, with each of the contracts ``others``: every frame is
    decoded once). A frame whose image is missing or corrupt is skipped (listed in
    ``skips``); a bad mask only loses that mask (listed in ``mask_problems``)."""
    batch = Batch()
    skips: list[tuple[int, str]] = []
    problems: list[str] = []
    other_masks: list[list[np.ndarray | None]] = [[] for _ in others]
    for position, row in chunk:
        tick = time.perf_counter()
        try:
            rgb = drive.rec.image(row, drive.camera)
        except FrameError as exc:
            skips.append((row, str(exc)))
            continue
        mask = raw = None
        if drive.with_masks:
            try:
                raw = drive.rec.mask(row, drive.camera)
                mask = None if raw is None else preprocess_mask(raw, prep)
            except FrameError as exc:
                problems.append(str(exc))
        for masks, other in zip(other_masks, others, strict=True):
            masks.append(None if raw is None else preprocess_mask(raw, other))
        batch.positions.append(position)
        batch.rows.append(row)
        batch.frames_rgb.append(rgb)
        batch.masks.append(mask)
        batch.decode_ms.append((time.perf_counter() - tick) * 1000)
    if batch.rows:
        batch.inputs = preprocess_batch(batch.frames_rgb, prep)
        batch.views = [(preprocess_batch(batch.frames_rgb, other), masks)
                       for other, masks in zip(others, other_masks, strict=True)]
    return Decoded(batch, skips, problems)


def decode_stage(drive: Drive, summary: Any, prep: Any, batch_size: int,
                 others: Sequence[Any] = ()) -> Callable[[Callable[[Batch], None]], None]:
    """Stage 1 as the pipeline runs it: ``decode_batch`` over the drive's rows in batches of
    ``batch_size``, ``DECODE_WORKERS`` batches at a time, handing each batch with a frame on
    to ``emit`` in drive order; skipped frames and mask problems go to ``summary``."""
    positions = list(enumerate(drive.rows))
    chunks = [positions[k:k + batch_size] for k in range(0, len(positions), batch_size)]
    decode_one = functools.partial(decode_batch, drive, prep, others=others)

    def decode(emit: Callable[[Batch], None]) -> None:
        for decoded in ordered_map(decode_one, chunks, DECODE_WORKERS):
            for row, error in decoded.skips:
                summary.skip(row, int(drive.frame_numbers[row]), error)
            for problem in decoded.mask_problems:
                summary.mask_problem(problem)
            if decoded.batch.rows:
                emit(decoded.batch)

    return decode


def analyse_batch(analyzer: FrameAnalyzer, drive: Drive, batch: Batch) -> Batch:
    """Stage 2: run the model and attention on ``batch``; sets its ``table`` (``frame``,
    ``row``, ``t``, ``target``, the ``FrameAnalyzer`` columns, ``decode_ms``, ``model_ms``),
    ``heat``, ``grids`` and ``maps``. Batches must arrive in drive order."""
    analysis = analyzer.analyse(batch.inputs, drive.steering[batch.rows], batch.masks)
    n = len(batch.rows)
    batch.table = pd.DataFrame({
        "frame": drive.frame_numbers[batch.rows], "row": np.asarray(batch.rows, np.int64),
        "t": drive.times[batch.rows], "target": np.full(n, str(analyzer.engine.target)),
        **analysis.columns,
        "decode_ms": np.asarray(batch.decode_ms), "model_ms": np.full(n, analysis.model_ms)})
    batch.heat = analysis.heat
    batch.grids = analysis.grids
    batch.maps = analysis.maps
    return batch


def blob_batch(predict: Predict, method: str, threshold: float, batch: Batch,
               seed: int = 0) -> Batch:
    """Stage 2b (``causal_blobs``): ``frame_blobs`` on each frame's raw ``method`` map (the
    layout's), removals seeded by (``seed``, table row) so a replay is reproducible; sets
    ``batch.blobs`` and adds the table columns ``blobs``, ``causal_blobs`` (int) and
    ``causal_mass_share`` (share of the frame's total |map| inside causal blobs, 0 without
    any) and ``blobs_ms`` (this stage's time per frame). The change is measured from the
    frame's ``steer_pred``. Costs one prediction of ``blobs`` frames and one imputation per
    blob, per frame."""
    tick = time.perf_counter()
    found = [frame_blobs(predict, x, saliency, reference, np.random.default_rng((seed, row)),
                         threshold=threshold)
             for x, saliency, reference, row in zip(batch.inputs, batch.maps[method],
                                                    batch.table["steer_pred"].to_numpy(),
                                                    batch.rows, strict=True)]
    batch.blobs = [list(zip(f.masks, f.causal.tolist(), strict=True)) for f in found]
    batch.table["blobs"] = np.array([len(f.masks) for f in found], np.int64)
    batch.table["causal_blobs"] = np.array([int(f.causal.sum()) for f in found], np.int64)
    batch.table["causal_mass_share"] = np.array([f.causal_mass_share for f in found])
    batch.table["blobs_ms"] = (time.perf_counter() - tick) * 1000 / len(found)
    return batch


def render_batch(renderer: OverlayRenderer, batch: Batch, video: bool) -> Iterator[np.ndarray]:
    """Stage 3: yield the annotated frame (FRAME_SIZE RGB uint8) of each frame of ``batch``
    (none without ``video``); sets the table's ``render_ms`` when done."""
    table = batch.table
    render_ms = np.zeros(len(table))
    true, pred, frame, t = (table[column].tolist()
                            for column in ("steer_true", "steer_pred", "frame", "t"))
    for k in range(len(table) if video else 0):
        tick = time.perf_counter()
        picture = renderer.draw(
            batch.frames_rgb[k], batch.inputs[k], {m: heat[k] for m, heat in batch.heat.items()},
            batch.grids[k], true[k], pred[k], frame[k], t[k], position=batch.positions[k],
            blobs=None if batch.blobs is None else batch.blobs[k])
        render_ms[k] = (time.perf_counter() - tick) * 1000
        yield picture
    table["render_ms"] = render_ms


class OutputStage:
    """Stages 4 and 5, in one thread: ``encode`` each annotated frame into the video, then
    ``write`` its batch (``encode_ms`` filled in) to the run writer."""

    def __init__(self, writer: RunWriter, progress: Any, video: bool) -> None:
        self.writer = writer
        self.progress = progress
        self.video = video
        self._encode_ms: list[float] = []

    def encode(self, picture: np.ndarray) -> None:
        self._encode_ms.append(self.writer.write_picture(picture))
        self.progress.update(1)

    def write(self, batch: Batch) -> None:
        batch.table["encode_ms"] = self._encode_ms if self.video else 0.0
        self._encode_ms = []
        self.writer.add_rows(batch.table, batch.positions, self.pictures(batch))
        if not self.video:
            self.progress.update(len(batch.table))

    def pictures(self, batch: Batch) -> Any:
        """What a gallery entry of ``batch``'s frame k keeps: ``pictures(k)``."""
        return batch.pictures

    def __call__(self, item: np.ndarray | Batch) -> None:
        if isinstance(item, Batch):
            self.write(item)
        else:
            self.encode(item)


def replay(recording_path: str | Path, model_path: str | Path | LoadedModel, out: str | Path,
           options: ReplayOptions = ReplayOptions()) -> dict[str, Any]:
    """Replay a recording through a model (see the module docstring); returns the summary.

    ``model_path``: a model file, or a ``LoadedModel`` to reuse one already loaded (a fleet
    worker replays many recordings with one). Everything that can be refused (recording,
    model, camera, range, RUN folder) is checked before any frame is processed; a refused or
    failed run leaves no output behind.
    """
    drive = select_rows(recording_path, options)
    loaded = model_path if isinstance(model_path, LoadedModel) \
        else load_model(model_path, unsafe=options.unsafe_model)
    model, prep = loaded.model, loaded.contract
    summary = RunSummary(options.methods, options.main_method, drive.fps,
                         off_road=drive.with_masks, event_window_s=options.event_window_s)
    with RunWriter(out, summary, prep, overwrite=options.overwrite,
                   video_fps=drive.fps if options.video else None,
                   video_size=options.video_size, video_qp=quality_qp(options.video_quality),
                   embed_video=options.video and options.embed_video) as writer:
        analyzer = FrameAnalyzer(model, options.methods, options.target,
                                 with_video=options.video, batch_size=options.batch_size,
                                 contract=prep, gradcam_layer=options.gradcam_layer,
                                 engines=loaded.engines)
        renderer = OverlayRenderer(options.main_method, options.methods, contract=prep,
                                   timeline=Timeline(drive.steering[drive.rows]),
                                   title=f"{drive.rec.path.name} / {drive.camera}",
                                   size=options.video_size)
        decode = decode_stage(drive, summary, prep, options.batch_size)
        blobs = None
        if options.causal_blobs:
            from drive_viz.attention.network import steering_predictor

            blobs = functools.partial(blob_batch, steering_predictor(model, prep),
                                      options.main_method, options.blob_threshold)

        def analyse(batch: Batch) -> Batch:
            analyse_batch(analyzer, drive, batch)
            return batch if blobs is None else blobs(batch)

        def render(batch: Batch, emit: Any) -> None:
            for picture in render_batch(renderer, batch, options.video):
                emit(picture)
            emit(batch)  # after its frames: the output stage fills in encode_ms

        started = time.perf_counter()
        progress = progress_bar(len(drive.rows), options.progress)
        # The stages already keep the cores busy side by side; OpenCV's own worker pool would
        # only add hand-offs and spinning (800 frames: ~0.5 ms CPU per frame more).
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            run_stages(decode, analyse, render,
                       OutputStage(writer, progress, options.video), warm_up=analyzer.warm_up)
        finally:
            cv2.setNumThreads(opencv_threads)
            progress.close()
        elapsed = time.perf_counter() - started
        if summary.accumulator.count == 0:
            raise DriveVizError(f"{drive.rec.path}: every selected frame was unreadable "
                                f"({sum(summary.skip_reasons.values())} skipped); nothing to "
                                "replay")
        return writer.publish(run_head(drive, loaded.name, options), len(drive.rows), elapsed,
                              {"video": video_entry(drive, summary, options) if options.video
                               else None})


def run_head(drive: Drive, model_path: str | Path, options: ReplayOptions) -> dict[str, Any]:
    """summary.json's head: what was run (recording, source, model, target, parameters)."""
    from drive_viz.attention.targets import parse_target

    parameters = asdict(options)
    parameters.update(methods=list(options.methods), layout=options.main_method, end=drive.end,
                      end_requested=drive.end_requested, camera=drive.camera)
    parameters.pop("progress")
    return {"recording": str(drive.rec.path), "source": drive.rec.source,
            "model": str(model_path), "target": str(parse_target(options.target)),
            "parameters": parameters}


def video_entry(drive: Drive, summary: RunSummary, options: ReplayOptions) -> dict[str, Any]:
    """summary.json's ``video``: file, frame rate, size, codec, quality and frame count."""
    return {"file": "annotated.mp4", "fps": drive.fps, "width": options.video_size[0],
            "height": options.video_size[1], "codec": "h264", "pix_fmt": "yuv420p",
            "quality": options.video_quality, "qp": quality_qp(options.video_quality),
            "frames": summary.accumulator.count}


class _NoProgress:
    def update(self, count: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def progress_bar(total: int, enabled: bool, desc: str = "replay") -> Any:
    """A tqdm bar over ``total`` frames named ``desc``, or (not ``enabled``) one that shows
    nothing."""
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, smoothing=0.1)


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz replay`` command."""
    options = ReplayOptions(
        methods=args.methods, layout=args.layout, start=args.start, end=args.end,
        stride=args.stride, camera=args.camera, video=not args.no_video, target=args.target,
        gradcam_layer=args.gradcam_layer, batch_size=args.batch_size, overwrite=args.overwrite,
        progress=not args.quiet,
        unsafe_model=args.unsafe_model, event_window_s=args.event_window,
        video_size=args.video_size, video_quality=args.video_quality,
        embed_video=args.embed_video, causal_blobs=args.causal_blobs,
        blob_threshold=args.blob_threshold)
    summary = replay(args.recording, args.model, args.out, options)
    print_result(Path(args.out), summary)
    return 0


def print_result(out: Path, summary: dict[str, Any]) -> None:
    """The lines a replay prints when done (and a note when ``--end`` was past the drive)."""
    steering = summary["steering"]
    frames = summary["frames"]
    parameters = summary["parameters"]
    requested = parameters.get("end_requested")
    if requested is not None and requested > parameters["end"]:
        print(f"note: --end {requested} is past the recording's last row; replayed up to row "
              f"{parameters['end']}")
    mae = steering["mae"]
    error = f", MAE {mae:.4f}" if mae is not None else ""
    print(f"replayed {frames['replayed']} frames ({frames['skipped']} skipped){error}")
    if summary["video"]:
        print(f"video:  {out / 'annotated.mp4'}")
    print(f"report: {out / 'report.html'}")
    print_warnings(summary["warnings"])


def run_demo(args: argparse.Namespace) -> int:
    """The ``drive-viz demo`` command: synthesize a drive if needed, replay it, say where.

    The drive is (re)generated when it is absent, unfinished, or of another length or seed
    than asked. Without the shipped model it falls back to an untrained DAVE-2 (seed 0) and
    says so: the pipeline and outputs are the same, the maps just explain a random network.
    """
    import tempfile

    recording = Path(args.recording)
    model = Path(args.model)
    stale = _demo_drive_differs(recording, args.frames, args.seed)
    if stale is not None:
        from drive_viz.sim.synth import write_synthetic_recording

        print(f"generating a synthetic drive of {args.frames} frames into {recording}{stale} ...")
        write_synthetic_recording(recording, frames=args.frames, seed=args.seed,
                                  overwrite=stale != "", progress=not args.quiet)
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
    print_result(Path(args.out), summary)
    return 0


def _demo_drive_differs(recording: Path, frames: int, seed: int) -> str | None:
    """None when ``recording`` is a finished synthetic drive of ``frames`` frames from
    ``seed``; otherwise why it is (re)generated: "" when absent, else a parenthesized reason."""
    from drive_viz.recording.format import META_FILE, read_meta
    from drive_viz.recording.reader import open_recording

    if not (recording / META_FILE).is_file():
        return ""
    meta = read_meta(recording)
    if not meta.finished:
        return " (the one there is unfinished)"
    rows = len(open_recording(recording))
    if rows != frames or meta.extra.get("seed") != seed:
        return f" (the one there has {rows} frames, seed {meta.extra.get('seed')})"
    return None
