"""``drive-viz <command>``: argument parsing only; each command's work lives in its module.

Heavy modules (TensorFlow) are imported when a command runs, so ``--help`` stays fast.
Bad input raises DriveVizError, printed as one line ``drive-viz: error: ...`` with exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from drive_viz import __version__
from drive_viz.errors import DriveVizError

Command = Callable[[argparse.Namespace], int]


def _lazy(target: str) -> Command:
    """``"module:function"`` imported only when the command runs."""
    module_name, function_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), function_name)(args)

    return run


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
    parser.add_argument("--host", default="localhost",
                        help="CARLA server host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=2000,
                        help="CARLA server RPC port (default: %(default)s)")
    parser.add_argument("--town", default=None,
                        help="map to load, e.g. Town04 (default: keep the server's current map)")
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
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server and for each tick's frames "
                             "(default: %(default)s)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drive-viz",
        description="See what an end-to-end steering network looks at: record drives, "
                    "train DAVE-2, replay with saliency maps, live overlay.")
    parser.add_argument("--version", action="version", version=f"drive-viz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in (_add_info, _add_record):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except DriveVizError as exc:
        print(f"drive-viz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drive-viz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
