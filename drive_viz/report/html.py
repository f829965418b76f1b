"""``report.html``: one self-contained page per replay run that works offline from disk.

The page references ``annotated.mp4`` beside it, draws its plots as inline SVG with inline JS
(no external scripts), and embeds the worst-frame thumbnails as ``data:`` JPEG URIs. Every
string that comes from a recording (paths, camera names, source, skip reasons) is escaped
with ``html.escape``; data reaches the script only as JSON inside
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped as ``\\u003c`` etc.,
so no recording text is ever interpolated into JS. Clicking a plot point or a gallery card
seeks the video to that frame (video frame k is the k-th replayed row of ``frames.parquet``).
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drive_viz.report.template import PAGE

MAX_PLOT_POINTS = 4000
PLOTTED_STATISTICS = ("entropy", "lr_balance", "road_share", "temporal_corr")
_MARKER = re.compile(r"\{\{([A-Z]+)\}\}")


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can close or open a tag."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite_list(values: np.ndarray, digits: int = 5) -> list[float | None]:
    return [round(float(v), digits) if math.isfinite(v) else None for v in values]


def _plot_data(frames: pd.DataFrame, methods: list[str]) -> dict[str, Any]:
    """Series for the plots, thinned to at most MAX_PLOT_POINTS rows (every k-th)."""
    step = max(1, math.ceil(len(frames) / MAX_PLOT_POINTS))
    index = np.arange(0, len(frames), step)
    thinned = frames.iloc[index]
    plots = [
        {"title": "steering (positive = right)", "series": [
            {"name": "recorded", "color": "#3cdc5a",
             "values": _finite_list(thinned["steer_true"].to_numpy(np.float64))},
            {"name": "predicted", "color": "#ff3cdc",
             "values": _finite_list(thinned["steer_pred"].to_numpy(np.float64))}]},
        {"title": "absolute error", "series": [
            {"name": "|predicted - recorded|", "color": "#f0b030",
             "values": _finite_list(thinned["abs_error"].to_numpy(np.float64))}]},
    ]
    palette = ("#4cc9f0", "#f72585", "#b5e48c", "#ffd166", "#c77dff")
    for stat in PLOTTED_STATISTICS:
        series = []
        for k, method in enumerate(methods):
            column = f"{method}_{stat}"
            if column in thinned and np.isfinite(thinned[column].to_numpy(np.float64)).any():
                series.append({"name": method, "color": palette[k % len(palette)],
                               "values": _finite_list(thinned[column].to_numpy(np.float64))})
        if series:
            plots.append({"title": f"attention: {stat}", "series": series})
    return {"videoIndex": index.tolist(),
            "frame": thinned["frame"].astype(int).tolist(),
            "t": _finite_list(thinned["t"].to_numpy(np.float64), 3),
            "plots": plots}


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _gallery(title: str, entries: list[dict[str, Any]], key: str, label: str) -> str:
    if not entries:
        return ""
    cards = []
    for entry in entries:
        maps = "".join(
            f"<figure><img src='{html.escape(uri)}' alt='{html.escape(method)}'>"
            f"<figcaption>{html.escape(method)}</figcaption></figure>"
            for method, uri in entry["maps"].items())
        cards.append(
            f"<div class='card' data-video-index='{int(entry['position_in_video'])}'>"
            f"<img class='camera' src='{html.escape(entry['camera'])}' alt='frame'>"
            f"<div class='maps'>{maps}</div>"
            f"<p>frame {int(entry['frame'])}, t {_number(entry['t'], 2)} s, "
            f"{html.escape(label)} {_number(entry[key], 3)}<br>"
            f"recorded {_number(entry['steer_true'], 3)}, "
            f"predicted {_number(entry['steer_pred'], 3)}</p></div>")
    return f"<h2>{html.escape(title)}</h2><div class='gallery'>{''.join(cards)}</div>"


def warnings_html(warnings: list[dict[str, Any]]) -> str:
    """The run's plausibility warnings (``drive_viz.model.plausibility``) as one prominent
    block above everything else; empty when there are none."""
    if not warnings:
        return ""
    items = "".join(f"<li><b>{html.escape(str(w['check']))}</b>: {html.escape(w['message'])}"
                    "</li>" for w in warnings)
    return ("<div class='warnings' role='alert' style='background:#5a1d1d;border:2px solid "
            "#e05050;padding:8px 16px;margin:12px 0'><h2 style='margin:4px 0'>Warning: these "
            "predictions are implausible</h2><ul>" + items + "</ul></div>")


def write_report(path: str | Path, summary: dict[str, Any], frames: pd.DataFrame,
                 galleries: dict[str, list[dict[str, Any]]]) -> None:
    """Write the report page to ``path``.

    ``summary``: the run's summary.json content; ``frames``: the per-frame table (one row per
    replayed frame, in video order); ``galleries``: ``by_error`` and ``off_road`` lists of
    worst frames with ``camera`` / ``maps`` data URIs (from the replay).
    """
    parameters = summary["parameters"]
    methods = list(parameters["methods"])
    video_row = {int(frame): k for k, frame in enumerate(frames["frame"].to_numpy())}
    for entries in galleries.values():
        for entry in entries:
            entry["position_in_video"] = video_row.get(int(entry["frame"]), 0)
    steering = summary["steering"]
    overview = _table([
        ("recording", html.escape(summary["recording"])),
        ("source", html.escape(summary["source"])),
        ("camera", html.escape(parameters["camera"])),
        ("model", html.escape(summary["model"])),
        ("methods", html.escape(", ".join(methods))),
        ("target", html.escape(parameters["target"])),
        ("rows", html.escape(f"{parameters['start']}..{parameters['end']} "
                             f"every {parameters['stride']}")),
        ("frames replayed", _number(summary["frames"]["replayed"])),
        ("frames skipped", _number(summary["frames"]["skipped"])),
        ("MAE", _number(steering["mae"])),
        ("RMSE", _number(steering["rmse"])),
        ("correlation", _number(steering["correlation"])),
        ("speed", f"{_number(summary['timing']['frames_per_second'], 1)} frames/s"),
    ])
    stat_names = sorted({name for stats in summary["statistics"].values() for name in stats})
    header = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{_number(summary['statistics'][m].get(name), 3)}</td>" for m in methods)
        + "</tr>" for name in stat_names)
    statistics = f"<table class='grid'><tr><th></th>{header}</tr>{body}</table>"
    skipped = summary["skipped"]
    skipped_html = ""
    if skipped["count"]:
        items = "".join(f"<li>{html.escape(entry['reason'])}</li>" for entry in skipped["frames"])
        skipped_html = (f"<h2>Skipped frames ({int(skipped['count'])})</h2>"
                        f"<ul class='skipped'>{items}</ul>")
    video = summary.get("video")
    video_html = (
        "<video id='video' src='annotated.mp4' controls muted playsinline preload='auto' "
        "width='960'></video>" if video else "<p>No video (replayed with --no-video).</p>")
    data = _plot_data(frames, methods)
    data["videoFps"] = video["fps"] if video else None
    replacements = {
        "{{TITLE}}": html.escape(f"drive-viz replay: {Path(summary['recording']).name}"),
        "{{WARNINGS}}": warnings_html(summary.get("warnings", [])),
        "{{OVERVIEW}}": overview,
        "{{VIDEO}}": video_html,
        "{{STATISTICS}}": statistics,
        "{{GALLERY}}": _gallery("Worst frames by steering error", galleries["by_error"],
                                "abs_error", "error")
        + _gallery("Worst frames by attention off the road", galleries.get("off_road", []),
                   "off_road_share", "off-road share"),
        "{{SKIPPED}}": skipped_html,
        "{{DATA}}": _json_for_script(data),
    }
    page = _MARKER.sub(lambda match: replacements[match.group(0)], PAGE)
    Path(path).write_text(page, encoding="utf-8")
