"""``FLEET/report.html``: the drives of a fleet ranked, its worst events, per-drive distributions.

A static page (no script): tables of the drives ranked by steering error and by attention
anomalies, the worst frames across the fleet (each a link to its drive's ``report.html#t=T``,
which seeks that report to recording time T), and one inline-SVG box plot per main statistic
with a row per drive (whiskers at the 5th and 95th percentiles, box from the 25th to the 75th,
a line at the median). Every string from a recording is escaped with ``html.escape``.

The anomaly rank combines three per-drive means of the main method's map statistics, each
ranked across the fleet: attention off the road (``1 - road_share``, high is worse; recordings
without masks have none), temporal correlation of consecutive maps (low is worse) and the
share of dead first-conv filters (high is worse). A drive's rank fraction on a statistic is its
mid-rank among the n drives that have it, divided by n (1 = the worst; tied drives share it);
its score is the mean of its rank fractions over the statistics it has.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.atomic import write_atomic
from drive_viz.report.html import _number, _table

WORST_EVENTS = 20
#: (label, column template, transform) of the per-drive distributions; ``{m}`` is the method.
DISTRIBUTIONS = (
    ("absolute steering error", "abs_error", None),
    ("attention off the road (1 - road_share)", "{m}_road_share", "complement"),
    ("temporal correlation of the maps", "{m}_temporal_corr", None),
    ("map entropy", "{m}_entropy", None),
    ("dead first-conv filters (share)", "first_conv_dead_share", None),
)
#: (key in an entry's ``attention``, label, True when high values are anomalous).
ANOMALIES = (("off_road_share", "attention off the road", True),
             ("temporal_corr", "temporal correlation", False),
             ("first_conv_dead_share", "dead first-conv filters", True))

STYLE = """body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
       margin: 0 auto; max-width: 1280px; padding: 16px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
a { color: #7cc4ff; }
table { border-collapse: collapse; } th, td { padding: 2px 10px; text-align: left; }
table.grid td { text-align: right; font-variant-numeric: tabular-nums; }
table.grid td.name { text-align: left; }
table.grid tr:nth-child(even), table.kv tr:nth-child(even) { background: #222228; }
svg.box text { fill: #ccc; font-size: 11px; }
ul.failed { color: #ff8080; }"""


def _run_link(entry: dict[str, Any], text: str, t: float | None = None) -> str:
    """A link to the drive's report (at recording time ``t``), or plain text without a run."""
    if not entry.get("run"):
        return html.escape(text)
    fragment = f"#t={t:.3f}" if t is not None else ""
    return (f"<a href='{html.escape(entry['run'])}/report.html{fragment}'>"
            f"{html.escape(text)}</a>")


def _ranked_by_error(entries: list[dict[str, Any]]) -> str:
    ranked = sorted(entries, key=lambda e: -(e["steering"]["mae"] or 0.0))
    rows = "".join(
        f"<tr><td>{k}</td><td class='name'>{_run_link(e, e['name'])}</td>"
        f"<td>{_number(e['frames'])}</td><td>{_number(e['steering']['mae'])}</td>"
        f"<td>{_number(e['steering']['rmse'])}</td>"
        f"<td>{_number(e['steering']['correlation'], 3)}</td></tr>"
        for k, e in enumerate(ranked, 1))
    return ("<table class='grid'><tr><th>#</th><th>drive</th><th>frames</th><th>MAE</th>"
            f"<th>RMSE</th><th>correlation</th></tr>{rows}</table>")


def anomaly_scores(entries: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each drive's anomaly score in [0, 1] (module docstring), None when it has none of the
    statistics. ``entries``: fleet.json recordings with status ok."""
    fractions: dict[str, list[float]] = {e["name"]: [] for e in entries}
    for key, _, high_is_bad in ANOMALIES:
        valued = {e["name"]: e["attention"][key] * (1 if high_is_bad else -1) for e in entries
                  if e["attention"].get(key) is not None}
        values = np.array(list(valued.values()), np.float64)
        for name, value in valued.items():  # mid-rank: ties share their rank
            below, tied = (values < value).sum(), (values == value).sum()
            fractions[name].append(float(below + (tied + 1) / 2) / len(values))
    return {name: float(np.mean(f)) if f else None for name, f in fractions.items()}


def _ranked_by_anomaly(entries: list[dict[str, Any]]) -> str:
    scores = anomaly_scores(entries)
    ranked = sorted(entries, key=lambda e: -(scores[e["name"]] or 0.0))
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in ANOMALIES)
    rows = "".join(
        f"<tr><td>{k}</td><td class='name'>{_run_link(e, e['name'])}</td>"
        f"<td>{_number(scores[e['name']], 2)}</td>"
        + "".join(f"<td>{_number(e['attention'].get(key), 3)}</td>" for key, _, _ in ANOMALIES)
        + "</tr>" for k, e in enumerate(ranked, 1))
    return (f"<table class='grid'><tr><th>#</th><th>drive</th><th>score</th>{header}</tr>"
            f"{rows}</table>")


def _worst_events(entries: list[dict[str, Any]], key: str, source: str, label: str) -> str:
    events = [(event[key], entry, event) for entry in entries
              for event in entry.get(source) or [] if event.get(key) is not None]
    events.sort(key=lambda item: -item[0])
    if not events:
        return "<p>None (no recording has the statistic).</p>"
    rows = "".join(
        f"<tr><td class='name'>{_run_link(entry, entry['name'], event['t'])}</td>"
        f"<td>{int(event['frame'])}</td><td>{_number(event['t'], 2)}</td>"
        f"<td>{_number(value, 3)}</td><td>{_number(event['steer_true'], 3)}</td>"
        f"<td>{_number(event['steer_pred'], 3)}</td></tr>"
        for value, entry, event in events[:WORST_EVENTS])
    return ("<table class='grid'><tr><th>drive (opens its report at that time)</th>"
            f"<th>frame</th><th>t (s)</th><th>{html.escape(label)}</th><th>recorded</th>"
            f"<th>predicted</th></tr>{rows}</table>")


def drive_quantiles(frames_dir: Path, entries: list[dict[str, Any]]
                    ) -> dict[str, dict[str, list[float] | None]]:
    """Per statistic label, per drive: its 5th, 25th, 50th, 75th and 95th percentiles over the
    drive's frames (from the dataset partition), or None when it has no finite value."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, list[float] | None]] = {label: {} for label, _, _ in DISTRIBUTIONS}
    for entry in entries:
        method = entry["attention"]["method"]
        columns = {label: template.format(m=method) for label, template, _ in DISTRIBUTIONS}
        part = frames_dir / f"recording={entry['name']}" / "part-0.parquet"
        available = set(pq.read_schema(part).names)
        table = pq.read_table(part, columns=sorted(set(columns.values()) & available))
        for label, _, transform in DISTRIBUTIONS:
            if columns[label] not in available:
                out[label][entry["name"]] = None
                continue
            values = table[columns[label]].to_numpy(zero_copy_only=False).astype(np.float64)
            values = values[np.isfinite(values)]
            if transform == "complement":
                values = 1.0 - values
            out[label][entry["name"]] = (np.percentile(values, [5, 25, 50, 75, 95]).tolist()
                                         if values.size else None)
    return out


def _box_plot(label: str, boxes: dict[str, list[float] | None]) -> str:
    """One SVG: a row per drive with its box (5/25/50/75/95th percentiles)."""
    present = {name: q for name, q in boxes.items() if q is not None}
    if not present:
        return ""
    low = min(q[0] for q in present.values())
    high = max(q[4] for q in present.values())
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    left, width, row = 170, 620, 18
    height = row * len(present) + 22

    def x(v: float) -> str:
        return f"{left + (v - low) / (high - low) * (width - left - 10):.1f}"

    parts = []
    for k, (name, (p5, p25, p50, p75, p95)) in enumerate(present.items()):
        mid = 6 + k * row + row / 2
        parts.append(
            f"<text x='4' y='{mid + 4:.1f}'>{html.escape(name[:26])}</text>"
            f"<line x1='{x(p5)}' x2='{x(p95)}' y1='{mid}' y2='{mid}' stroke='#888'/>"
            f"<rect x='{x(p25)}' y='{mid - 6}' width='{max(float(x(p75)) - float(x(p25)), 1):.1f}'"
            f" height='12' fill='#3a6ea5' stroke='#7cc4ff'/>"
            f"<line x1='{x(p50)}' x2='{x(p50)}' y1='{mid - 6}' y2='{mid + 6}' stroke='#fff'"
            f" stroke-width='2'/>")
    axis = (f"<text x='{left}' y='{height - 4}'>{low:.3g}</text>"
            f"<text x='{width - 60}' y='{height - 4}'>{high:.3g}</text>")
    return (f"<h3>{html.escape(label)}</h3><svg class='box' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>{''.join(parts)}{axis}</svg>")


def write_fleet_report(path: str | Path, fleet: dict[str, Any], frames_dir: Path) -> None:
    """Write the fleet page for ``fleet`` (fleet.json's content) to ``path`` atomically;
    ``frames_dir``: the fleet dataset (per-drive distributions are read from it)."""
    entries = fleet["recordings"]
    ok = [e for e in entries if e["status"] == "ok"]
    not_ok = [e for e in entries if e["status"] != "ok"]
    overview = _table([
        ("model", html.escape(fleet["model"]["path"])),
        ("methods (main first)", html.escape(", ".join(
            [fleet["parameters"]["layout"]]
            + [m for m in fleet["parameters"]["methods"] if m != fleet["parameters"]["layout"]]))),
        ("recordings", f"{len(ok)} replayed of {len(entries)}"
                       f" ({_number(fleet['resumed'])} kept from an earlier run)"),
        ("frames", _number(fleet["frames"])),
        ("speed", f"{_number(fleet['frames_per_second'], 1)} frames/s across the fleet"),
        ("cluster", html.escape(f"{fleet['cluster']['address']}, "
                                f"{fleet['cluster']['workers']} workers")),
    ])
    failed = ""
    if not_ok:
        items = "".join(f"<li>{html.escape(e['name'])} ({html.escape(e['recording'])}): "
                        f"{html.escape(e['status'])}: {html.escape(e['reason'] or '')}</li>"
                        for e in not_ok)
        failed = f"<h2>Not replayed ({len(not_ok)})</h2><ul class='failed'>{items}</ul>"
    body = [f"<h1>drive-viz fleet: {len(entries)} recordings</h1>", overview, failed]
    if ok:
        quantiles = drive_quantiles(frames_dir, ok)
        body += [
            "<h2>Drives ranked by steering error (MAE)</h2>", _ranked_by_error(ok),
            "<h2>Drives ranked by attention anomalies</h2>",
            "<p>Score: the mean over the statistics of each drive's rank fraction "
            "(1 = the most anomalous drive on that statistic).</p>", _ranked_by_anomaly(ok),
            "<h2>Worst frames across the fleet by steering error</h2>",
            _worst_events(ok, "abs_error", "worst_by_error", "|error|"),
            "<h2>Worst frames across the fleet by attention off the road</h2>",
            _worst_events(ok, "off_road_share", "worst_off_road", "off-road share"),
            "<h2>Per-drive distributions (5 / 25 / 50 / 75 / 95th percentiles)</h2>",
            *(_box_plot(label, quantiles[label]) for label, _, _ in DISTRIBUTIONS)]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>drive-viz fleet</title><style>{STYLE}</style></head><body>"
            + "".join(body) + "</body></html>")
    write_atomic(path, page)
