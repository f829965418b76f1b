"""What the folders under RUNS_DIR are: one ``RunEntry`` per run, found by its files.

Kinds, from the files a folder holds (the first that applies):

- ``fleet``: ``fleet.json`` (``drive-viz fleet``; its ``runs/<name>/`` belong to it and are not
  listed again);
- ``evaluate``: ``evaluation.json``;
- from ``summary.json``: its ``kind`` field when it names a kind; else ``live`` (it has
  ``world`` and ``drive``), ``compare`` (``models`` or ``pairs``), ``replay`` (``recording``
  and ``steering``; ``demo`` writes replay runs);
- ``incomplete``: no summary yet but hidden ``.NAME.partial`` files (a run being written, or
  one that was killed);
- ``unknown``: a summary that is not valid JSON or matches no kind, or a folder with run
  outputs (``annotated.mp4``, ``frames.parquet``, ``frames.csv``, ``report.html``) but no
  summary (written by an older drive-viz).

Any other folder is not a run and is searched for runs below it (down to ``MAX_DEPTH``);
hidden folders, symbolic links and recordings (``meta.json``) are not entered. Nothing here
raises on what it finds on disk: a field that is missing or of the wrong type is shown as
unknown.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drive_viz.recording.format import META_FILE

KINDS = ("replay", "live", "evaluate", "compare", "fleet")
RUN_OUTPUTS = ("annotated.mp4", "frames.parquet", "frames.csv", "report.html")
#: Pages a run is opened with, best first.
REPORT_PAGES = ("report.html", "evaluation.html")
MAX_DEPTH = 4
#: JSON files larger than this are not parsed (a summary is a few kB; fleet.json a few MB).
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass
class RunEntry:
    """One run: ``path`` relative to RUNS_DIR (POSIX, "." for RUNS_DIR itself); ``kind`` one of
    ``KINDS``, ``"incomplete"`` or ``"unknown"``; ``recording`` and ``model`` as shown (file
    names) with their full text in ``recording_full`` / ``model_full``; ``time`` the UNIX time
    of its summary (or newest file); ``mae`` and ``autonomy`` (percent) when the run has them;
    ``notes`` short texts (verdicts, counts, why it is unknown); ``report`` the page to open,
    relative to RUNS_DIR, or None."""

    path: str
    kind: str
    recording: str = ""
    recording_full: str = ""
    model: str = ""
    model_full: str = ""
    time: float | None = None
    mae: float | None = None
    autonomy: float | None = None
    notes: list[str] = field(default_factory=list)
    report: str | None = None

    @property
    def date(self) -> str:
        """``YYYY-MM-DD HH:MM`` UTC, or "" when unknown."""
        if self.time is None:
            return ""
        return datetime.fromtimestamp(self.time, timezone.utc).strftime("%Y-%m-%d %H:%M")


def find_runs(root: Path) -> list[RunEntry]:
    """Every run under ``root`` (itself included), newest first."""
    found: list[RunEntry] = []
    _walk(root, root, 0, found)
    found.sort(key=lambda entry: (-(entry.time or 0.0), entry.path))
    return found


def _walk(root: Path, folder: Path, depth: int, found: list[RunEntry]) -> None:
    try:
        with os.scandir(folder) as listing:
            items = list(listing)
    except OSError:
        return
    names = {item.name for item in items}
    entry = describe(root, folder, names)
    if entry is not None:
        found.append(entry)
        return
    if META_FILE in names or depth >= MAX_DEPTH:
        return
    for item in sorted(items, key=lambda i: i.name):
        try:
            is_folder = item.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_folder and not item.name.startswith("."):
            _walk(root, Path(item.path), depth + 1, found)


def describe(root: Path, folder: Path, names: set[str]) -> RunEntry | None:
    """The run in ``folder`` (whose file names are ``names``), or None if it is not one."""
    relative = folder.relative_to(root).as_posix()
    entry = RunEntry(path=relative, kind="unknown")
    pages = [name for name in REPORT_PAGES if _is_file(folder / name)]
    entry.report = f"{relative}/{pages[0]}" if pages else None
    if "fleet.json" in names:
        _fleet(entry, _read_json(folder / "fleet.json", entry))
        entry.time = _mtime(folder / "fleet.json")
    elif "evaluation.json" in names:
        _evaluation(entry, _read_json(folder / "evaluation.json", entry))
        entry.time = _mtime(folder / "evaluation.json")
    elif "summary.json" in names:
        _summary(entry, _read_json(folder / "summary.json", entry))
        entry.time = _mtime(folder / "summary.json")
    elif any(name.startswith(".") and name.endswith(".partial") for name in names):
        entry.kind = "incomplete"
        entry.notes.append("being written, or stopped before it finished")
        entry.time = _newest(folder, names)
    elif any(name in names for name in RUN_OUTPUTS):
        entry.notes.append("no summary.json (older drive-viz?)")
        entry.time = _newest(folder, names)
    else:
        return None
    if entry.report is None:  # no page: link the main JSON file, if any
        for name in ("fleet.json", "evaluation.json", "summary.json"):
            if name in names:
                entry.report = f"{relative}/{name}"
                break
    return entry


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _newest(folder: Path, names: set[str]) -> float | None:
    times = [t for t in (_mtime(folder / name) for name in names) if t is not None]
    return max(times) if times else None


def _read_json(path: Path, entry: RunEntry) -> dict[str, Any]:
    """The JSON object in ``path``; {} (and a note on ``entry``) when it is not one."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            entry.notes.append(f"{path.name}: too large to read")
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        entry.notes.append(f"{path.name}: unreadable or not JSON")
        return {}
    if not isinstance(data, dict):
        entry.notes.append(f"{path.name}: not a JSON object")
        return {}
    return data


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _set_recording(entry: RunEntry, text: str) -> None:
    entry.recording_full = text
    entry.recording = Path(text).name or text if text else ""


def _set_model(entry: RunEntry, text: str) -> None:
    entry.model_full = text
    entry.model = Path(text).name or text if text else ""


def _verdicts(entry: RunEntry, data: Any) -> None:
    """``verdicts``: {name: text} or {name: {"verdict": text}} or [text, ...]."""
    if isinstance(data, dict):
        for name, value in data.items():
            text = _text(value) or _text(_dig(value, "verdict"))
            if text:
                entry.notes.append(f"{name}: {text}")
    elif isinstance(data, list):
        entry.notes.extend(text for text in map(_text, data) if text)


def _summary(entry: RunEntry, data: dict[str, Any]) -> None:
    kind = _text(data.get("kind"))
    if kind not in KINDS:
        if "world" in data and "drive" in data:
            kind = "live"
        elif "models" in data or "pairs" in data:
            kind = "compare"
        elif "recording" in data and "steering" in data:
            kind = "replay"
        else:
            kind = "unknown"
            if data:
                entry.notes.append("summary.json of an unknown layout")
    entry.kind = kind
    _set_model(entry, _text(data.get("model")))
    _set_recording(entry, _text(data.get("recording")))
    if kind == "live":
        world = _text(data.get("world"))
        seed = _dig(data, "parameters", "seed")
        town = _dig(data, "parameters", "town")
        where = f"{world} world" + (f", seed {seed}" if isinstance(seed, int) else "")
        where += f", {town}" if isinstance(town, str) else ""
        entry.recording = entry.recording_full = where
        entry.mae = _number(_dig(data, "steering", "mae_vs_expert"))
        entry.autonomy = _number(data.get("autonomy_percent"))
        interventions = data.get("interventions")
        if isinstance(interventions, int):
            entry.notes.append(f"{interventions} interventions")
        frames = data.get("frames")
        if isinstance(frames, int):
            entry.notes.append(f"{frames} frames")
    elif kind == "compare":
        models = data.get("models")
        if isinstance(models, dict):
            labels = [str(label) for label in models]
            entry.model = entry.model_full = " vs ".join(labels)
            for label, numbers in models.items():
                mae = _number(_dig(numbers, "mae"))
                if mae is not None:
                    entry.notes.append(f"{label} MAE {mae:.4f}")
        elif isinstance(models, list):
            names = [_text(m) or _text(_dig(m, "label")) for m in models]
            entry.model = entry.model_full = " vs ".join(n for n in names if n)
    elif kind == "replay":
        entry.mae = _number(_dig(data, "steering", "mae"))
        replayed = _dig(data, "frames", "replayed")
        if isinstance(replayed, int):
            entry.notes.append(f"{replayed} frames")
    _verdicts(entry, data.get("verdicts"))


def _evaluation(entry: RunEntry, data: dict[str, Any]) -> None:
    entry.kind = "evaluate"
    _set_model(entry, _text(data.get("model")))
    _set_recording(entry, _text(data.get("recording")))
    entry.mae = _number(data.get("prediction_mae"))
    methods = data.get("methods")
    if isinstance(methods, list):
        entry.notes.append("methods: " + ", ".join(str(m) for m in methods))
    _verdicts(entry, data.get("verdicts"))


def _fleet(entry: RunEntry, data: dict[str, Any]) -> None:
    """``fleet.json``: ``model``; per-recording results under ``recordings`` or ``runs`` (a
    list or a {name: result} mapping; a result with ``error`` or ``reason`` failed)."""
    entry.kind = "fleet"
    _set_model(entry, _text(data.get("model")))
    results = data.get("recordings", data.get("runs"))
    if isinstance(results, dict):
        results = list(results.values())
    if not isinstance(results, list):
        return
    failed = [r for r in results if isinstance(r, dict) and (r.get("error") or r.get("reason"))]
    entry.recording = entry.recording_full = f"{len(results)} recordings"
    maes = [m for m in (_number(_dig(r, "mae")) or _number(_dig(r, "steering", "mae"))
                        for r in results) if m is not None]
    if maes:
        entry.mae = sum(maes) / len(maes)
        entry.notes.append("MAE: mean over recordings")
    if failed:
        entry.notes.append(f"{len(failed)} failed")
