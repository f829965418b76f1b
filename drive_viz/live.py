"""``drive-viz live``: run the model in a simulator frame by frame with the attention overlay.

Each simulation step: the camera frame goes through the preprocessing, the model and the
attention engine (``FrameAnalyzer``, batch 1) and THE renderer (``OverlayRenderer``, no
timeline); the model's steer drives the car (``--drive model``) or the world's expert / CARLA's
autopilot drives and the model runs in shadow (``--drive autopilot``).

Autonomy (synthetic world only), as NVIDIA reported it for DAVE-2 (Bojarski et al. 2016):
an INTERVENTION is the car leaving its lane (``SyntheticWorld.off_lane``: more than 1.2 m from
the lane centre or facing more than 90 degrees off the road); the car is then put back on the
lane centre and the drive goes on. ``autonomy = (1 - interventions * 6 s / simulated seconds)
* 100 %`` (each intervention is charged 6 s of human driving; floored at 0). The plain share
``frames_without_intervention`` is the percentage of frames whose step did not end off the lane.

Latency: the analysis a frame adds, preprocess + model and attention (``FrameAnalyzer``) +
overlay draw, in milliseconds; shown in the overlay and summarized as p50 / p95. Obtaining the
frame (world render, CARLA tick), video encoding and recording are outside it.

Outputs in RUN (with ``--out``), through the run writer (``runs.writer.RunWriter``), the same
layout as replay: ``annotated.mp4``, ``frames.parquet`` and ``frames.csv`` (the replay columns
plus ``steer_applied``, ``intervention``, ``interventions``, ``lateral_offset``, ``speed``,
``preprocess_ms``, ``latency_ms``; written in chunks, no rows are kept in memory),
``summary.json`` (replay's common summary with live's own fields added; ``frames`` is the number
of steps run) and ``report.html``; and ``recording/``: the drive itself (camera frames, masks,
the steer applied on each frame) for ``drive-viz replay``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drive_viz.analysis import DEFAULT_METHODS, FrameAnalyzer, check_methods
from drive_viz.errors import DriveVizError, OptionError
from drive_viz.interrupt import stop_requests
from drive_viz.model.contract import InputContract
from drive_viz.model.plausibility import print_warnings
from drive_viz.model.preprocess import preprocess_frame, preprocess_mask
from drive_viz.recording.format import MASK_CLASSES, CameraSpec, RecordingMeta
from drive_viz.render.overlay import FRAME_SIZE, TEXT, OverlayRenderer
from drive_viz.render.video import DEFAULT_QUALITY, check_video_size, quality_qp
from drive_viz.runs.replay import check_event_window
from drive_viz.runs.summary import EVENT_WINDOW_S, RunSummary, merge_summary
from drive_viz.runs.writer import OUTPUT_FILES, RunWriter

WORLDS = ("synthetic", "carla")
DRIVERS = ("model", "autopilot")
#: Seconds of human driving charged per intervention in NVIDIA's autonomy figure.
INTERVENTION_PENALTY_S = 6.0
#: CARLA speed the model's cruise control holds while it steers (m/s).
CARLA_CRUISE_SPEED = 8.0
__all__ = ["OUTPUT_FILES", "LiveOptions", "autonomy_percent", "live"]
RECORDING_FOLDER = "recording"
WINDOW_NAME = "drive-viz live"
_QUIT_KEYS = (ord("q"), 27)
#: Frames in the running median latency shown in the overlay.
RECENT_FRAMES = 100


@dataclass(frozen=True)
class LiveOptions:
    """One live session. ``frames``: steps to run; ``width`` x ``height``: camera size (None:
    the world's default, synthetic 320x160, CARLA 800x600); ``fps``: simulation rate;
    ``methods`` as in ``ReplayOptions``. Bad values raise OptionError naming the field."""

    world: str = "synthetic"
    drive: str = "model"
    methods: tuple[str, ...] | str = DEFAULT_METHODS
    layout: str | None = None
    target: str = "steer"
    gradcam_layer: str | None = None
    frames: int = 600
    display: bool = False
    out: str | None = None
    seed: int = 0
    fps: float = 20.0
    width: int | None = None
    height: int | None = None
    host: str = "localhost"
    port: int = 2000
    town: str | None = None
    timeout: float = 10.0
    overwrite: bool = False
    unsafe_model: bool = False
    event_window_s: float = EVENT_WINDOW_S
    #: The video's (width, height), x264 quality level and whether report.html embeds it, as
    #: in ``ReplayOptions``.
    video_size: tuple[int, int] = FRAME_SIZE
    video_quality: str = DEFAULT_QUALITY
    embed_video: bool = False
    #: ``[HOST:]PORT`` to serve the live page on (None: no page).
    serve: str | None = None

    def __post_init__(self) -> None:
        if self.world not in WORLDS:
            raise OptionError(f"world must be one of {WORLDS}, not {self.world!r}", "world")
        if self.drive not in DRIVERS:
            raise OptionError(f"drive must be one of {DRIVERS}, not {self.drive!r}", "drive")
        if self.frames < 1:
            raise OptionError(f"frames {self.frames} must be at least 1", "frames")
        if not (math.isfinite(self.fps) and 1 <= self.fps <= 1000):
            raise OptionError(f"fps {self.fps} is outside 1..1000", "fps")
        object.__setattr__(self, "methods", check_methods(self.methods, self.layout,
                                                          self.target))
        check_event_window(self.event_window_s)
        check_video_size(self.video_size)
        quality_qp(self.video_quality)
        if self.serve is not None:
            from drive_viz.serve.web import parse_address

            parse_address(self.serve)

    @property
    def main_method(self) -> str:
        return self.layout or self.methods[0]


def autonomy_percent(interventions: int, seconds: float) -> float:
    """NVIDIA's autonomy: (1 - interventions * 6 s / seconds) * 100, floored at 0."""
    if seconds <= 0:
        return math.nan
    return max(0.0, (1.0 - interventions * INTERVENTION_PENALTY_S / seconds) * 100.0)


@dataclass(frozen=True)
class _Observation:
    """One step's camera frame RGB uint8 (H, W, 3) and class mask uint8 (H, W); the expert's
    (or autopilot's) steer, NaN when nobody but the model drives; throttle and brake in [0, 1];
    speed m/s; t simulated seconds; lateral offset from the lane centre in m (NaN: unknown)."""

    rgb: np.ndarray
    mask: np.ndarray | None
    expert_steer: float
    throttle: float
    brake: float
    speed: float
    t: float
    lateral_offset: float


class _SyntheticSource:
    """The synthetic world in closed loop; interventions put the car back on the lane."""

    name = "synthetic"

    def __init__(self, options: LiveOptions) -> None:
        from drive_viz.sim.config import SyntheticWorldConfig
        from drive_viz.sim.world import SyntheticWorld

        overrides: dict[str, Any] = {"fps": options.fps}
        if options.width is not None:
            overrides["width"] = options.width
        if options.height is not None:
            overrides["height"] = options.height
        try:
            config = SyntheticWorldConfig(**overrides)
        except ValueError as exc:
            raise DriveVizError(f"synthetic world: {exc}") from None
        self.model_drives = options.drive == "model"
        self.world = SyntheticWorld(config, options.seed)
        self.world.reset(render=False)
        self.cameras: tuple[CameraSpec, ...] = self.world.cameras[:1]
        self.extra = {"world": "synthetic", "seed": options.seed, "lane": "right"}
        self._control: Any = None

    def observe(self) -> _Observation:
        world = self.world
        self._control = control = world.expert_control(perturb=False)
        rgb, mask = world.render(self.cameras[0])
        state = world.state
        return _Observation(rgb, mask, control.label, control.throttle, control.brake,
                            state.speed, state.time, state.lateral_offset)

    def act(self, steer_pred: float) -> tuple[float, bool]:
        """Execute one step; returns the steer applied and whether the car left its lane."""
        control = self._control
        steer = float(np.clip(steer_pred if self.model_drives else control.label, -1.0, 1.0))
        self.world.step(steer, control.throttle, control.brake, render=False)
        if self.world.off_lane:
            self.world.reset_to_lane_centre()
            return steer, True
        return steer, False


class _CarlaSource:
    """A ``CarlaSession``: the model steers with ``apply_steer`` (cruise control on the
    throttle) or the Traffic Manager's autopilot drives. No lane information: no interventions."""

    name = "carla"

    def __init__(self, options: LiveOptions, stack: contextlib.ExitStack) -> None:
        from drive_viz.sim.carla_session import CarlaSession, SessionConfig

        sizes = {k: v for k, v in (("width", options.width), ("height", options.height))
                 if v is not None}
        config = SessionConfig(host=options.host, port=options.port, town=options.town,
                               fps=options.fps, timeout=options.timeout, seed=options.seed,
                               side_cameras=False, autopilot=options.drive == "autopilot",
                               **sizes)
        self.model_drives = options.drive == "model"
        self.session = stack.enter_context(CarlaSession(config))
        self.cameras = self.session.cameras[:1]
        self.extra = {"world": "carla", "town": self.session.town,
                      "carla_server_version": self.session.server_version, "seed": options.seed}
        self._bundle: Any = None
        self._start: float | None = None

    def observe(self) -> _Observation:
        self._bundle = bundle = self.session.next_frames()
        self._start = bundle.timestamp if self._start is None else self._start
        expert = math.nan if self.model_drives else bundle.steer
        return _Observation(bundle.images[self.cameras[0].name], bundle.mask, expert,
                            bundle.throttle, bundle.brake, bundle.speed,
                            bundle.timestamp - self._start, math.nan)

    def act(self, steer_pred: float) -> tuple[float, bool]:
        if not self.model_drives:
            return self._bundle.steer, False
        steer = float(np.clip(steer_pred, -1.0, 1.0))
        error = CARLA_CRUISE_SPEED - self._bundle.speed
        throttle = float(np.clip(0.3 + 0.2 * error, 0.0, 1.0))
        brake = float(np.clip(-0.2 * error, 0.0, 1.0)) if error < -1.0 else 0.0
        self.session.apply_steer(steer, throttle, brake)
        return steer, False


class _Window:
    """The OpenCV window (Qt): shows RGB frames; q, Esc or closing the window stops."""

    def __init__(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY")):
            raise OptionError("display needs a graphical session (DISPLAY is not set); "
                              "use out to write the video instead", "display", "out")
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)

    def show(self, picture: np.ndarray, title: str) -> bool:
        """Show one frame; False when the user asked to stop."""
        cv2.imshow(WINDOW_NAME, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        cv2.setWindowTitle(WINDOW_NAME, title)
        key = cv2.waitKey(1) & 0xFF
        if key in _QUIT_KEYS:
            return False
        return cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(WINDOW_NAME)
            cv2.waitKey(1)


def live_text(canvas: np.ndarray, renderer: OverlayRenderer, text: str) -> None:
    """Write the live status line into the renderer's timeline strip (unused in live mode),
    above its centre line."""
    box = renderer.strip
    cv2.putText(canvas, text, (box.x + 8, box.y + box.h // 2 - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.7, TEXT, 2, cv2.LINE_AA)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "mean": None, "max": None}
    array = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)),
            "mean": float(array.mean()), "max": float(array.max())}


@contextlib.contextmanager
def _session(options: LiveOptions) -> Iterator[_SyntheticSource | _CarlaSource]:
    with contextlib.ExitStack() as stack:
        if options.world == "carla":
            yield _CarlaSource(options, stack)
        else:
            yield _SyntheticSource(options)


def live(model_path: str | Path, options: LiveOptions = LiveOptions()) -> dict[str, Any]:
    """Run a live session (see the module docstring); returns the summary."""
    from drive_viz.model.dave2 import load_steering_model, model_contract

    model = load_steering_model(model_path, unsafe=options.unsafe_model)
    prep = model_contract(model_path)
    summary = RunSummary(options.methods, options.main_method, options.fps,
                         event_window_s=options.event_window_s)
    with contextlib.ExitStack() as stack:
        writer = None
        if options.out:
            writer = stack.enter_context(RunWriter(
                options.out, summary, prep, overwrite=options.overwrite, video_fps=options.fps,
                encoder_threads=0, video_size=options.video_size,
                video_qp=quality_qp(options.video_quality), embed_video=options.embed_video))
        analyzer = FrameAnalyzer(model, options.methods, options.target,
                                 with_video=_draws(options, writer),
                                 contract=prep, gradcam_layer=options.gradcam_layer)
        analyzer.warm_up()
        started = time.perf_counter()
        with _session(options) as source:
            loop = _run(source, analyzer, prep, options, writer, summary, model_path)
        if loop.frames == 0:
            raise DriveVizError("live: stopped before the first frame; nothing to write")
        head = _head(options, model_path, source, loop.frames)
        extra = _live_fields(loop, options, model_path, source, summary)
        elapsed = time.perf_counter() - started
        if writer is not None:
            return writer.publish(head, loop.frames, elapsed, extra)
        return merge_summary(summary.build(head, loop.frames, elapsed), extra)



def _draws(options: LiveOptions, writer: RunWriter | None) -> bool:
    """Whether each step draws the overlay: for a window, a video or the live page."""
    return options.display or writer is not None or options.serve is not None


@dataclass
class _Loop:
    """What the frame loop leaves for the summary (no per-frame rows): steps run, whether the
    user stopped early, interventions, the sum of squared lateral offsets (m^2) and each
    frame's latency figures in milliseconds."""

    frames: int = 0
    stopped: bool = False
    interventions: int = 0
    offset_squares: float = 0.0
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {
        "latency_ms": [], "preprocess_ms": [], "model_ms": [], "render_ms": []})


def _run(source: _SyntheticSource | _CarlaSource, analyzer: FrameAnalyzer,
         prep: InputContract, options: LiveOptions, writer: RunWriter | None,
         summary: RunSummary, model_path: str | Path) -> _Loop:
    """The frame loop: each frame's row goes to ``writer`` (or only to ``summary``)."""
    from drive_viz.recording.writer import RecordingWriter

    camera = source.cameras[0].name
    renderer = OverlayRenderer(options.main_method, options.methods, contract=prep,
                               title=f"live {source.name} / {options.drive} drives",
                               size=options.video_size)
    loop = _Loop()
    recent: deque[float] = deque(maxlen=RECENT_FRAMES)
    draws = _draws(options, writer)
    with contextlib.ExitStack() as stack:
        # The first Ctrl-C ends the loop after the current step, so its video frame, table
        # row and count stay together; a second one interrupts at once.
        ctrl_c = stack.enter_context(stop_requests())
        recorder = window = publisher = None
        if writer is not None:
            meta = RecordingMeta(
                source=f"drive-viz live ({source.name})", fps=options.fps, cameras=source.cameras,
                mask_classes=dict(MASK_CLASSES),
                extra={**source.extra, "drive": options.drive, "model": str(model_path),
                       "steer_label": "steer applied on this frame (+right): the model's with "
                                      "--drive model, else the expert's / autopilot's"})
            recorder = stack.enter_context(RecordingWriter(
                writer.path / RECORDING_FOLDER, meta, overwrite=options.overwrite,
                with_masks=True))
        if options.display:
            window = _Window()
            stack.callback(window.close)
        if options.serve is not None:
            from drive_viz.serve.stream import open_live_server

            publisher = stack.enter_context(
                open_live_server(options.serve, options, source.name, str(model_path)))
        try:
            for index in range(options.frames):
                tick = time.perf_counter()
                seen = source.observe()
                observed = time.perf_counter()
                inputs = preprocess_frame(seen.rgb, prep)[None]
                mask = None if seen.mask is None else preprocess_mask(seen.mask, prep)
                prepared = time.perf_counter()
                analysis = analyzer.analyse(inputs, [seen.expert_steer], [mask])
                pred = float(analysis.prediction[0])
                render_ms = 0.0
                picture = None
                if draws:
                    drawn = time.perf_counter()
                    picture = renderer.draw(
                        seen.rgb, inputs[0], {m: h[0] for m, h in analysis.heat.items()},
                        analysis.grids[0], seen.expert_steer, pred, index, seen.t)
                    render_ms = (time.perf_counter() - drawn) * 1000
                preprocess_ms = (prepared - observed) * 1000
                latency = preprocess_ms + analysis.model_ms + render_ms
                recent.append(latency)
                applied, left_lane = source.act(pred)
                loop.interventions += left_lane
                encode_ms = 0.0
                if picture is not None:
                    status = (f"{options.drive} drives   latency {latency:5.1f} ms "
                              f"(p50 {np.median(recent):5.1f})   interventions "
                              f"{loop.interventions}")
                    live_text(picture, renderer, status)
                    if writer is not None:
                        encode_ms = writer.write_picture(picture)
                    if window is not None \
                            and not window.show(picture, f"{WINDOW_NAME}: {status}"):
                        loop.stopped = True
                if recorder is not None:
                    recorder.append(steer=applied, throttle=seen.throttle, brake=seen.brake,
                                    speed=seen.speed, t=seen.t, images={camera: seen.rgb},
                                    masks=None if seen.mask is None else {camera: seen.mask})
                values = {
                    "frame": index, "row": index, "t": seen.t,
                    "target": str(analyzer.engine.target),
                    **{name: values[0] for name, values in analysis.columns.items()},
                    "decode_ms": (observed - tick) * 1000, "model_ms": analysis.model_ms,
                    "render_ms": render_ms, "encode_ms": encode_ms,
                    "steer_applied": applied, "intervention": int(left_lane),
                    "interventions": loop.interventions, "lateral_offset": seen.lateral_offset,
                    "speed": seen.speed, "preprocess_ms": preprocess_ms, "latency_ms": latency,
                }
                row = pd.DataFrame([values])
                if writer is not None:
                    writer.add_rows(row, [index], lambda _, seen=seen, inputs=inputs,
                                    heat=analysis.heat: (seen.rgb, inputs[0],
                                                         {m: h[0] for m, h in heat.items()}))
                else:
                    summary.add(row, [index])
                if publisher is not None:
                    publisher.publish(picture, values)
                loop.frames += 1
                if math.isfinite(seen.lateral_offset):
                    loop.offset_squares += seen.lateral_offset ** 2
                for column, values_ms in loop.latency_ms.items():
                    values_ms.append(float(values[column]))
                if loop.stopped or ctrl_c.requested:
                    break
                if window is not None or publisher is not None:  # real time, not faster
                    time.sleep(max(0.0, 1.0 / options.fps - (time.perf_counter() - tick)))
        except KeyboardInterrupt:
            ctrl_c.requested = True
        if ctrl_c.requested:
            loop.stopped = True
            print(f"drive-viz: live stopped after {loop.frames} frames", file=sys.stderr)
    return loop


def _head(options: LiveOptions, model_path: str | Path, source: _SyntheticSource | _CarlaSource,
          frames: int) -> dict[str, Any]:
    """What was run, in the fields replay's summary has (the report reads them)."""
    from drive_viz.attention.targets import parse_target

    parameters = asdict(options)
    parameters.update(methods=list(options.methods), layout=options.main_method,
                      camera=source.cameras[0].name, start=0, end=frames, stride=1)
    return {"recording": RECORDING_FOLDER if options.out else None,
            "source": f"drive-viz live ({source.name})", "model": str(model_path),
            "target": str(parse_target(options.target)), "parameters": parameters}


def _live_fields(loop: _Loop, options: LiveOptions, model_path: str | Path,
                 source: _SyntheticSource | _CarlaSource, summary: RunSummary) -> dict[str, Any]:
    """Live's own summary fields, added to the common ones (``merge_summary``)."""
    frames = loop.frames
    seconds = frames / options.fps
    synthetic = source.name == "synthetic"
    interventions = loop.interventions
    steering = summary.accumulator.steering()
    return {
        "world": source.name, "drive": options.drive, "model": str(model_path),
        "frames": frames, "simulated_seconds": seconds, "stopped_early": loop.stopped,
        "interventions": interventions if synthetic else None,
        "autonomy_percent": autonomy_percent(interventions, seconds) if synthetic else None,
        "frames_without_intervention_percent":
            100.0 * (1 - interventions / frames) if synthetic else None,
        "autonomy_definition": "(1 - interventions * 6 s / simulated seconds) * 100, floored "
                               "at 0; an intervention is the car leaving its lane",
        "steering": {
            "expert": ("expert pure pursuit" if synthetic else "CARLA autopilot")
            if steering["mae"] is not None else None,
            "mae_vs_expert": steering["mae"],
            "rmse_vs_expert": steering["rmse"],
            "lateral_offset_rms_m": math.sqrt(loop.offset_squares / frames)
            if synthetic else None,
        },
        "latency_ms": {
            "total": _percentiles(loop.latency_ms["latency_ms"]),
            "stages": {name: _percentiles(loop.latency_ms[column]) for name, column in (
                ("preprocess", "preprocess_ms"), ("model_attention_stats", "model_ms"),
                ("overlay", "render_ms"))},
            "measures": "preprocess + model, attention and statistics + overlay draw, per frame",
        },
        "video": {"file": "annotated.mp4", "fps": options.fps, "width": options.video_size[0],
                  "height": options.video_size[1], "quality": options.video_quality,
                  "qp": quality_qp(options.video_quality), "frames": frames}
        if options.out else None,
        "recording": RECORDING_FOLDER if options.out else None,
    }


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz live`` command."""
    options = LiveOptions(
        world=args.world, drive=args.drive, methods=args.methods,
        layout=args.layout, target=args.target, gradcam_layer=args.gradcam_layer,
        frames=args.frames, display=args.display,
        out=args.out, seed=args.seed, fps=args.fps, width=args.width, height=args.height,
        host=args.host, port=args.port, town=args.town, timeout=args.timeout,
        overwrite=args.overwrite, unsafe_model=args.unsafe_model,
        event_window_s=args.event_window, video_size=args.video_size,
        video_quality=args.video_quality, embed_video=args.embed_video, serve=args.serve)
    summary = live(args.model, options)
    latency = summary["latency_ms"]["total"]
    line = (f"live {summary['world']}: {summary['frames']} frames, {options.drive} drives, "
            f"latency p50 {latency['p50']:.1f} ms p95 {latency['p95']:.1f} ms")
    if summary["autonomy_percent"] is not None:
        line += (f", {summary['interventions']} interventions, autonomy "
                 f"{summary['autonomy_percent']:.1f}%")
    if summary["steering"]["mae_vs_expert"] is not None:
        line += f", MAE vs expert {summary['steering']['mae_vs_expert']:.4f}"
    print(line)
    print_warnings(summary["warnings"])
    if options.out:
        print(f"run: {options.out} (annotated.mp4, frames.parquet, summary.json, report.html, "
              "recording/)")
    return 0
