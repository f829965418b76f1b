"""A recording is untrusted text: a replay of a recording whose folder name, metadata and file
names carry script payloads writes a report.html that runs none of them (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from drive_viz.cli import main
from drive_viz.recording.format import TABLE_FILE, CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Each payload would set window.__pwned (and the title) if the page ever ran it.
FOLDER = "<img src=x onerror=\"window.__pwned='folder';document.title='PWNED'\">"
SOURCE = "<script>window.__pwned='source';document.title='PWNED'</script>"
EXTRA = {"note": "</script><script>window.__pwned='extra'</script>",
         "<b onmouseover=x>": "<svg onload=\"window.__pwned='extra-key'\">"}
BAD_FILE = "<img src=x onerror=\"window.__pwned='file';document.title='PWNED'\">.jpg"
FRAMES = 6
SKIPPED_ROW = 2

HOOK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
window.addEventListener("load", function () {
  setTimeout(function () {
    var out = document.createElement("pre");
    out.id = "xss-result";
    out.textContent = JSON.stringify({pwned: window.__pwned === undefined ? null : window.__pwned,
      title: document.title, errors: window.__errors,
      ready: document.body.getAttribute("data-report-ready"),
      plots: document.querySelectorAll("#plots .uplot").length,
      scripts: document.scripts.length,
      skipped: Array.prototype.map.call(document.querySelectorAll("ul.skipped li"),
                                        function (li) { return li.textContent; })});
    document.body.appendChild(out);
  }, 300);
});
</script>"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("xss")
    recording = root / FOLDER
    meta = RecordingMeta(source=SOURCE, fps=10.0, cameras=(CameraSpec("center", 96, 64),),
                         extra=EXTRA)
    with RecordingWriter(recording, meta) as writer:
        for i in range(FRAMES):
            writer.append(steer=0.1 * i - 0.2,
                          images={"center": np.full((64, 96, 3), 30 + 30 * i, np.uint8)})
    table = recording / TABLE_FILE
    lines = table.read_text().splitlines()
    lines[1 + SKIPPED_ROW] = lines[1 + SKIPPED_ROW].replace(
        f"images/center/{SKIPPED_ROW:06d}.jpg", '"' + BAD_FILE.replace('"', '""') + '"')
    table.write_text("\n".join(lines) + "\n")
    model = root / "dave2.keras"
    build_dave2(seed=0).save(model)
    run = root / "run"
    code = main(["replay", str(recording), "--model", str(model), "--out", str(run),
                 "--no-video", "--quiet", "--methods", "saliency", "--batch-size", "4"])
    assert code == 0
    return run


def test_payloads_appear_only_as_escaped_text(hostile_run) -> None:
    page = (hostile_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((hostile_run / "summary.json").read_text())
    assert summary["source"] == SOURCE and summary["frames"]["skipped"] == 1
    assert BAD_FILE in summary["skipped"]["frames"][0]["reason"]
    for raw in (FOLDER, SOURCE, BAD_FILE, "<img src=x", "<svg", "<b onmouseover"):
        assert raw not in page
    assert "&lt;script&gt;window.__pwned=&#x27;source&#x27;" in page  # shown, escaped
    assert "&lt;img src=x onerror=&quot;window.__pwned=&#x27;file&#x27;" in page
    assert page.count("<script") == 2  # the JSON data block and the page's own script


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install chromium) so the report cannot be loaded in a browser")
def test_no_payload_runs_in_headless_chromium_and_the_page_works(hostile_run, tmp_path) -> None:
    page = (hostile_run / "report.html").read_text(encoding="utf-8")
    hooked = hostile_run / "hooked.html"
    hooked.write_text(page.replace("<head>", "<head>\n" + HOOK, 1), encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=5000", "--dump-dom", hooked.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
    match = re.search(r'<pre id="xss-result">(.*?)</pre>', dom, re.S)
    assert match, f"the page did not finish: {dom[-500:]}"
    text = match.group(1)
    for entity, char in (("&quot;", '"'), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    result = json.loads(text)
    assert result["pwned"] is None
    assert result["title"] == f"drive-viz replay: {FOLDER}"  # the name as text, untouched
    assert result["errors"] == []
    assert result["ready"] == "1"
    assert result["plots"] >= 3  # steering, absolute error, at least one statistic
    assert result["scripts"] == 3  # the hook, the JSON data block and the page's own script
    assert len(result["skipped"]) == 1 and BAD_FILE in result["skipped"][0]
