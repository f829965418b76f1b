"""Importers: turn other people's driving datasets into drive-viz recordings.

>>> report = import_dataset("data/udacity_run", "recordings/udacity_run")
>>> print("\\n".join(report.lines()))

Formats: ``udacity`` (simulator ``driving_log.csv`` + ``IMG/``), ``donkey`` (donkeycar tubs,
v1 and v2) and ``packt`` (``FRAME_CAMERA_STEER_THROTTLE_BRAKE.jpg`` file names). Every
importer keeps each frame whose labels and images are usable, reports the others with the
reason, never writes inside the source folder, and writes through ``RecordingWriter`` (so an
interrupted import leaves a readable recording of the frames done).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drive_viz.errors import RecordingError
from drive_viz.recording.format import META_FILE
from drive_viz.recording.importers import donkey, packt, udacity
from drive_viz.recording.importers.common import ImportReport, write_recording

FORMATS = {"udacity": udacity, "donkey": donkey, "packt": packt}

__all__ = ["FORMATS", "ImportReport", "detect_format", "import_dataset", "run"]


def detect_format(src: str | Path) -> str:
    """The format of the dataset at ``src`` (``udacity``, ``donkey`` or ``packt``);
    RecordingError when it is none of them."""
    src = Path(src)
    if not src.exists():
        raise RecordingError(f"{src}: no such file or folder")
    if src.is_dir() and (src / META_FILE).is_file() and not donkey.looks_like(src):
        raise RecordingError(f"{src}: already a drive-viz recording (nothing to import)")
    for name, module in FORMATS.items():
        if module.looks_like(src):
            return name
    raise RecordingError(
        f"{src}: unknown dataset layout (expected a Udacity driving_log.csv, a donkeycar tub "
        "with manifest.json or meta.json, or FRAME_CAMERA_STEER_THROTTLE_BRAKE.jpg files)")


def import_dataset(src: str | Path, out: str | Path, format: str | None = None,
                   overwrite: bool = False) -> ImportReport:
    """Import the dataset at ``src`` into a new recording folder ``out``.

    ``format`` is ``udacity``, ``donkey`` or ``packt`` (None: detect it). Frames with labels
    outside [-1, 1] or NaN, missing or corrupt images, or images of another size than the
    camera's most common one are skipped and counted in the returned report. RecordingError
    (one line, naming the file) when the source is unusable: unknown layout, empty table, no
    usable frame; in that case no recording is left at ``out``.
    """
    src, out = Path(src), Path(out)
    if format is None:
        format = detect_format(src)
    elif format not in FORMATS:
        raise RecordingError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    elif not src.exists():
        raise RecordingError(f"{src}: no such file or folder")
    _check_apart(src, out)
    report = ImportReport(format=format, source=src, output=out)
    scan, root = FORMATS[format].scan(src, report)
    return write_recording(scan, root, out, overwrite, report)


def _check_apart(src: Path, out: Path) -> None:
    """Refuse an output inside the source (the source is never modified) or a source inside
    the output (``--overwrite`` would delete it)."""
    source_root = (src.parent if src.is_file() else src).resolve()
    target = out.resolve()
    if target.is_relative_to(source_root) or source_root.is_relative_to(target):
        raise RecordingError(f"{out}: the output must not be inside the source {src} "
                             "or contain it")


def run(args: argparse.Namespace) -> int:
    """``drive-viz import SRC OUT``: import, print the report, exit 0."""
    report = import_dataset(args.src, args.out, format=args.format, overwrite=args.overwrite)
    print("\n".join(report.lines()))
    return 0
