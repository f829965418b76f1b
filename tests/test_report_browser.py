"""report.html: untrusted strings are escaped, and the page works in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from support import CHROMIUM, chromium_command

from drive_viz.report.html import write_report

EVIL = "</script><script>alert('x')</script><img src=x onerror=alert(1)>"


def _summary(recording: str, camera: str, reason: str, video: bool = True) -> dict:
    return {
        "recording": recording, "source": EVIL, "model": "m.keras",
        "parameters": {"methods": ["saliency"], "camera": camera, "target": "steer",
                       "start": 0, "end": 3, "stride": 1},
        "frames": {"selected": 3, "replayed": 2, "skipped": 1},
        "steering": {"mae": 0.1, "rmse": 0.2, "correlation": None},
        "statistics": {"saliency": {"entropy": 0.5}},
        "skipped": {"count": 1, "frames": [{"row": 1, "frame": 1, "reason": reason}]},
        "timing": {"frames_per_second": 100.0},
        "video": {"fps": 10.0} if video else None,
    }


def _frames() -> pd.DataFrame:
    return pd.DataFrame({"frame": [0, 2], "t": [0.0, 0.2], "steer_true": [0.1, -0.2],
                         "steer_pred": [0.0, np.nan], "abs_error": [0.1, np.nan],
                         "saliency_entropy": [0.4, 0.6]})


def test_untrusted_strings_are_escaped(tmp_path) -> None:
    page_path = tmp_path / "report.html"
    write_report(page_path, _summary(f"/data/{EVIL}", "center", f"/data/{EVIL}: missing"),
                 _frames(), {"by_error": [], "off_road": []})
    page = page_path.read_text()
    assert "alert" in page  # the text is shown ...
    assert "<script>alert" not in page and "<img src=x" not in page  # ... but never as markup
    assert page.count("<script") == 2  # the JSON block and the page's own script
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                     re.S).group(1)
    assert "<" not in data and ">" not in data
    assert json.loads(data)["frame"] == [0, 2]
    assert "{{" not in page


HOOK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { __errors.push(String(e.message)); });
var __consoleError = console.error;
console.error = function () {
  __errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
var __done = false;
function __finish(status) {
  if (__done) { return; }
  __done = true;
  var v = document.getElementById("video");
  var out = document.createElement("pre");
  out.id = "test-result";
  out.textContent = JSON.stringify({status: status, errors: __errors,
    ready: document.body.getAttribute("data-report-ready"),
    width: v.videoWidth, height: v.videoHeight, duration: v.duration,
    plots: document.querySelectorAll("#plots svg path").length});
  document.body.appendChild(out);
}
document.addEventListener("DOMContentLoaded", function () {
  var v = document.getElementById("video");
  v.addEventListener("error", function () {
    __finish("video-error " + (v.error && v.error.code));
  });
  v.addEventListener("timeupdate", function () { if (v.currentTime > 0) { __finish("playing"); } });
  v.play().catch(function (e) { __finish("play-rejected " + e); });
  setTimeout(function () { __finish("timeout readyState=" + v.readyState); }, 10000);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install chromium) so the report cannot be loaded in a browser")
def test_report_loads_in_headless_chromium_and_video_plays(tmp_path) -> None:
    from drive_viz.render.video import H264Writer

    run = tmp_path / "run"
    run.mkdir()
    with H264Writer(run / "annotated.mp4", fps=10.0) as writer:
        for k in range(20):
            frame = np.full((720, 1280, 3), 40, np.uint8)
            frame[300:420, 60 * k:60 * k + 60] = (230, 90, 30)
            writer.write(frame)
    frames = pd.DataFrame({"frame": np.arange(20), "t": np.arange(20) / 10,
                           "steer_true": np.sin(np.arange(20) / 3),
                           "steer_pred": np.cos(np.arange(20) / 3),
                           "saliency_entropy": np.linspace(0.2, 0.8, 20)})
    frames["abs_error"] = (frames["steer_pred"] - frames["steer_true"]).abs()
    write_report(run / "report.html", _summary("/data/rec", EVIL, "bad"), frames,
                 {"by_error": [], "off_road": []})
    page = (run / "report.html").read_text()
    (run / "hooked.html").write_text(page.replace("<head>", "<head>\n" + HOOK, 1))
    command = chromium_command(tmp_path / "profile",
                               "--autoplay-policy=no-user-gesture-required",
                               "--virtual-time-budget=20000", "--dump-dom",
                               (run / "hooked.html").as_uri())
    dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
    match = re.search(r'<pre id="test-result">(.*?)</pre>', dom, re.S)
    assert match, f"the page did not finish: {dom[-500:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert result["ready"] == "1"
    assert result["plots"] >= 4  # steering (2 series), error, entropy
    assert result["status"] == "playing", (
        f"{result['status']}: Chromium could not play the H.264 video "
        "(a build without proprietary codecs?)")
    assert (result["width"], result["height"]) == (1280, 720)
    assert result["duration"] == pytest.approx(2.0, abs=0.15)
