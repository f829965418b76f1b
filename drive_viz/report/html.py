"""``report.html``: one self-contained page per run that works offline from disk.

The page references ``annotated.mp4`` beside it (or carries it inside as a ``data:`` URI with
``embed_video``), draws its plots with the vendored uPlot library (``vendor/``, inlined with its
CSS, so nothing is fetched), and embeds the worst-frame thumbnails as ``data:`` JPEG URIs.
Every string that comes from a recording (paths, camera names, source, skip reasons) is
escaped with ``html.escape``; data reaches the script only as JSON inside
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped as ``\\u003c`` etc.,
so no recording text is ever interpolated into JS. Clicking a plot or a gallery card seeks the
video to that frame (video frame k is the k-th replayed row of the frames table).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drive_viz.render.colormap import DEFAULT_OPACITY, DEFAULT_PERCENTILE, DEFAULT_WINDOW, HEAT_LUT
from drive_viz.report.template import PAGE

MAX_PLOT_POINTS = 4000
#: Statistic: (plot title, y-axis title).
PLOTTED_STATISTICS = {
    "entropy": ("attention: entropy (0 = one pixel, 1 = uniform)", "entropy"),
    "lr_balance": ("attention: lr_balance (right-half minus left-half share)", "right - left"),
    "road_share": ("attention: road_share (share of the map on the road)", "on road"),
    "temporal_corr": ("attention: temporal_corr (correlation with the previous frame's map)",
                      "correlation")}
#: One colour per method in the statistics plots (the same order everywhere on the page).
METHOD_COLORS = ("#4cc9f0", "#f72585", "#b5e48c", "#ffd166", "#c77dff")
RECORDED_COLOR = "#3cdc5a"
PREDICTED_COLOR = "#ff3cdc"
ERROR_COLOR = "#f0b030"
#: The causal blobs' colour in the video (``overlay.CAUSAL_COLOR``).
CAUSAL_COLOR = "#00ffff"
#: What ranked each gallery when its entries do not say (runs written before events).
DEFAULT_RANKING = {"by_error": ("abs_error", False), "off_road": ("off_road_share", True)}
_MARKER = re.compile(r"\{\{([A-Z]+)\}\}")


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can close or open a tag."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite_list(values: np.ndarray, digits: int = 5) -> list[float | None]:
    return [round(float(v), digits) if math.isfinite(v) else None for v in values]


def empty_map_flags(frames: pd.DataFrame, method: str) -> np.ndarray | None:
    """(N,) bool: frames whose ``method`` map is zero everywhere, from the ``<method>_empty``
    column, or, in tables without it, from ``<method>_entropy`` (NaN exactly for an all-zero
    map, see ``drive_viz.attention.stats``); None when the table has neither."""
    if f"{method}_empty" in frames:
        return frames[f"{method}_empty"].to_numpy(bool)
    if f"{method}_entropy" in frames:
        return ~np.isfinite(frames[f"{method}_entropy"].to_numpy(np.float64))
    return None


def _runs(flags: np.ndarray, times: np.ndarray) -> list[list[float]]:
    """[first t, last t] of each run of consecutive True ``flags``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [[round(float(times[a]), 3), round(float(times[b - 1]), 3)]
            for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _plot_times(frames: pd.DataFrame, fps: float | None) -> np.ndarray:
    """(N,) seconds for the plots' x axis: the table's ``t``, or, where that is not finite and
    non-decreasing (the plots need a sorted axis), the row's place in the video / fps."""
    t = frames["t"].to_numpy(np.float64)
    if np.isfinite(t).all() and (np.diff(t) >= 0).all():
        return t
    return np.arange(len(frames)) / (fps or 1.0)


def _plot_data(frames: pd.DataFrame, methods: list[str], fps: float | None) -> dict[str, Any]:
    """Series for the plots, thinned to at most MAX_PLOT_POINTS rows (every k-th); the spans
    of empty maps come from every row."""
    step = max(1, math.ceil(len(frames) / MAX_PLOT_POINTS))
    index = np.arange(0, len(frames), step)
    thinned = frames.iloc[index]

    def column(name: str) -> list[float | None]:
        return _finite_list(thinned[name].to_numpy(np.float64))

    plots = [
        {"title": "steering (positive = right)", "yLabel": "steering", "zero": True,
         "series": [
            {"name": "recorded", "color": RECORDED_COLOR, "values": column("steer_true")},
            {"name": "predicted", "color": PREDICTED_COLOR, "values": column("steer_pred")}]},
        {"title": "absolute error |predicted - recorded|", "yLabel": "error", "zero": False,
         "series": [{"name": "error", "color": ERROR_COLOR, "values": column("abs_error")}]},
    ]
    for stat, (title, label) in PLOTTED_STATISTICS.items():
        series = [{"name": method, "color": METHOD_COLORS[k % len(METHOD_COLORS)],
                   "values": column(f"{method}_{stat}")}
                  for k, method in enumerate(methods) if f"{method}_{stat}" in thinned
                  and np.isfinite(thinned[f"{method}_{stat}"].to_numpy(np.float64)).any()]
        if series:
            plots.append({"title": title, "yLabel": label,
                          "zero": stat == "lr_balance", "series": series})
    if "causal_mass_share" in thinned:
        plots.append({"title": "causal blobs: share of the layout map's mass in causal blobs",
                      "yLabel": "causal share", "zero": False,
                      "series": [{"name": "causal mass share", "color": CAUSAL_COLOR,
                                  "values": column("causal_mass_share")}]})
    times = _plot_times(frames, fps)
    empty = {}
    for method in methods:
        flags = empty_map_flags(frames, method)
        if flags is not None and flags.any():
            empty[method] = _runs(flags, times)
    return {"videoIndex": index.tolist(),
            "frame": thinned["frame"].astype(int).tolist(),
            "t": _finite_list(times[index], 3),
            "plots": plots, "empty": empty}


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def heat_legend() -> str:
    """The inferno colour bar (as a CSS gradient of the same lookup table the video uses) and
    what heat 0 and 1 mean under the running scale."""
    stops = ", ".join(
        f"rgb({r},{g},{b}) {100 * k / 10:g}%"
        for k, (r, g, b) in enumerate(HEAT_LUT[np.linspace(0, 255, 11).round().astype(int), 0]))
    return (
        "<div id='heat-legend'><div class='bar' style='background: linear-gradient(to right, "
        f"{stops})'></div><div class='ends'><span>0</span><span>0.5</span><span>1</span></div>"
        "<p><b>Heat</b> = clip(|map| / scale, 0, 1), blended over the picture with opacity "
        f"{DEFAULT_OPACITY:g} &times; heat. <b>0</b>: the map is zero there (picture unchanged). "
        "<b>1</b>: |map| at or above the scale, which is the median over the last "
        f"{DEFAULT_WINDOW} frames of each frame's {DEFAULT_PERCENTILE:g}th percentile of |map| "
        "(about the brightest 1% of a typical recent frame). One scale per run and method, not "
        "per frame, so a frame with weaker attention looks weaker.</p></div>")


def _ranking(entry: dict[str, Any], gallery: str, main_method: str) -> tuple[str, str | None]:
    """(statistic, method or None) that ranked a gallery entry."""
    ranked = entry.get("ranked_by")
    if isinstance(ranked, dict) and ranked.get("statistic"):
        return str(ranked["statistic"]), ranked.get("method")
    statistic, per_method = DEFAULT_RANKING.get(gallery, (gallery, False))
    return statistic, main_method if per_method else None


def _event_text(entry: dict[str, Any]) -> str:
    event = entry.get("event")
    if not isinstance(event, dict):
        return ""
    frames = int(event.get("frames", 1))
    if frames <= 1:
        return "<span class='event'>event: this frame alone</span>"
    return (f"<span class='event'>event: {_number(event.get('start_t'), 2)}&ndash;"
            f"{_number(event.get('end_t'), 2)} s, {frames} frames (this one the worst)</span>")


def _gallery(name: str, title: str, entries: list[dict[str, Any]], main_method: str,
             empty: dict[int, list[str]]) -> str:
    if not entries:
        return ""
    cards = []
    for entry in entries:
        statistic, method = _ranking(entry, name, main_method)
        value = entry.get(statistic)
        ranked = f"{statistic} of {method}" if method else statistic
        maps = "".join(
            f"<figure><img src='{html.escape(uri)}' alt='{html.escape(m)}'>"
            f"<figcaption>{html.escape(m)}"
            + (" <span class='no-evidence'>empty</span>"
               if m in empty.get(int(entry["frame"]), []) else "")
            + "</figcaption></figure>"
            for m, uri in entry["maps"].items())
        cards.append(
            f"<div class='card' data-video-index='{int(entry['position_in_video'])}'>"
            f"<img class='camera' src='{html.escape(entry['camera'])}' alt='frame'>"
            f"<div class='maps'>{maps}</div>"
            f"<p>frame {int(entry['frame'])}, t {_number(entry['t'], 2)} s, "
            f"error {_number(entry['abs_error'], 3)}<br>"
            f"<span class='ranked-by'>ranked by {html.escape(ranked)}: "
            f"{_number(value, 3)}</span><br>{_event_text(entry)}<br>"
            f"recorded {_number(entry['steer_true'], 3)}, "
            f"predicted {_number(entry['steer_pred'], 3)}</p></div>")
    note = ("<p class='note'>Frames close in time to a worse one are merged into its event; "
            "each card is the worst frame of one event.</p>"
            if any(isinstance(entry.get("event"), dict) for entry in entries) else "")
    return (f"<h2>{html.escape(title)}</h2>{note}"
            f"<div class='gallery' id='gallery-{html.escape(name)}'>{''.join(cards)}</div>")


def _empty_note(frames: pd.DataFrame, methods: list[str], target: str) -> str:
    counts = {}
    for method in methods:
        flags = empty_map_flags(frames, method)
        if flags is not None and flags.any():
            counts[method] = int(flags.sum())
    if not counts:
        return ""
    listed = ", ".join(f"{html.escape(m)} on {n} of {len(frames)} frames "
                       f"({100 * n / len(frames):.1f}%)" for m, n in counts.items())
    return (f"<p class='note' id='empty-maps'><span class='no-evidence'>no evidence</span> "
            f"The map is zero everywhere for {listed}: no evidence for the target "
            f"{html.escape(target)} on those frames (grey bands in the plots). For a regression "
            "target this is expected, not a failure: Grad-CAM for steer is relu(&sum;<sub>k</sub> "
            "w<sub>k</sub> A<sub>k</sub>), zero when no feature pushes the output to the "
            "right.</p>")


def _video_html(video: dict[str, Any] | None, embed_video: str | Path | None) -> str:
    if not video:
        return "<p>No video (replayed with --no-video).</p>"
    if embed_video is not None:
        source = ("data:video/mp4;base64,"
                  + base64.b64encode(Path(embed_video).read_bytes()).decode("ascii"))
    else:
        source = html.escape(str(video.get("file", "annotated.mp4")))
    width = int(video.get("width", 1280))
    height = int(video.get("height", 720))
    return (
        f"<div class='player'><video id='video' src='{source}' muted playsinline "
        f"preload='auto' width='{width}' height='{height}'></video>"
        "<div id='video-missing' hidden><b>The video is not beside this page.</b> "
        "The report plays <code>annotated.mp4</code> from its own folder: keep "
        "<code>report.html</code> next to <code>annotated.mp4</code> (move or copy the whole "
        "run folder), or rerun with <code>--embed-video</code> to put the video inside "
        "the page.</div>"
        "<div class='controls'><button id='play' type='button'>play</button>"
        "<button id='back' type='button' title='previous frame'>&#9664;</button>"
        "<button id='forward' type='button' title='next frame'>&#9654;</button>"
        "<input id='seek' type='range' min='0' max='1' step='any' value='0'>"
        "<span id='clock'>0.00 s</span>"
        "<select id='rate'><option value='0.25'>0.25x</option><option value='0.5'>0.5x"
        "</option><option value='1' selected>1x</option><option value='2'>2x</option>"
        "</select></div></div>")


def _vendored(name: str) -> str:
    return resources.files("drive_viz.report").joinpath("vendor", name).read_text("utf-8")


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
                 galleries: dict[str, list[dict[str, Any]]], *,
                 embed_video: str | Path | None = None) -> None:
    """Write the report page to ``path``.

    ``summary``: the run's summary.json content; ``frames``: the per-frame table (one row per
    replayed frame, in video order); ``galleries``: ``by_error`` and ``off_road`` lists of
    worst frames with ``camera`` / ``maps`` data URIs, and optionally ``ranked_by``
    (``{"statistic", "method"}``) and ``event`` (``{"start_t", "end_t", "frames"}``);
    ``embed_video``: an MP4 file to put inside the page as a data URI (None: the page plays
    ``annotated.mp4`` beside it).
    """
    parameters = summary["parameters"]
    methods = list(parameters["methods"])
    main_method = parameters.get("layout") or methods[0]
    video_row = {int(frame): k for k, frame in enumerate(frames["frame"].to_numpy())}
    empty_by_frame: dict[int, list[str]] = {}
    for method in methods:
        flags = empty_map_flags(frames, method)
        if flags is not None:
            for frame in frames["frame"].to_numpy()[flags]:
                empty_by_frame.setdefault(int(frame), []).append(method)
    for entries in galleries.values():
        for entry in entries:
            entry["position_in_video"] = video_row.get(int(entry["frame"]), 0)
    steering = summary["steering"]
    video = summary.get("video")
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
        *_causal_row(summary.get("causal_blobs")),
        *([("video", html.escape(f"{video['width']}x{video['height']}, {video['quality']} "
                                 f"quality (x264 QP {video['qp']})"))]
          if video and {"width", "height", "quality", "qp"} <= set(video) else []),
    ])
    stat_names = sorted({name for stats in summary["statistics"].values() for name in stats})
    header = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{_number(summary['statistics'][m].get(name), 3)}</td>" for m in methods)
        + "</tr>" for name in stat_names)
    statistics = f"<table class='grid'><tr><th></th>{header}</tr>{body}</table>"
    skipped_html = _skipped_section(summary["skipped"])
    data = _plot_data(frames, methods, video["fps"] if video else None)
    data["videoFps"] = video["fps"] if video else None
    replacements = {
        "{{TITLE}}": html.escape(f"drive-viz replay: {Path(summary['recording']).name}"),
        "{{UPLOTCSS}}": _vendored("uPlot.min.css"),
        "{{WARNINGS}}": warnings_html(summary.get("warnings", [])),
        "{{OVERVIEW}}": overview,
        "{{VIDEO}}": _video_html(video, embed_video),
        "{{LEGEND}}": heat_legend(),
        "{{EMPTY}}": _empty_note(frames, methods, str(parameters["target"])),
        "{{STATISTICS}}": statistics,
        "{{GALLERY}}": _gallery("by_error", "Worst frames by steering error",
                                galleries.get("by_error", []), main_method, empty_by_frame)
        + _gallery("off_road", "Worst frames by attention off the road",
                   galleries.get("off_road", []), main_method, empty_by_frame),
        "{{SKIPPED}}": skipped_html,
        "{{DATA}}": _json_for_script(data),
        "{{UPLOT}}": _vendored("uPlot.iife.min.js"),
    }
    page = _MARKER.sub(lambda match: replacements[match.group(0)], PAGE)
    Path(path).write_text(page, encoding="utf-8")


def _causal_row(causal: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The overview's ``causal blobs`` row (none without ``summary["causal_blobs"]``)."""
    if not causal:
        return []
    return [("causal blobs", html.escape(
        f"{_number(causal['causal_mass_share'], 3)} of the {causal['method']} map's mass is "
        f"causal ({_number(causal['causal_blobs_per_frame'], 2)} of "
        f"{_number(causal['blobs_per_frame'], 2)} blobs per frame)"))]


def _compare_plots(frames: pd.DataFrame, summary: dict[str, Any]) -> dict[str, Any]:
    """The compare report's series (every k-th row, at most MAX_PLOT_POINTS): every model's
    steering with the recorded, and per pair |prediction difference| and map agreement."""
    labels = list(summary["labels"])
    step = max(1, math.ceil(len(frames) / MAX_PLOT_POINTS))
    index = np.arange(0, len(frames), step)
    thinned = frames.iloc[index]

    def column(name: str) -> list[float | None]:
        return _finite_list(thinned[name].to_numpy(np.float64))

    colors = [PREDICTED_COLOR, *METHOD_COLORS]
    plots = [{"title": "steering (positive = right): every model and the recorded",
              "yLabel": "steering", "zero": True, "series": [
                  {"name": "recorded", "color": RECORDED_COLOR, "values": column("steer_true")},
                  *({"name": label, "color": colors[k % len(colors)],
                     "values": column(f"{label}_steer_pred")} for k, label in enumerate(labels))]}]
    pairs = list(summary["pairs"])
    plots.append({"title": "steering disagreement |A - B| per pair", "yLabel": "|A - B|",
                  "zero": False, "series": [
                      {"name": name, "color": METHOD_COLORS[k % len(METHOD_COLORS)],
                       "values": _finite_list(np.abs(thinned[f"{name}_pred_diff"]
                                                     .to_numpy(np.float64)))}
                      for k, name in enumerate(pairs)]})
    method = summary["parameters"]["layout"]
    for statistic, label in (("pearson", "Pearson"), ("top5_iou", "top-5% IoU")):
        plots.append({"title": f"attention agreement per pair: {label} of the {method} maps "
                               "on the camera-frame cells both models see",
                      "yLabel": label, "zero": False, "series": [
                          {"name": name, "color": METHOD_COLORS[k % len(METHOD_COLORS)],
                           "values": column(f"{name}_{method}_{statistic}")}
                          for k, name in enumerate(pairs)]})
    times = _plot_times(frames, summary["video"]["fps"] if summary.get("video") else None)
    return {"videoIndex": index.tolist(), "frame": thinned["frame"].astype(int).tolist(),
            "t": _finite_list(times[index], 3), "plots": plots, "empty": {}}


def _compare_gallery(name: str, title: str, entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    cards = []
    for entry in entries:
        maps = "".join(f"<figure><img src='{html.escape(uri)}' alt='{html.escape(label)}'>"
                       f"<figcaption>{html.escape(label)}: "
                       f"{_number(entry['steer_pred'].get(label), 3)}</figcaption></figure>"
                       for label, uri in entry["maps"].items())
        cards.append(
            f"<div class='card' data-video-index='{int(entry['position_in_video'])}'>"
            f"<div class='maps'>{maps}</div>"
            f"<p>frame {int(entry['frame'])}, t {_number(entry['t'], 2)} s, recorded "
            f"{_number(entry['steer_true'], 3)}<br><span class='ranked-by'>ranked by "
            f"{html.escape(str(entry['statistic']))}: {_number(entry['value'], 3)}</span></p>"
            "</div>")
    return (f"<h2>{html.escape(title)}</h2><p class='note'>Frames close in time to a worse one "
            "are merged into its event; each card is the worst frame of one event and shows "
            "every model's map on that frame, with its prediction.</p>"
            f"<div class='gallery' id='gallery-{html.escape(name)}'>{''.join(cards)}</div>")


def write_compare_report(path: str | Path, summary: dict[str, Any], frames: pd.DataFrame,
                         galleries: dict[str, list[dict[str, Any]]], *,
                         embed_video: str | Path | None = None) -> None:
    """Write a compare run's report page (``drive_viz.runs.compare``) to ``path``, with
    ``write_report``'s parameters: the models' steering, pairwise disagreement over time
    (clicks seek the video) and the disagreement events with every model's map
    (``galleries`` ``<a>_vs_<b>_steering`` / ``_attention``, entries with ``maps`` label ->
    data URI)."""
    labels = list(summary["labels"])
    video_row = {int(frame): k for k, frame in enumerate(frames["frame"].to_numpy())}
    for entries in galleries.values():
        for entry in entries:
            entry["position_in_video"] = video_row.get(int(entry["frame"]), 0)
    parameters = summary["parameters"]
    overview = _table([
        ("recording", html.escape(summary["recording"])),
        ("camera", html.escape(parameters["camera"])),
        ("main method", html.escape(parameters["layout"])),
        ("target", html.escape(summary["target"])),
        ("frames compared", _number(summary["frames"]["replayed"])),
        ("frames skipped", _number(summary["frames"]["skipped"])),
        *((f"model {label}", html.escape(summary["model_files"][label])) for label in labels),
    ])
    models = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{_number(m['mae'])}</td>"
        f"<td>{_number(m['rmse'])}</td><td>{_number(m['correlation'])}</td></tr>"
        for label, m in summary["models"].items())
    pairs = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{_number(p['share_a_better'], 3)}</td>"
        f"<td>{_number(p['mae_difference']['value'])} [{_number(p['mae_difference']['low'])}, "
        f"{_number(p['mae_difference']['high'])}]</td>"
        f"<td>{_number(p['mean_abs_pred_diff'])}</td>"
        f"<td>{_number(p['agreement']['pearson'], 3)}</td>"
        f"<td>{_number(p['agreement']['top5_iou'], 3)}</td></tr>"
        for name, p in summary["pairs"].items())
    statistics = (
        "<h2>Models</h2><table class='grid'><tr><th></th><th>MAE</th><th>RMSE</th>"
        f"<th>correlation</th></tr>{models}</table>"
        "<h2>Pairs</h2><table class='grid'><tr><th></th><th>share of frames A better</th>"
        "<th>MAE(A) - MAE(B) [95% block bootstrap]</th><th>mean |A - B|</th>"
        f"<th>mean Pearson</th><th>mean top-5% IoU</th></tr>{pairs}</table>")
    warnings = [{**w, "check": f"{label}: {w['check']}"}
                for label, m in summary["models"].items() for w in m.get("warnings", [])]
    gallery = "".join(
        _compare_gallery(f"{name}_steering", f"{name}: largest steering disagreement",
                         galleries.get(f"{name}_steering", []))
        + _compare_gallery(f"{name}_attention", f"{name}: lowest attention agreement "
                           "(1 - Pearson)", galleries.get(f"{name}_attention", []))
        for name in summary["pairs"])
    skipped_html = _skipped_section(summary["skipped"])
    video = summary.get("video")
    data = _compare_plots(frames, summary)
    data["videoFps"] = video["fps"] if video else None
    replacements = {
        "{{TITLE}}": html.escape(f"drive-viz compare: {Path(summary['recording']).name} "
                                 f"({', '.join(labels)})"),
        "{{UPLOTCSS}}": _vendored("uPlot.min.css"),
        "{{WARNINGS}}": warnings_html(warnings),
        "{{OVERVIEW}}": overview,
        "{{VIDEO}}": _video_html(video, embed_video),
        "{{LEGEND}}": heat_legend(),
        "{{EMPTY}}": "",
        "{{STATISTICS}}": statistics,
        "{{GALLERY}}": gallery,
        "{{SKIPPED}}": skipped_html,
        "{{DATA}}": _json_for_script(data),
        "{{UPLOT}}": _vendored("uPlot.iife.min.js"),
    }
    page = _MARKER.sub(lambda match: replacements[match.group(0)], PAGE)
    Path(path).write_text(page, encoding="utf-8")


def _skipped_section(skipped: dict[str, Any]) -> str:
    """The report's list of skipped frames (summary.json's ``skipped``), or "" if none."""
    if not skipped["count"]:
        return ""
    items = "".join(f"<li>{html.escape(entry['reason'])}</li>" for entry in skipped["frames"])
    return (f"<h2>Skipped frames ({int(skipped['count'])})</h2>"
            f"<ul class='skipped'>{items}</ul>")
