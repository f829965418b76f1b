"""The report page template: markers ``{{NAME}}`` are filled once by ``html.write_report``.

The inline script reads its data only from the JSON block ``#report-data``, draws one SVG
line plot per entry of ``plots``, and seeks the video when a plot or gallery card is clicked.
When it has drawn everything it sets ``data-report-ready="1"`` on ``<body>``.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
       margin: 0 auto; max-width: 1280px; padding: 16px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { padding: 2px 10px; text-align: left; }
table.grid td { text-align: right; font-variant-numeric: tabular-nums; }
table.grid tr:nth-child(even), table.kv tr:nth-child(even) { background: #222228; }
.top { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
video { max-width: 100%; background: #000; }
.plot { margin: 10px 0; cursor: crosshair; }
.plot text { fill: #aaa; font-size: 11px; }
.legend span { margin-right: 14px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #26262c; padding: 8px; width: 330px; cursor: pointer; }
.card img.camera { width: 320px; display: block; }
.card .maps { display: flex; gap: 4px; flex-wrap: wrap; }
.card figure { margin: 4px 0 0; } .card figure img { width: 104px; display: block; }
.card figcaption { font-size: 11px; color: #aaa; }
.card p { margin: 6px 0 0; font-size: 12px; }
ul.skipped { font-size: 12px; color: #ccc; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
{{WARNINGS}}
<div class="top">
<div>{{VIDEO}}</div>
<div>{{OVERVIEW}}</div>
</div>
<h2>Over time (click to seek the video)</h2>
<div id="plots"></div>
<h2>Attention statistics (means over the run)</h2>
{{STATISTICS}}
{{GALLERY}}
{{SKIPPED}}
<script type="application/json" id="report-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var video = document.getElementById("video");
  var SVG = "http://www.w3.org/2000/svg";

  function seek(videoIndex) {
    if (!video || !data.videoFps) { return; }
    video.currentTime = (videoIndex + 0.5) / data.videoFps;
    video.scrollIntoView({block: "nearest"});
  }

  function node(name, attributes) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      element.setAttribute(key, attributes[key]);
    });
    return element;
  }

  function drawPlot(plot) {
    var width = 1240, height = 150, left = 50, right = 10, top = 8, bottom = 20;
    var count = data.videoIndex.length;
    var low = Infinity, high = -Infinity;
    plot.series.forEach(function (series) {
      series.values.forEach(function (v) {
        if (v !== null) { low = Math.min(low, v); high = Math.max(high, v); }
      });
    });
    if (!isFinite(low)) { low = 0; high = 1; }
    if (high - low < 1e-9) { low -= 0.5; high += 0.5; }
    function x(i) { return left + (count > 1 ? i / (count - 1) : 0.5) * (width - left - right); }
    function y(v) { return top + (high - v) / (high - low) * (height - top - bottom); }
    var wrapper = document.createElement("div");
    wrapper.className = "plot";
    var legend = document.createElement("div");
    legend.className = "legend";
    var title = document.createElement("strong");
    title.textContent = plot.title + "  ";
    legend.appendChild(title);
    plot.series.forEach(function (series) {
      var item = document.createElement("span");
      item.style.color = series.color;
      item.textContent = "\\u2014 " + series.name;
      legend.appendChild(item);
    });
    wrapper.appendChild(legend);
    var svg = node("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height});
    svg.appendChild(node("rect", {x: left, y: top, width: width - left - right,
                                  height: height - top - bottom, fill: "#222228"}));
    [low, high].forEach(function (v) {
      var label = node("text", {x: 4, y: y(v) + 4});
      label.textContent = v.toPrecision(3);
      svg.appendChild(label);
    });
    var last = node("text", {x: width - right - 120, y: height - 4});
    last.textContent = count ? "frame " + data.frame[count - 1] : "";
    svg.appendChild(last);
    var first = node("text", {x: left, y: height - 4});
    first.textContent = count ? "frame " + data.frame[0] : "";
    svg.appendChild(first);
    plot.series.forEach(function (series) {
      var path = "", pen = false;
      series.values.forEach(function (v, i) {
        if (v === null) { pen = false; return; }
        path += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      });
      svg.appendChild(node("path", {d: path || "M0 0", fill: "none", stroke: series.color,
                                    "stroke-width": 1.2}));
    });
    var cursor = node("line", {x1: -10, x2: -10, y1: top, y2: height - bottom,
                               stroke: "#fff", "stroke-width": 1});
    svg.appendChild(cursor);
    svg.addEventListener("click", function (event) {
      var box = svg.getBoundingClientRect();
      var px = (event.clientX - box.left) * width / box.width;
      var i = Math.round((px - left) / (width - left - right) * (count - 1));
      i = Math.max(0, Math.min(count - 1, i));
      seek(data.videoIndex[i]);
    });
    wrapper.appendChild(svg);
    document.getElementById("plots").appendChild(wrapper);
    return {cursor: cursor, x: x};
  }

  var drawn = data.plots.map(drawPlot);

  function nearest(videoIndex) {
    var lo = 0, hi = data.videoIndex.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (data.videoIndex[mid] < videoIndex) { lo = mid + 1; } else { hi = mid; }
    }
    return lo;
  }

  if (video && data.videoFps) {
    video.addEventListener("timeupdate", function () {
      var i = nearest(Math.floor(video.currentTime * data.videoFps));
      drawn.forEach(function (plot) {
        var px = plot.x(i).toFixed(1);
        plot.cursor.setAttribute("x1", px);
        plot.cursor.setAttribute("x2", px);
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".card"), function (card) {
    card.addEventListener("click", function () {
      seek(parseInt(card.getAttribute("data-video-index"), 10));
    });
  });
  document.body.setAttribute("data-report-ready", "1");
}());
</script>
</body>
</html>
"""
