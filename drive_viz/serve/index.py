"""The index of runs: one HTML page, the same whether ``drive-viz index`` writes it to
``RUNS_DIR/index.html`` (opened from disk) or ``drive-viz serve`` sends it.

Rows are rendered here, every string from disk (folder names, recording and model paths,
notes) through ``html.escape``, and links are relative, percent-encoded paths, so the page works
from ``file://`` and from the server alike. A small inline script sorts by any column (click its
header) and filters by model, recording, kind and free text; it reads only the rows' cells and
``data-`` attributes and writes only ``textContent`` and ``hidden``. Without JavaScript the
table is still complete, newest first.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from urllib.parse import quote

from drive_viz.atomic import write_atomic
from drive_viz.errors import DriveVizError
from drive_viz.serve.runs import RunEntry, find_runs

INDEX_FILE = "index.html"
COLUMNS = (("kind", "text"), ("run", "text"), ("recording", "text"), ("model", "text"),
           ("date", "number"), ("MAE", "number"), ("autonomy", "number"),
           ("notes", "text"), ("report", "text"))


def runs_folder(path: str | Path) -> Path:
    """``path`` as an existing folder (resolved), or a one-line error naming it."""
    folder = Path(path)
    if not folder.is_dir():
        raise DriveVizError(f"{folder}: not a folder")
    return folder.resolve()


def _href(relative: str) -> str:
    return "./" + quote(relative, safe="/")


def _cell(text: str, sort_key: str | float | None = None, title: str = "") -> str:
    key = "" if sort_key is None else f" data-key='{html.escape(str(sort_key))}'"
    hint = f" title='{html.escape(title)}'" if title and title != text else ""
    return f"<td{key}{hint}>{html.escape(text)}</td>"


def _row(entry: RunEntry) -> str:
    report = (f"<td><a class='report' href='{html.escape(_href(entry.report))}'>"
              f"{html.escape(Path(entry.report).name)}</a></td>" if entry.report
              else "<td>none</td>")
    cells = [
        _cell(entry.kind),
        _cell(entry.path),
        _cell(entry.recording, title=entry.recording_full),
        _cell(entry.model, title=entry.model_full),
        _cell(entry.date, entry.time),
        _cell("" if entry.mae is None else f"{entry.mae:.4f}", entry.mae),
        _cell("" if entry.autonomy is None else f"{entry.autonomy:.1f}%", entry.autonomy),
        _cell("; ".join(entry.notes)),
        report,
    ]
    data = " ".join(f"data-{name}='{html.escape(value)}'" for name, value in (
        ("kind", entry.kind), ("model", entry.model), ("recording", entry.recording)))
    return f"<tr {data}>{''.join(cells)}</tr>"


def render_index(root: Path, entries: list[RunEntry]) -> str:
    """The index page for ``entries`` found under ``root``."""
    header = "".join(f"<th data-type='{kind}'>{html.escape(name)}</th>"
                     for name, kind in COLUMNS)
    rows = "".join(_row(entry) for entry in entries)
    empty = "" if entries else "<p>No runs found in this folder.</p>"
    title = html.escape(f"drive-viz runs: {root.name or root}")
    return (PAGE.replace("{{TITLE}}", title).replace("{{COUNT}}", str(len(entries)))
            .replace("{{HEADER}}", header).replace("{{ROWS}}", rows).replace("{{EMPTY}}", empty))


def index_page(root: Path) -> str:
    """The index page of the runs under ``root`` as they are now."""
    return render_index(root, find_runs(root))


def write_index(root: str | Path) -> Path:
    """Write ``root/index.html`` (atomically); returns its path."""
    folder = runs_folder(root)
    path = folder / INDEX_FILE
    write_atomic(path, index_page(folder))
    return path


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz index`` command."""
    path = write_index(args.runs_dir)
    print(f"index: {path}")
    return 0


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
       margin: 0 auto; max-width: 1400px; padding: 16px; }
h1 { font-size: 20px; } a { color: #7cc4ff; }
.filters { display: flex; gap: 12px; flex-wrap: wrap; margin: 10px 0; }
select, input { background: #26262c; color: #e8e8ea; border: 1px solid #444; padding: 3px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 3px 8px; text-align: left; vertical-align: top; }
th { cursor: pointer; user-select: none; border-bottom: 1px solid #444; white-space: nowrap; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #222228; }
td:nth-child(6), td:nth-child(7) { text-align: right; font-variant-numeric: tabular-nums; }
td:nth-child(8) { font-size: 12px; color: #bbb; max-width: 380px; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
<p><span id="shown">{{COUNT}}</span> of {{COUNT}} runs. Click a column to sort.</p>
<div class="filters">
<label>kind <select id="filter-kind"><option value="">all</option></select></label>
<label>model <select id="filter-model"><option value="">all</option></select></label>
<label>recording <select id="filter-recording"><option value="">all</option></select></label>
<label>search <input id="filter-text" type="search" placeholder="any text"></label>
</div>
{{EMPTY}}
<table id="runs"><thead><tr>{{HEADER}}</tr></thead><tbody>{{ROWS}}</tbody></table>
<script>
(function () {
  "use strict";
  var body = document.querySelector("#runs tbody");
  var rows = Array.prototype.slice.call(body.rows);
  var filters = ["kind", "model", "recording"];
  filters.forEach(function (name) {
    var select = document.getElementById("filter-" + name);
    var values = {};
    rows.forEach(function (row) { values[row.getAttribute("data-" + name)] = true; });
    Object.keys(values).sort().forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = value || "(none)";
      select.appendChild(option);
    });
    select.addEventListener("change", apply);
  });
  var text = document.getElementById("filter-text");
  text.addEventListener("input", apply);
  function apply() {
    var needle = text.value.toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var ok = filters.every(function (name) {
        var wanted = document.getElementById("filter-" + name).value;
        return wanted === "" || row.getAttribute("data-" + name) === wanted;
      }) && (needle === "" || row.textContent.toLowerCase().indexOf(needle) >= 0);
      row.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.getElementById("shown").textContent = String(shown);
  }
  var headers = Array.prototype.slice.call(document.querySelectorAll("#runs th"));
  headers.forEach(function (th, column) {
    th.addEventListener("click", function () {
      var descending = th.className === "asc";
      headers.forEach(function (other) { other.className = ""; });
      th.className = descending ? "desc" : "asc";
      var numeric = th.getAttribute("data-type") === "number";
      function key(row) {
        var cell = row.cells[column];
        var raw = cell.hasAttribute("data-key") ? cell.getAttribute("data-key")
                                                : cell.textContent;
        return numeric ? (raw === "" ? null : Number(raw)) : raw.toLowerCase();
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) { return 0; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        return (x < y ? -1 : 1) * (descending ? -1 : 1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  document.body.setAttribute("data-index-ready", "1");
}());
</script>
</body>
</html>
"""
