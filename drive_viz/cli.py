"""``drive-viz <command>``: argument parsing only; each command's work lives in its module.

Heavy modules (TensorFlow) are imported when a command runs, so ``--help`` stays fast.
Bad input raises DriveVizError, printed as one line ``drive-viz: error: ...`` with exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence

from drive_viz import __version__
from drive_viz.attention import DEFAULT_METHODS
from drive_viz.attention.catalog import METHODS
from drive_viz.attention.causal import BLOB_THRESHOLD
from drive_viz.errors import DriveVizError, OptionError
from drive_viz.model.contract import COLOURS, INTERPOLATIONS
from drive_viz.model.dave2 import SHIPPED_MODEL

Command = Callable[[argparse.Namespace], int]
TENSORFLOW_COMMANDS = {"train", "replay", "compare", "demo", "evaluate", "features", "live",
                       "inspect", "adopt", "info-model"}
UNSAFE_MODEL_HELP = ("load a model even if it needs unsafe deserialization (Lambda layers, "
                     "arbitrary Python): RISK: such a file can run any code on this machine "
                     "when loaded; use only for model files you made or trust")


#: Library parameter names whose flag is not ``--`` + the name with dashes.
FLAGS = {"event_window_s": "--event-window", "models": "--model"}


def error_message(exc: DriveVizError) -> str:
    """``exc``'s message, with the parameter names of an OptionError worded as flags."""
    text = str(exc)
    for name in exc.names if isinstance(exc, OptionError) else ():
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        text = re.sub(rf"(?<![\w/.-]){re.escape(name)}(?![\w/.-])", flag, text)
    return text


def _lazy(target: str) -> Command:
    """``"module:function"`` imported only when the command runs."""
    module_name, function_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), function_name)(args)

    return run


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr closed: its C++ start-up lines (oneDNN,
    CUDA probing on a machine without a GPU) ignore TF_CPP_MIN_LOG_LEVEL. Later messages,
    and every error drive-viz prints, go to stderr as usual."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


TARGET_HELP = ("what the maps explain: steer, left, maintain, throttle (a model whose card names "
               "a throttle output), a unit LAYER:UNIT (conv3:17 = filter "
               "17's mean activation, dense1:4) or a conv filter at a feature-map cell "
               "LAYER:UNIT@ROW,COL (conv3:17@2,10) (default: steer)")
GRADCAM_LAYER_HELP = ("conv layer for Grad-CAM (default: the deepest conv layer with at least "
                      "5x5 cells; DAVE-2: conv3)")


def methods_help(known: tuple[str, ...] = tuple(METHODS)) -> str:
    """The --methods help: the names to choose from."""
    return f"comma-separated attention methods, from: {', '.join(known)}"


def _add_overlay_options(parser: argparse.ArgumentParser) -> None:
    """--methods, --layout, --target and --event-window: the options of the runs replay and
    live write."""
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"{methods_help()} (default: %(default)s)")
    parser.add_argument("--layout", default=None,
                        help="method shown over the camera frame (default: the first method)")
    parser.add_argument("--target", default="steer", help=TARGET_HELP)
    parser.add_argument("--event-window", type=float, default=2.0, metavar="SECONDS",
                        help="the report's worst-frame galleries show distinct events: a frame "
                             "within this many seconds of a worse one joins its event "
                             "(default: %(default)s)")

    parser.add_argument("--gradcam-layer", default=None, metavar="LAYER",
                        help=GRADCAM_LAYER_HELP)


def _video_size(text: str) -> tuple[int, int]:
    from drive_viz.render.video import parse_video_size

    try:
        return parse_video_size(text)
    except DriveVizError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_video_options(parser: argparse.ArgumentParser) -> None:
    """--video-size, --video-quality and --embed-video: how a run's video is written."""
    from drive_viz.render.video import DEFAULT_QUALITY, QUALITY_QP

    parser.add_argument("--video-size", type=_video_size, default=(1280, 720), metavar="WxH",
                        help="video size in pixels, even, at least 160x90; the overlay layout "
                             "scales to it (default: 1280x720)")
    parser.add_argument("--video-quality", choices=tuple(QUALITY_QP), default=DEFAULT_QUALITY,
                        help="H.264 quality: " + ", ".join(
                            f"{name} = constant quantizer {qp}" for name, qp in
                            QUALITY_QP.items()) + " (default: %(default)s; measured bitrates "
                        "in the README)")
    parser.add_argument("--embed-video", action="store_true",
                        help="also put the video inside report.html (base64), so the page "
                             "can be shared alone: the page grows by 4/3 of the video's size "
                             "(about 1.9 MB per minute of 1280x720 at the default quality)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """What replay and compare share: the overlay, the rows, the camera, the video, the batch,
    --overwrite and --quiet."""
    _add_overlay_options(parser)
    parser.add_argument("--start", type=int, default=0, help="first table row (default 0)")
    parser.add_argument("--end", type=int, default=None,
                        help="stop before this table row (default: the end)")
    parser.add_argument("--stride", type=int, default=1, help="use every N-th row (default 1)")
    parser.add_argument("--camera", default=None, help="camera name (default: the first)")
    parser.add_argument("--no-video", action="store_true",
                        help="skip rendering and the video; write the tables and report only")
    _add_video_options(parser)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="frames per model call (default 32)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an existing run folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_carla_options(parser: argparse.ArgumentParser) -> None:
    """--host, --port, --town and --timeout: the CARLA connection record and live share."""
    parser.add_argument("--host", default="localhost",
                        help="CARLA server host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=2000,
                        help="CARLA server RPC port (default: %(default)s)")
    parser.add_argument("--town", default=None,
                        help="map to load, e.g. Town04 (default: keep the server's current map)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server and for each tick's frames "
                             "(default: %(default)s)")


def _add_info(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info", help="summarize and check a recording",
        description="Print a summary of a recording folder and every problem found in it "
                    "(missing or corrupt images, NaN labels, time going backwards, ...). "
                    "Exits 2 when the folder is not a readable recording.")
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the human summary")
    parser.add_argument("--no-image-check", action="store_true",
                        help="skip opening every image (faster on long drives)")
    parser.set_defaults(run=_lazy("drive_viz.recording.info:run"))


def _add_record(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "record", help="record a drive from a CARLA server",
        description="Connect to a running CARLA server, drive a vehicle with the Traffic Manager "
                    "autopilot in synchronous mode and write a recording: center/left/right RGB "
                    "cameras, road/lane-marking masks from a segmentation camera, the applied "
                    "control and the speed. Ctrl-C stops and keeps the frames written so far.")
    _add_carla_options(parser)
    parser.add_argument("--frames", type=int, required=True, help="number of frames to record")
    parser.add_argument("--out", required=True, help="recording folder to create")
    parser.add_argument("--fps", type=float, default=20.0,
                        help="simulation and recording rate; the fixed time step is 1/fps s "
                             "(default: %(default)s)")
    parser.add_argument("--width", type=int, default=800,
                        help="camera image width in pixels (default: %(default)s)")
    parser.add_argument("--height", type=int, default=600,
                        help="camera image height in pixels (default: %(default)s)")
    parser.add_argument("--fov", type=float, default=90.0,
                        help="camera horizontal field of view in degrees (default: %(default)s)")
    parser.add_argument("--no-side-cameras", action="store_true",
                        help="record only the center camera (no left/right cameras at -/+0.5 m)")
    parser.add_argument("--traffic", type=int, default=0,
                        help="number of other autopilot vehicles to spawn (default: %(default)s)")
    parser.add_argument("--weather", default=None,
                        help="carla.WeatherParameters preset, e.g. ClearNoon, WetSunset "
                             "(default: keep the server's weather)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for spawn points, traffic and the Traffic Manager")
    parser.add_argument("--tm-port", type=int, default=8000,
                        help="Traffic Manager port (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing recording at --out")
    parser.set_defaults(run=_lazy("drive_viz.sim.carla_record:run"))


def _add_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import", help="import a Udacity, donkeycar or file-name-labelled dataset",
        description="Convert a driving dataset into a drive-viz recording: a Udacity simulator "
                    "log (driving_log.csv + IMG/), a donkeycar tub (v1 or v2), or images named "
                    "FRAME_CAMERA_STEER_THROTTLE_BRAKE.jpg. Frames with bad labels or images "
                    "are skipped and reported; the source is never modified. Exits 2 when "
                    "the source is unusable.")
    parser.add_argument("src", help="dataset folder (or a Udacity driving_log.csv)")
    parser.add_argument("out", help="recording folder to create")
    parser.add_argument("--format", choices=("udacity", "donkey", "packt"),
                        help="dataset layout (default: detect it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it is already a recording")
    parser.set_defaults(run=_lazy("drive_viz.recording.importers:run"))


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="train DAVE-2 on recordings",
        description="Train a DAVE-2 steering network on one or more recordings and write "
                    "MODEL.keras with MODEL.card.json (data, hyper-parameters, losses, the "
                    "command that rebuilds it) and MODEL.curves.png beside it.")
    parser.add_argument("recordings", nargs="+", metavar="REC", help="recording folder(s)")
    parser.add_argument("--out", required=True, help="model file to write (.keras)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="keep the rate, or decay it to 0 on a cosine over all epochs "
                             "(default constant)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for initialization, data order and augmentation")
    parser.add_argument("--activation", choices=("elu", "relu"), default="elu",
                        help="activation of every hidden layer (default elu)")
    parser.add_argument("--head", choices=("flatten", "gap"), default="flatten",
                        help="NVIDIA's dense head, or global average pooling (exact CAM)")
    parser.add_argument("--side-cameras", action=argparse.BooleanOptionalAction, default=True,
                        help="also train on forward-looking side cameras, with a steering "
                             "correction derived from their offset (default on)")
    parser.add_argument("--no-augment", action="store_true",
                        help="no flip, brightness, shadow or shift augmentation")
    parser.add_argument("--rebalance", action="store_true",
                        help="weigh samples by 1/sqrt(frequency of their steering)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of time blocks held out for validation (default 0.2)")
    parser.add_argument("--block-seconds", type=float, default=4.0,
                        help="length of the validation time blocks in seconds (default 4)")
    parser.add_argument("--gap-seconds", type=float, default=1.0,
                        help="frames this close to a validation frame are not trained on")
    parser.add_argument("--patience", type=int, default=5,
                        help="stop after this many epochs without a better validation loss")
    parser.add_argument("--camera", default="center", help="camera whose labels are the car's")
    parser.add_argument("--recovery-distance", type=float, default=8.0,
                        help="metres over which side-camera and shift corrections steer "
                             "back to the path (default 8)")
    parser.add_argument("--heldout", action="append", metavar="REC",
                        help="recording not trained on: report its steering MAE in the card")
    parser.add_argument("--compare-with", metavar="MODEL", default=None,
                        help="a model with the other head (flatten vs gap): put both models' "
                             "MAE on this run's validation frames in the card's 'comparison'")
    parser.add_argument("--unsafe-model", action="store_true",
                        help=f"for --compare-with: {UNSAFE_MODEL_HELP}")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="one line per epoch instead of a progress bar (the default "
                             "when stdout is not a terminal, e.g. a log file)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (only the result lines)")
    parser.set_defaults(run=_lazy("drive_viz.model.train:run"))


def _add_features(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "features", help="visualize what conv filters or dense units respond to",
        description="Activation maximization: for each chosen filter (conv layer) or unit "
                    "(dense layer), optimize an input image from seeded noise (with jitter, "
                    "blur and L2 decay) until it excites that filter, and write the images "
                    "as one labelled grid PNG.")
    parser.add_argument("--model", required=True, help="steering model (.keras)")
    parser.add_argument("--layer", default=None,
                        help="conv or dense layer to visualize, e.g. conv1 or dense2")
    parser.add_argument("--filters", default=None,
                        help="filters/units to show, e.g. 0,1,2 or 0-7 (default: all)")
    parser.add_argument("--target", default=None,
                        help="instead of --layer/--filters: one unit, LAYER:UNIT (conv3:17 = "
                             "filter 17's mean activation, dense1:4) or a conv filter at one "
                             "feature-map cell, LAYER:UNIT@ROW,COL (conv3:17@2,10)")
    parser.add_argument("--steps", type=int, default=128,
                        help="gradient-ascent steps per image (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    parser.add_argument("--out", required=True, help="output PNG file")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.attention.features:run"))


def _add_replay(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replay", help="replay a recording through a model with attention maps",
        description="Run a recording frame by frame through a steering model and the attention "
                    "engine; write RUN/annotated.mp4, frames.parquet, frames.csv, summary.json "
                    "and report.html.")
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--model", required=True, help="steering model (.keras)")
    parser.add_argument("--out", required=True, help="run folder to write")
    _add_run_options(parser)
    parser.add_argument("--causal-blobs", action="store_true",
                        help="per frame, cluster the layout map into blobs, remove each (noisy "
                             "linear imputation) and ask the model again: outline the causal "
                             "blobs (cyan) and the rest (grey) on the video; adds the columns "
                             "blobs, causal_blobs, causal_mass_share (one more model call and "
                             "an imputation per blob)")
    parser.add_argument("--blob-threshold", type=float, default=BLOB_THRESHOLD,
                        metavar="STEER",
                        help="|delta steer| above which a removed blob is causal "
                             "(default: %(default)s)")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.runs.replay:run"))


def _add_fleet(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fleet", help="replay many recordings on Ray (this machine, or a cluster)",
        description="Replay each recording as 'drive-viz replay' would (no video unless "
                    "--video) on a Ray cluster: a local one of --workers processes by default, "
                    "an existing one with --address. Writes FLEET/runs/<name>/ per recording, "
                    "the Parquet dataset FLEET/frames/recording=<name>/, FLEET/fleet.json and "
                    "FLEET/report.html. Exits 1 when some recordings failed (listed in "
                    "fleet.json), 2 on bad input. Needs the 'fleet' extra (Ray).")
    parser.add_argument("recordings", nargs="*", metavar="REC", help="recording folder(s)")
    parser.add_argument("--model", required=True, help="steering model (.keras)")
    parser.add_argument("--out", required=True, help="fleet folder to write")
    parser.add_argument("--from-list", metavar="FILE", default=None,
                        help="text file of recording folders, one per line (# comments; "
                             "relative paths from the file's folder)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to use, host:port (default: start a local one)")
    parser.add_argument("--workers", type=int, default=None,
                        help="recordings replayed at the same time (default: this machine's "
                             "cores, or the cluster's CPUs with --address, divided by "
                             "--cpus-per-task)")
    parser.add_argument("--cpus-per-task", type=int, default=1,
                        help="CPUs Ray reserves for each recording's replay, used as its "
                             "TensorFlow threads (default: %(default)s; one replay keeps about "
                             "1.3 cores busy, 1.9 with --video)")
    parser.add_argument("--video", action="store_true", help="also write annotated.mp4 per run")
    _add_overlay_options(parser)
    parser.add_argument("--camera", default=None, help="camera name (default: the first)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="frames per model call (default: %(default)s)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the complete runs in --out made with the same model and "
                            "options; replay the rest")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the fleet's outputs in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.runs.fleet:run"))


def _add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare", help="compare 2 to 4 steering models on one recording, side by side",
        description="Run a recording once through several steering models (each through its "
                    "own input contract) and the attention engine; write RUN/annotated.mp4 "
                    "(one panel per model), frames.parquet, frames.csv (per-model and per-pair "
                    "columns), summary.json and report.html.")
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--model", required=True, action="append",
                        help="steering model (.keras); give it 2 to 4 times")
    parser.add_argument("--labels", default=None, metavar="NAME,NAME,...",
                        help="one label per model, in --model order (default: the file stems)")
    parser.add_argument("--out", required=True, help="run folder to write")
    _add_run_options(parser)
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.runs.compare:run"))


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="synthesize a drive and replay it with the shipped model",
        description="Generate a synthetic drive into --recording (unless the one there has "
                    "--frames frames from --seed), replay it "
                    "with the shipped model, and print where the video and report are.")
    parser.add_argument("--out", default="runs/demo", help="run folder (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=300,
                        help="frames of the synthetic drive; it is (re)generated when absent "
                             "or of another length or seed (default: %(default)s)")
    parser.add_argument("--recording", default="recordings/demo",
                        help="synthetic drive folder (default: %(default)s)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL),
                        help="model to replay with (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic world seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.runs.replay:run_demo"))


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="check whether attention maps can be trusted",
        description="On frames of a recording: the model-randomization sanity check "
                    "(Spearman correlation of maps from the trained model and from models "
                    "re-initialized layer by layer from the top), deletion/insertion curves "
                    "for steering, and on recordings with masks the attention on lane "
                    "markings vs their area and a pointing game. Writes DIR/evaluation.json "
                    "and PNG plots.")
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--model", required=True, help="steering model (.keras)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--methods", default="saliency,gradcam,visualbackprop,sobel",
                        help=f"{methods_help((*METHODS, 'sobel'))}; 'sobel' is a model-free "
                             "edge baseline (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=32,
                        help="number of evenly spaced frames to evaluate (default: 32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for re-initialized weights and the random pixel order")
    parser.add_argument("--steps", type=int, default=16,
                        help="deletion/insertion steps (default: 16)")
    parser.add_argument("--baseline", choices=("blur", "mean"), default="blur",
                        help="what deleted pixels become: the blurred frame or its mean colour")
    parser.add_argument("--tolerance", type=int, default=2,
                        help="pointing-game tolerance in pixels of the model's input view "
                             "(default: 2)")
    parser.add_argument("--camera", default=None, help="camera to use (default: the first)")
    parser.add_argument("--shift-test", action="store_true",
                        help="shift test (Bojarski et al. 2017): shift only each map's salient "
                             "10%% of pixels, then only the rest, against the whole frame")
    parser.add_argument("--causal-blobs", action="store_true",
                        help="causal blobs (Kim & Canny 2017): remove each blob of each map's "
                             "top 20%%, keep those that change the steering by > 0.005")
    parser.add_argument("--road", action="store_true",
                        help="ROAD (Rong et al. 2022): MoRF/LeRF curves with noisy linear "
                             "imputation, against blur-matched random maps (slowest option)")
    parser.add_argument("--gradcam-layer", default=None, metavar="LAYER",
                        help=GRADCAM_LAYER_HELP)
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.add_argument("--counterfactuals", action="store_true",
                        help="synthetic recordings: draw each frame again without one scene "
                             "element at a time; steering change and attention per element")
    parser.set_defaults(run=_lazy("drive_viz.attention.evaluate:run"))


def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth", help="record a drive in the built-in synthetic road world",
        description="Drive the expert (pure pursuit on the right lane, with small weaving and "
                    "recoveries) along a procedural two-lane road and write a recording: "
                    "camera frames, road/lane-marking/distractor masks and the expert's steer "
                    "(+ right). The same seed gives the same drive. Ctrl-C keeps the frames "
                    "written so far.")
    parser.add_argument("out", help="recording folder to create")
    parser.add_argument("--frames", type=int, required=True, help="number of frames to record")
    parser.add_argument("--seed", type=int, default=0,
                        help="world seed: road, scenery, light and weaving (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=20.0,
                        help="frames per second of simulated time (default: %(default)s)")
    parser.add_argument("--width", type=int, default=320,
                        help="camera image width in pixels (default: %(default)s)")
    parser.add_argument("--height", type=int, default=160,
                        help="camera image height in pixels (default: %(default)s)")
    parser.add_argument("--side-cameras", action="store_true",
                        help="also record left/right cameras 0.8 m to either side")
    parser.add_argument("--no-masks", action="store_true",
                        help="do not write the ground-truth class masks")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it is already a recording")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_lazy("drive_viz.sim.synth:run"))


def _add_live(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "live", help="drive a simulator with the model and a live attention overlay",
        description="Run the steering model in the synthetic world or CARLA frame by frame "
                    "with the attention overlay; the model drives (or the expert/autopilot "
                    "drives and the model runs in shadow). Reports autonomy (synthetic: "
                    "(1 - interventions x 6 s / seconds) x 100, an intervention = leaving the "
                    "lane) and the per-frame analysis latency. --display shows a window "
                    "(q or Esc quits); --out RUN writes annotated.mp4, frames.parquet/csv, "
                    "summary.json and the drive as RUN/recording; --serve PORT serves a live "
                    "page (stream, plots, numbers) for a browser.")
    parser.add_argument("--world", choices=("synthetic", "carla"), default="synthetic",
                        help="simulator (default: %(default)s)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL),
                        help="steering model (default: %(default)s)")
    parser.add_argument("--drive", choices=("model", "autopilot"), default="model",
                        help="who steers: the model, or the expert/autopilot with the model in "
                             "shadow (default: %(default)s)")
    _add_overlay_options(parser)
    parser.add_argument("--frames", type=int, default=600,
                        help="simulation steps to run (default: %(default)s)")
    parser.add_argument("--display", action="store_true",
                        help="show the overlay in a window (q or Esc quits)")
    parser.add_argument("--out", default=None,
                        help="run folder for the video, tables, summary and recording")
    parser.add_argument("--serve", default=None, metavar="[HOST:]PORT",
                        help="serve a live page (overlay stream, plots, numbers) on PORT, "
                             "127.0.0.1 unless HOST is given; open http://localhost:PORT/ "
                             "(through an SSH tunnel on a remote machine)")
    parser.add_argument("--seed", type=int, default=0,
                        help="synthetic world seed / CARLA spawn seed (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=20.0,
                        help="simulation rate; one step is 1/fps s (default: %(default)s)")
    parser.add_argument("--width", type=int, default=None,
                        help="camera width in pixels (default: synthetic 320, CARLA 800)")
    parser.add_argument("--height", type=int, default=None,
                        help="camera height in pixels (default: synthetic 160, CARLA 600)")
    _add_carla_options(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an existing run folder")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    _add_video_options(parser)
    parser.set_defaults(run=_lazy("drive_viz.live:run"))


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "inspect", help="one frame through every conv layer: activations and Grad-CAM",
        description="Run one frame of a recording through the model and write a PNG with a "
                    "header (input view, steer true/pred) and one row per conv layer: its "
                    "activation grid and its Grad-CAM map over the input view, all from one "
                    "attention-engine pass.")
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--frame", type=int, required=True,
                        help="table row of the frame (0-based, like replay's --start)")
    parser.add_argument("--model", required=True, help="steering model (.keras)")
    parser.add_argument("--out", required=True, help="output PNG file")
    parser.add_argument("--camera", default=None, help="camera name (default: the first)")
    parser.add_argument("--target", default="steer", help=TARGET_HELP)
    parser.add_argument("--gradcam-layer", default=None, metavar="LAYER",
                        help="show only this conv layer's row (default: every conv layer)")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.inspect_layers:run"))


def _add_serve(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve", help="browse every run under a folder in a web browser",
        description="Serve an index of the runs under RUNS_DIR (kind, recording, model, date, "
                    "MAE, autonomy, verdicts, a link to each report) and the runs' files, "
                    "read-only. Nothing outside RUNS_DIR can be read through it. Ctrl-C stops.")
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run folders")
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; "
                             "another address is reachable by others and prints a warning)")
    parser.set_defaults(run=_lazy("drive_viz.serve.files:run"))


def _add_index(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "index", help="write RUNS_DIR/index.html listing every run under a folder",
        description="Write the index that 'drive-viz serve' shows as a static "
                    "RUNS_DIR/index.html that works offline from disk: sort by any column, "
                    "filter by model and recording.")
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run folders")
    parser.set_defaults(run=_lazy("drive_viz.serve.index:run"))


def _add_adopt(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "adopt", help="bring your own steering model (.h5 or .keras) with its input contract",
        description="Read a Keras model file (Keras 1.x/2.x or tf.keras HDF5 .h5, Keras 3 "
                    ".keras) as data, rebuild it from Keras built-in layers (nothing in the "
                    "file is executed; every Lambda layer must be declared with --lambda), "
                    "and write OUT.keras with OUT.card.json holding its input contract: the "
                    "crop of the camera frame, resize to the model's input size, colour "
                    "order, scale and offset (network input = colour(frame) x S + O), and "
                    "which outputs are steering and throttle. Every other command then takes "
                    "OUT.keras like the shipped model.")
    parser.add_argument("source", help="model file: .h5 (Keras 2 / tf.keras) or .keras")
    parser.add_argument("--out", required=True, help="model file to write (.keras)")
    parser.add_argument("--crop", default=None, metavar="TOP,BOTTOM[,LEFT,RIGHT]",
                        help="removed from each side of the camera frame: values below 1 are "
                             "fractions of the frame, 1 and above pixels (default: none)")
    parser.add_argument("--interpolation", default="linear", choices=INTERPOLATIONS,
                        help="resize of the cropped frame to the model's input size, as "
                             "cv2.resize (default: %(default)s)")
    parser.add_argument("--colour", default="rgb", choices=COLOURS,
                        help="colour order the model was trained on (default: %(default)s)")
    parser.add_argument("--scale", default="1", metavar="S",
                        help="network input = colour(frame) x S + O; S may be a fraction "
                             "such as 1/255 (default: 1)")
    parser.add_argument("--offset", default="0", metavar="O", help="O above (default: 0)")
    parser.add_argument("--steering", default=None, metavar="OUTPUT",
                        help="steering output, by name or index (default: the only output)")
    parser.add_argument("--decode", default="linear", metavar="linear|bins:N:LO:HI",
                        help="steering is the output itself (linear) or a softmax over N bins "
                             "spanning LO..HI, read as the expectation (default: linear)")
    parser.add_argument("--throttle", default=None, metavar="OUTPUT",
                        help="throttle output, by name or index (default: none)")
    parser.add_argument("--throttle-decode", default="linear", metavar="linear|bins:N:LO:HI",
                        help="as --decode, for the throttle output (default: linear)")
    parser.add_argument("--lambda", dest="lambdas", action="append", default=[],
                        metavar="NAME=rescale:SCALE:OFFSET|NAME=resize:HEIGHT:WIDTH|"
                                "NAME=identity",
                        help="declare what a Lambda layer does (repeatable); its code is never "
                             "run. rescale: x * SCALE + OFFSET (SCALE may be 1/127.5); "
                             "resize: bilinear; identity: removed")
    parser.add_argument("--dry-run", action="store_true",
                        help="rebuild, check and print everything; write nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT and its card if they exist")
    parser.set_defaults(run=_lazy("drive_viz.model.adopt:run"))


def _add_info_model(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info-model", help="show a model's layers, parameters and input contract",
        description="Print a steering model's layers with their output shapes and parameter "
                    "counts, its outputs, its input contract (from its card) and, for an "
                    "adopted model, the file it came from.")
    parser.add_argument("model", help="steering model (.keras)")
    parser.add_argument("--unsafe-model", action="store_true", help=UNSAFE_MODEL_HELP)
    parser.set_defaults(run=_lazy("drive_viz.model.adopt:run_info"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drive-viz",
        description="See what an end-to-end steering network looks at: record drives, "
                    "train DAVE-2, replay with saliency maps, live overlay.")
    parser.add_argument("--version", action="version", version=f"drive-viz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in (_add_info, _add_replay, _add_compare, _add_fleet, _add_demo, _add_record,
                _add_train, _add_import, _add_features, _add_evaluate, _add_synth, _add_live,
                _add_inspect, _add_adopt, _add_info_model, _add_serve, _add_index):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in TENSORFLOW_COMMANDS and "tensorflow" not in sys.modules:
            _import_tensorflow_quietly()
        return int(args.run(args) or 0)
    except DriveVizError as exc:
        print(f"drive-viz: error: {error_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable output, a full disk, a vanished input
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"drive-viz: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drive-viz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
