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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drive-viz",
        description="See what an end-to-end steering network looks at: record drives, "
                    "train DAVE-2, replay with saliency maps, live overlay.")
    parser.add_argument("--version", action="version", version=f"drive-viz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in (_add_info,):
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
