"""report.html: untrusted strings are escaped, and the page works in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

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
    clickIdx: window.__clickIdx, seekedTo: v.currentTime,
    missingShown: !document.getElementById("video-missing").hidden,
    plots: window.driveVizReport.plots.reduce(function (n, u) {
      return n + u.series.length - 1; }, 0)});
  document.body.appendChild(out);
}
document.addEventListener("DOMContentLoaded", function () {
  var v = document.getElementById("video");
  v.addEventListener("error", function () {
    __finish("video-error " + (v.error && v.error.code));
  });
  var clicked = false;
  v.addEventListener("timeupdate", function () {
    if (v.currentTime <= 0 || clicked) { return; }
    clicked = true;  // playing: now click three quarters into the first plot to seek there
    v.pause();
    var u = window.driveVizReport.plots[0], box = u.over.getBoundingClientRect();
    var at = {clientX: box.left + box.width * 0.75, clientY: box.top + box.height / 2,
              bubbles: true, button: 0};
    u.over.dispatchEvent(new MouseEvent("mouseenter", at));
    u.over.dispatchEvent(new MouseEvent("mousemove", at));
    window.__clickIdx = u.cursor.idx;
    v.addEventListener("seeked", function () { __finish("playing"); });
    u.over.dispatchEvent(new MouseEvent("mousedown", at));
    u.over.dispatchEvent(new MouseEvent("mouseup", at));
  });
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
    assert result["plots"] >= 4  # series drawn: steering (2), error, entropy
    assert result["status"] == "playing", (
        f"{result['status']}: Chromium could not play the H.264 video "
        "(a build without proprietary codecs?)")
    assert (result["width"], result["height"]) == (1280, 720)
    assert result["missingShown"] is False  # the video is beside the page: no message
    assert result["duration"] == pytest.approx(2.0, abs=0.15)
    # Clicking a plot seeks the video to the middle of that frame (video frame k = row k).
    assert 12 <= result["clickIdx"] <= 16
    assert result["seekedTo"] == pytest.approx((result["clickIdx"] + 0.5) / 10.0, abs=1e-3)


def _chromium_result(page: Path, profile: Path, hook: str, result_id: str) -> dict:
    """Load ``page`` with ``hook`` added to its head in headless Chromium; the JSON the hook
    wrote into ``<pre id=result_id>``."""
    hooked = page.with_name("hooked.html")
    hooked.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + hook, 1),
                      encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
               "--virtual-time-budget=8000", "--dump-dom", hooked.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
    match = re.search(rf'<pre id="{result_id}">(.*?)</pre>', dom, re.S)
    assert match, f"the page did not finish: {dom[-500:]}"
    text = match.group(1)
    for entity, char in (("&quot;", '"'), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return json.loads(text)


#: Hovers the middle of the first plot, then drags across the second, and reports what the
#: page shows: tick labels, legend readouts, the heat legend, gallery cards, the video message.
INSPECT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { __errors.push(String(e.message)); });
var __consoleError = console.error;
console.error = function () {
  __errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () { setTimeout(function () {
  var plots = window.driveVizReport.plots;
  var over = plots[0].over, box = over.getBoundingClientRect();
  var at = {clientX: box.left + box.width * 0.5, clientY: box.top + box.height * 0.5,
            bubbles: true};
  over.dispatchEvent(new MouseEvent("mouseenter", at));
  over.dispatchEvent(new MouseEvent("mousemove", at));
  var hover = {idx: plots[0].cursor.idx, idx2: plots[2].cursor.idx, legends: []};
  Array.prototype.forEach.call(document.querySelectorAll(".u-legend"), function (legend) {
    hover.legends.push(Array.prototype.map.call(legend.querySelectorAll("tr"), function (tr) {
      return [tr.querySelector(".u-label").textContent, tr.querySelector(".u-value").textContent];
    }));
  });
  var second = plots[1].over, b2 = second.getBoundingClientRect();
  function at2(f) {  // uPlot ignores drag moves without movement
    return {clientX: b2.left + b2.width * f, clientY: b2.top + b2.height / 2, movementX: 9,
            bubbles: true}; }
  second.dispatchEvent(new MouseEvent("mouseenter", at2(0.25)));
  second.dispatchEvent(new MouseEvent("mousemove", at2(0.25)));
  second.dispatchEvent(new MouseEvent("mousedown", Object.assign({button: 0}, at2(0.25))));
  second.dispatchEvent(new MouseEvent("mousemove", at2(0.5)));
  document.dispatchEvent(new MouseEvent("mouseup", Object.assign({button: 0}, at2(0.5))));
  setTimeout(function () { __report(plots, hover); }, 200);  // uPlot commits scales later
}, 500); });
function __report(plots, hover) {
  var legend = document.getElementById("heat-legend");
  var missing = document.getElementById("video-missing");
  var out = document.createElement("pre");
  out.id = "inspect-result";
  out.textContent = JSON.stringify({errors: __errors,
    ready: document.body.getAttribute("data-report-ready"),
    xTicks: Array.prototype.map.call(document.querySelectorAll(".plot"), function (p) {
      return p.getAttribute("data-x-ticks"); }),
    hover: hover,
    zoom: plots.map(function (u) { return [u.scales.x.min, u.scales.x.max]; }),
    legendBar: legend && getComputedStyle(legend.querySelector(".bar")).backgroundImage,
    legendText: legend && legend.textContent,
    cards: Array.prototype.map.call(document.querySelectorAll(".card"), function (c) {
      return {text: c.textContent, index: c.getAttribute("data-video-index"),
              gallery: c.parentNode.id}; }),
    missingShown: missing && !missing.hidden && missing.offsetHeight > 0,
    missingText: missing && missing.textContent,
    emptyNote: (document.getElementById("empty-maps") || {}).textContent || null});
  document.body.appendChild(out);
}
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install chromium) so the report cannot be loaded in a browser")
def test_report_plots_legend_galleries_and_missing_video_in_headless_chromium(tmp_path) -> None:
    count, fps = 300, 10.0  # 30 s of driving
    k = np.arange(count)
    frames = pd.DataFrame({"frame": k, "t": k / fps, "steer_true": 0.4 * np.sin(k / 20),
                           "steer_pred": 0.3 * np.cos(k / 25),
                           "saliency_entropy": np.linspace(0.2, 0.8, count),
                           "saliency_empty": (k >= 100) & (k < 120)})
    frames["abs_error"] = (frames["steer_pred"] - frames["steer_true"]).abs()
    thumb = "data:image/gif;base64,R0lGODlhAQABAAAAACw="

    def entry(frame: int, span: tuple[int, int], statistic: str, method: str | None) -> dict:
        row = frames.iloc[frame]
        return {"frame": frame, "row": frame, "t": float(row["t"]),
                "steer_true": float(row["steer_true"]), "steer_pred": float(row["steer_pred"]),
                "abs_error": float(row["abs_error"]), "off_road_share": 0.75,
                "camera": thumb, "maps": {"saliency": thumb},
                "ranked_by": {"statistic": statistic, "method": method},
                "event": {"start_t": span[0] / fps, "end_t": span[1] / fps,
                          "frames": span[1] - span[0] + 1}}

    galleries = {"by_error": [entry(40, (30, 52), "abs_error", None),
                              entry(110, (110, 110), "abs_error", None)],
                 "off_road": [entry(200, (190, 215), "off_road_share", "saliency")]}
    summary = _summary("/data/rec", "center", "bad")
    summary["parameters"]["end"] = count
    run = tmp_path / "moved"  # report.html without its annotated.mp4
    run.mkdir()
    write_report(run / "report.html", summary, frames, galleries)
    result = _chromium_result(run / "report.html", tmp_path / "profile", INSPECT,
                              "inspect-result")
    assert result["errors"] == []
    assert result["ready"] == "1"

    # Time axis: seconds, round values evenly spaced (1, 2 or 5 x 10^n), inside the drive.
    for ticks in result["xTicks"]:
        values = [float(v) for v in ticks.split("|")]
        steps = np.diff(values)
        assert len(values) >= 3 and np.allclose(steps, steps[0])
        mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
        assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5)) < 1e-6
        assert all(abs(v / steps[0] - round(v / steps[0])) < 1e-6 for v in values)
        assert values[0] >= 0 and values[-1] <= (count - 1) / fps + 1e-9

    # Hover readout: every plot's legend shows the values of the same (synchronized) frame.
    idx = result["hover"]["idx"]
    assert idx is not None and 100 < idx < 200 and result["hover"]["idx2"] == idx
    steering = dict(result["hover"]["legends"][0])
    assert steering["time"] == f"{idx / fps:.2f} s"
    for name, column in (("recorded", "steer_true"), ("predicted", "steer_pred")):
        assert float(steering[name]) == pytest.approx(frames[column][idx], abs=6e-3)
    error = dict(result["hover"]["legends"][1])
    assert float(error["error"]) == pytest.approx(frames["abs_error"][idx], abs=6e-3)

    # Drag-zoom on one plot zooms every plot to the same range, about 7.5 s to 15 s.
    zooms = np.array(result["zoom"], dtype=float)
    assert np.allclose(zooms, zooms[0])
    assert zooms[0][0] == pytest.approx(7.5, abs=1.0) and zooms[0][1] == pytest.approx(15, abs=1)

    # Heat legend: the inferno bar (ends as OpenCV's colormap draws them) and what 0 and 1 mean.
    import cv2

    ends = cv2.applyColorMap(np.array([[0], [255]], np.uint8), cv2.COLORMAP_INFERNO)[:, 0, ::-1]
    bar = result["legendBar"].replace(" ", "")
    assert bar.startswith("linear-gradient(")
    for r, g, b in ends:
        assert f"rgb({r},{g},{b})" in bar
    assert "median over the last 64 frames" in result["legendText"]
    assert "99th percentile" in result["legendText"]

    # Galleries: one card per event, saying what ranked it and the event's span.
    cards = result["cards"]
    assert [c["gallery"] for c in cards] == ["gallery-by_error"] * 2 + ["gallery-off_road"]
    assert [int(c["index"]) for c in cards] == [40, 110, 200]
    assert "ranked by abs_error" in cards[0]["text"]
    assert "event: 3.00\u20135.20 s, 23 frames" in cards[0]["text"]
    assert "this frame alone" in cards[1]["text"] and "empty" in cards[1]["text"]
    assert "ranked by off_road_share of saliency: 0.750" in cards[2]["text"]

    # Empty maps are marked; the missing video is explained with both fixes.
    assert "saliency on 20 of 300 frames (6.7%)" in result["emptyNote"]
    assert result["missingShown"]
    assert "annotated.mp4" in result["missingText"] and "--embed-video" in result["missingText"]


def test_embedded_video_is_inside_the_page(tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)))
    write_report(tmp_path / "report.html", _summary("/data/rec", "center", "bad"), _frames(),
                 {"by_error": [], "off_road": []}, embed_video=video)
    page = (tmp_path / "report.html").read_text()
    src = re.search(r"<video id='video' src='([^']*)'", page).group(1)
    assert src.startswith("data:video/mp4;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == video.read_bytes()
