"""``live --serve`` end to end (a real ``drive-viz live`` process, headless Chromium, Ctrl-C)
and the index of runs (a folder mixing real runs, other kinds, old, partial and foreign
folders; in Chromium from disk and through ``drive-viz serve``).

Expected values come from the runs' own tables (MAE, autonomy by its formula), from the kinds
each folder was built as, and from what the browser shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import av
import numpy as np
import pandas as pd
import pytest
from support import CHROMIUM, NO_CHROMIUM, HeadlessPage

from drive_viz.cli import main
from drive_viz.live import INTERVENTION_PENALTY_S
from drive_viz.serve.files import serve
from drive_viz.serve.index import INDEX_FILE, write_index
from drive_viz.serve.runs import find_runs

FPS = 20.0
EVIL = "</script><script>alert('x')</script><img src=x onerror=alert(1)>"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "runs"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from drive_viz.model.dave2 import build_dave2

    path = tmp_path_factory.mktemp("serve_model") / "tiny.keras"
    build_dave2(seed=0).save(path)
    return path


class LiveProcess:
    """``drive-viz live --serve 127.0.0.1:0 --out RUN`` in its own process (so Ctrl-C is a
    real SIGINT); ``url`` once the page answers."""

    def __init__(self, model: Path, run: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.run = run
        self.process = subprocess.Popen(
            [sys.executable, "-m", "drive_viz.cli", "live", "--model", str(model),
             "--frames", "100000", "--fps", str(FPS), "--seed", "5", "--out", str(run),
             "--serve", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.stderr: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.process.stderr:
                self.stderr.append(line)
                match = re.search(r"live page at (http://\S+)", line)
                if match:
                    self.url = match.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(180):
            self.process.kill()
            pytest.fail(f"live did not start its page: {''.join(self.stderr)[-2000:]}")

    def stop(self) -> tuple[int, str]:
        """Ctrl-C; the exit status and stdout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        stdout, _ = self.process.communicate(timeout=120)
        return self.process.returncode, stdout


@pytest.fixture(scope="module")
def live_session(model, runs_dir) -> LiveProcess:
    session = LiveProcess(model, runs_dir / "2026-12" / "live-drive")
    yield session
    if session.process.poll() is None:
        session.process.kill()
        session.process.wait()


@pytest.fixture(scope="module")
def live_run(live_session) -> Path:
    if live_session.process.poll() is None:
        time.sleep(1.0)
        live_session.stop()
    return live_session.run


def rows_from_page(url: str, count: int) -> list[dict]:
    """Read /events until ``count`` rows arrived."""
    rows: list[dict] = []
    with urllib.request.urlopen(url + "events", timeout=30) as response:
        for line in response:
            if line.startswith(b"data: "):
                rows.extend(json.loads(line[6:]))
                if len(rows) >= count:
                    return rows
    return rows


CANVAS_HASH = """(function () {
  var img = document.getElementById("stream");
  if (!img.naturalWidth) { return null; }
  var canvas = document.createElement("canvas");
  canvas.width = 320; canvas.height = 180;
  var g = canvas.getContext("2d");
  g.drawImage(img, 0, 0, 320, 180);
  var d = g.getImageData(0, 0, 320, 180).data, h = 0;
  for (var i = 0; i < d.length; i++) { h = (h * 31 + d[i]) >>> 0; }
  return h;
}())"""


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_live_page_streams_and_plots_in_chromium(live_session, tmp_path) -> None:
    with HeadlessPage(tmp_path / "profile") as page:
        page.goto(live_session.url)
        page.wait_for("document.body.getAttribute('data-live-ready') === '1'")
        page.wait_for("Number(document.body.getAttribute('data-plot-points')) >= 5", 60)
        hashes, points, frames = [], [], []
        for _ in range(3):
            hashes.append(page.wait_for(CANVAS_HASH, 30))
            points.append(int(page.run("document.body.getAttribute('data-plot-points')")))
            frames.append(int(page.run("document.body.getAttribute('data-last-frame')")))
            time.sleep(1.0)
        shown = page.run("""(function () {
            var out = {};
            document.querySelectorAll('#numbers tr').forEach(function (tr) {
              out[tr.cells[0].textContent] = tr.cells[1].textContent; });
            return out; }())""")
        canvases = page.run("document.querySelectorAll('#plots .uplot canvas').length")
        assert page.errors == []
    assert len(set(hashes)) == 3, hashes  # the stream's picture changed each second
    assert points[0] < points[1] < points[2] or points[2] == 600  # the plots grew
    assert frames[0] < frames[1] < frames[2]
    assert canvases == 2
    assert shown["autonomy (%)"] != "n/a" and shown["frame"] != "-"
    # the numbers shown are the run's: compare with the table live writes (after Ctrl-C)
    code, _ = live_session.stop()
    assert code == 0
    table = pd.read_parquet(live_session.run / "frames.parquet").set_index("frame")
    row = table.loc[int(shown["frame"])]
    assert shown["predicted steer"] == f"{row['steer_pred']:.3f}"
    assert shown["recorded steer"] == f"{row['steer_true']:.3f}"
    seconds = (int(shown["frame"]) + 1) / FPS
    autonomy = max(0.0, 100 * (1 - row["interventions"] * INTERVENTION_PENALTY_S / seconds))
    assert shown["autonomy (%)"] == f"{autonomy:.1f}"


def test_ctrl_c_stops_cleanly_with_outputs_complete(live_session) -> None:
    if live_session.process.poll() is None:
        rows = rows_from_page(live_session.url, 5)
        assert [row["frame"] for row in rows[-5:]] == sorted(row["frame"] for row in rows[-5:])
        ended = threading.Event()

        def listen() -> None:
            with urllib.request.urlopen(live_session.url + "events", timeout=60) as response:
                for line in response:
                    if line.startswith(b"event: end"):
                        ended.set()
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(0.5)
        code, stdout = live_session.stop()
        listener.join(30)
        assert ended.is_set()  # open pages are told the run ended
        assert code == 0 and "live synthetic" in stdout
    run = live_session.run
    assert not [p.name for p in run.iterdir() if p.name.endswith(".partial")]
    summary = json.loads((run / "summary.json").read_text())
    table = pd.read_parquet(run / "frames.parquet")
    assert summary["stopped_early"] is True
    assert summary["frames"] == len(table) > 0
    with av.open(str(run / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(table)


# --- the index of runs ----------------------------------------------------------------------

def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def mixed(runs_dir, live_run, model) -> dict[str, str]:
    """Fill RUNS_DIR with one folder of each sort; returns the expected kind of each run."""
    replay = runs_dir / "replay-1"
    assert main(["replay", str(live_run / "recording"), "--model", str(model), "--out",
                 str(replay), "--end", "12", "--quiet"]) == 0
    _write(runs_dir / "eval" / "evaluation.json", json.dumps({
        "recording": "/data/drive-7", "model": "/models/other.keras", "camera": "center",
        "frames": [0, 5], "methods": ["saliency", "sobel"], "prediction_mae": 0.0421,
        "verdicts": {"saliency": "passes", "sobel": "fails"}}))
    _write(runs_dir / "eval" / "evaluation.html", "<p>evaluation</p>")
    _write(runs_dir / "old" / "frames.csv", "frame,steer_true\n0,0.1\n")
    (runs_dir / "old" / "annotated.mp4").write_bytes(b"\0" * 64)
    _write(runs_dir / "old-summary" / "summary.json", json.dumps({"mae": 0.1, "frames": 12}))
    _write(runs_dir / "broken" / "summary.json", "{not json")
    _write(runs_dir / "broken" / "report.html", "<p>old report</p>")
    _write(runs_dir / "partial" / ".annotated.mp4.partial", "half")
    _write(runs_dir / "partial" / "recording" / "meta.json", "{}")
    _write(runs_dir / "notes" / "readme.txt", "not a run")
    _write(runs_dir / "notes" / "deeper" / "x" / "run" / "summary.json",
           (replay / "summary.json").read_text())
    _write(runs_dir / ".trash" / "run" / "summary.json", (replay / "summary.json").read_text())
    _write(runs_dir / "fleet" / "fleet.json", json.dumps({
        "model": "/models/fleet.keras",
        "recordings": [{"name": "a", "mae": 0.1}, {"name": "b", "mae": 0.3},
                       {"name": "c", "error": "frames.csv: corrupt"}]}))
    _write(runs_dir / "fleet" / "runs" / "a" / "summary.json",
           (replay / "summary.json").read_text())
    _write(runs_dir / "compare" / "summary.json", json.dumps({
        "kind": "compare", "recording": "/data/drive-7",
        "models": {"A": {"mae": 0.1}, "B": {"mae": 0.2}}}))
    evil = json.loads((replay / "summary.json").read_text())
    evil.update(recording=f"/data/{EVIL}", model=f"/m/{EVIL}.keras")
    _write(runs_dir / EVIL.replace("/", "_") / "summary.json", json.dumps(evil))
    (runs_dir / "link").symlink_to(replay, target_is_directory=True)
    return {"2026-12/live-drive": "live", "replay-1": "replay", "eval": "evaluate",
            "old": "unknown", "old-summary": "unknown", "broken": "unknown",
            "partial": "incomplete", "notes/deeper/x/run": "replay", "fleet": "fleet",
            "compare": "compare", EVIL.replace("/", "_"): "replay"}


def test_index_finds_every_run_with_its_kind(mixed, runs_dir, live_run) -> None:
    entries = {entry.path: entry for entry in find_runs(runs_dir)}
    assert {path: entry.kind for path, entry in entries.items()} == mixed
    live = entries["2026-12/live-drive"]
    table = pd.read_parquet(live_run / "frames.parquet")
    seconds = len(table) / FPS
    autonomy = max(0.0, 100 * (1 - table["intervention"].sum() * INTERVENTION_PENALTY_S
                               / seconds))
    assert live.autonomy == pytest.approx(autonomy)
    assert live.mae == pytest.approx(np.mean(np.abs(table["steer_pred"] - table["steer_true"])))
    assert live.recording == "synthetic world, seed 5" and live.model == "tiny.keras"
    replayed = pd.read_parquet(runs_dir / "replay-1" / "frames.parquet")
    assert entries["replay-1"].mae == pytest.approx(replayed["abs_error"].mean())
    assert entries["replay-1"].report == "replay-1/report.html"
    assert entries["eval"].mae == 0.0421 and entries["eval"].report == "eval/evaluation.html"
    assert "saliency: passes" in entries["eval"].notes
    assert entries["fleet"].mae == pytest.approx(0.2) and "1 failed" in entries["fleet"].notes
    assert entries["fleet"].recording == "3 recordings"
    assert entries["compare"].model == "A vs B"
    assert entries["broken"].report == "broken/report.html"
    assert entries["partial"].report is None


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])
        self.rows += tag == "tr"


def test_index_file_escapes_and_links_resolve(mixed, runs_dir, capsys) -> None:
    assert main(["index", str(runs_dir)]) == 0
    assert str(runs_dir / INDEX_FILE) in capsys.readouterr().out
    page = (runs_dir / INDEX_FILE).read_text()
    assert "alert" in page and "<script>alert" not in page and "<img src=x" not in page
    parser = Links()
    parser.feed(page)
    assert parser.rows == len(mixed) + 1  # the header row
    linked = [runs_dir / unquote(href) for href in parser.hrefs]
    assert linked and all(path.is_file() for path in linked)
    assert all(path.resolve().is_relative_to(runs_dir.resolve()) for path in linked)
    assert write_index(runs_dir) == runs_dir / INDEX_FILE  # rewriting is fine
    assert not list(runs_dir.glob(".*.partial"))
    assert main(["index", str(runs_dir / "replay-1" / "summary.json")]) == 2


FILTER = """(function (name, value) {
  var select = document.getElementById("filter-" + name);
  select.value = value;
  select.dispatchEvent(new Event("change"));
  return Array.prototype.filter.call(document.querySelectorAll("#runs tbody tr"),
    function (tr) { return !tr.hidden; }).map(function (tr) {
      return [tr.getAttribute("data-" + name), tr.cells[1].textContent]; });
})"""
MAE_COLUMN = """Array.prototype.filter.call(document.querySelectorAll("#runs tbody tr"),
  function (tr) { return !tr.hidden; }).map(function (tr) { return tr.cells[5].textContent; })"""

OPEN_REPORT = """(function (run) {
  Array.prototype.filter.call(document.querySelectorAll("#runs tbody tr"), function (tr) {
    return tr.cells[1].textContent === run; })[0].querySelector("a.report").click();
})"""


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_index_in_chromium_filters_sorts_and_opens_a_report(mixed, runs_dir, tmp_path) -> None:
    server = serve(runs_dir, "127.0.0.1", 0)
    try:
        with HeadlessPage(tmp_path / "profile") as page:
            for url in (server.url, (runs_dir / INDEX_FILE).as_uri()):
                page.goto(url)
                page.wait_for("document.body.getAttribute('data-index-ready') === '1'")
                shown = page.run(FILTER + "('model', 'tiny.keras')")
                expected = sorted(p for p, k in mixed.items() if k in ("live", "replay")
                                  and "script" not in p)
                assert sorted(path for _, path in shown) == expected
                page.run(FILTER + "('model', '')")
                page.run("document.querySelectorAll('#runs th')[5].click()")  # MAE ascending
                values = [float(v) for v in page.run(MAE_COLUMN) if v]
                assert values == sorted(values) and len(values) >= 5
                page.run("document.querySelectorAll('#runs th')[5].click()")  # descending
                values = [float(v) for v in page.run(MAE_COLUMN) if v]
                assert values == sorted(values, reverse=True)
                page.run(OPEN_REPORT + "('replay-1')")
                page.wait_for("location.pathname.endsWith('/report.html') && "
                              "document.body.getAttribute('data-report-ready') === '1'")
            assert page.errors == []
    finally:
        server.close()
