"""The report page template: markers ``{{NAME}}`` are filled once by ``html.write_report``.

One ``<script>`` element holds the vendored uPlot library followed by the page's own code,
which reads its data only from the JSON block ``#report-data``. It draws one uPlot chart per
entry of ``plots`` (time in seconds on x, cursors and zoom shared by all charts: drag to zoom,
double-click to reset, click to seek), grey bands where a method's map is empty, a playhead
that follows the video, and the player's controls below the picture. When the video cannot be
loaded it shows ``#video-missing``. A URL ending in ``#t=T`` (seconds, the ``t`` column) seeks
to the frame nearest drive time T (the fleet report links its worst events so). When it has
drawn everything it sets
``data-report-ready="1"`` on ``<body>``; ``window.driveVizReport.plots`` holds the charts.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
{{UPLOTCSS}}
body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
       margin: 0 auto; max-width: 1280px; padding: 16px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { padding: 2px 10px; text-align: left; }
table.grid td { text-align: right; font-variant-numeric: tabular-nums; }
table.grid tr:nth-child(even), table.kv tr:nth-child(even) { background: #222228; }
.top { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.player { width: 960px; max-width: 100%; }
video { width: 100%; height: auto; background: #000; display: block; }
.controls { display: flex; gap: 8px; align-items: center; padding: 6px 0; }
.controls input[type=range] { flex: 1; }
.controls button, .controls select { background: #2c2c34; color: #e8e8ea;
  border: 1px solid #555; padding: 2px 10px; }
#clock { font-variant-numeric: tabular-nums; min-width: 110px; }
#video-missing { background: #4a2323; border: 1px solid #c55; padding: 10px; margin: 6px 0; }
#heat-legend { max-width: 640px; }
#heat-legend .bar { height: 14px; border: 1px solid #555; }
#heat-legend .ends { display: flex; justify-content: space-between; font-size: 12px; }
#heat-legend p, p.note { font-size: 12px; color: #c8c8cc; margin: 4px 0; }
.no-evidence { background: #555560; color: #fff; padding: 0 5px; border-radius: 3px;
  font-size: 11px; }
.plot { margin: 6px 0 14px; }
.uplot { font-family: inherit; } .u-title { font-size: 13px; font-weight: 600; }
.u-legend { color: #ddd; font-size: 12px; } .u-legend .u-value { font-variant-numeric:
  tabular-nums; min-width: 70px; display: inline-block; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #26262c; padding: 8px; width: 330px; cursor: pointer; }
.card img.camera { width: 320px; display: block; }
.card .maps { display: flex; gap: 4px; flex-wrap: wrap; }
.card figure { margin: 4px 0 0; } .card figure img { width: 104px; display: block; }
.card figcaption { font-size: 11px; color: #aaa; }
.card p { margin: 6px 0 0; font-size: 12px; }
.card .ranked-by { color: #ffd166; } .card .event { color: #9ad0ff; }
ul.skipped { font-size: 12px; color: #ccc; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
{{WARNINGS}}
<div class="top">
<div>{{VIDEO}}</div>
<div>{{OVERVIEW}}{{LEGEND}}</div>
</div>
<h2>Over time</h2>
<p class="note">Hover for every value at that moment; drag across a plot to zoom to a time
range (double-click to zoom out); click to seek the video there.</p>
{{EMPTY}}
<div id="plots"></div>
<h2>Attention statistics (means over the run)</h2>
{{STATISTICS}}
{{GALLERY}}
{{SKIPPED}}
<script type="application/json" id="report-data">{{DATA}}</script>
<script>
{{UPLOT}}
;(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var video = document.getElementById("video");
  var missing = document.getElementById("video-missing");
  var fps = data.videoFps;
  var playT = null;
  var plots = [];
  var syncing = false;

  function readout(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "--"; }
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(1) : String(Number(v.toPrecision(3)));
  }
  function tickText(v) { return String(Number(v.toFixed(6))); }

  function seek(videoIndex) {
    if (!video || !fps || video.error) { return; }
    video.currentTime = (videoIndex + 0.5) / fps;
  }

  function drawBands(u) {
    var ctx = u.ctx, box = u.bbox, methods = Object.keys(data.empty);
    var half = fps ? 0.5 / fps : 0;
    ctx.save();
    ctx.fillStyle = "rgba(150, 150, 165, 0.25)";
    methods.forEach(function (method) {
      data.empty[method].forEach(function (span) {
        var x0 = u.valToPos(span[0] - half, "x", true);
        var x1 = u.valToPos(span[1] + half, "x", true);
        x0 = Math.max(x0, box.left);
        x1 = Math.min(x1, box.left + box.width);
        if (x1 > x0) { ctx.fillRect(x0, box.top, Math.max(1, x1 - x0), box.height); }
      });
    });
    ctx.restore();
  }

  function drawLine(u, x0, y0, x1, y1, color, dash) {
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    ctx.restore();
  }

  function makePlot(plot, holder) {
    var wrapper = document.createElement("div");
    wrapper.className = "plot";
    holder.appendChild(wrapper);
    var width = Math.max(320, (holder.clientWidth || 1240) - 8);
    var series = [{label: "time", value: function (u, v) {
      return v === null ? "--" : v.toFixed(2) + " s"; }}];
    plot.series.forEach(function (s) {
      series.push({label: s.name, stroke: s.color, width: 1.5,
                   value: function (u, v) { return readout(v); }});
    });
    var axis = {stroke: "#b8b8c0", grid: {stroke: "rgba(255,255,255,0.09)", width: 1},
                ticks: {stroke: "rgba(255,255,255,0.25)", width: 1}};
    var opts = {
      title: plot.title, width: width, height: 190,
      scales: {x: {time: false}},
      series: series,
      axes: [
        Object.assign({label: "time (s)", values: function (u, splits) {
          var labels = splits.map(tickText);
          wrapper.setAttribute("data-x-ticks", labels.join("|"));
          return labels; }}, axis),
        Object.assign({label: plot.yLabel, size: 60,
                       values: function (u, splits) { return splits.map(tickText); }}, axis)
      ],
      cursor: {sync: {key: "drive-viz"}, drag: {x: true, y: false}},
      legend: {live: true},
      hooks: {
        drawClear: [function (u) {
          drawBands(u);
          if (plot.zero) {
            var y = u.valToPos(0, "y", true);
            if (y >= u.bbox.top && y <= u.bbox.top + u.bbox.height) {
              drawLine(u, u.bbox.left, y, u.bbox.left + u.bbox.width, y, "#8a8a96", [5, 4]);
            }
          }
        }],
        draw: [function (u) {
          if (playT === null) { return; }
          var x = u.valToPos(playT, "x", true);
          if (x >= u.bbox.left && x <= u.bbox.left + u.bbox.width) {
            drawLine(u, x, u.bbox.top, x, u.bbox.top + u.bbox.height, "#ffffff", []);
          }
        }],
        setScale: [function (u, key) {
          if (key !== "x" || syncing) { return; }
          syncing = true;
          plots.forEach(function (other) {
            if (other !== u) { other.setScale("x", {min: u.scales.x.min, max: u.scales.x.max}); }
          });
          syncing = false;
        }]
      }
    };
    var columns = [data.t];
    plot.series.forEach(function (s) { columns.push(s.values); });
    var u = new uPlot(opts, columns, wrapper);
    var downX = null;
    u.over.addEventListener("mousedown", function (e) { downX = e.clientX; });
    u.over.addEventListener("mouseup", function (e) {
      if (downX !== null && Math.abs(e.clientX - downX) < 4 && u.cursor.idx !== null &&
          u.cursor.idx !== undefined) {
        seek(data.videoIndex[u.cursor.idx]);
      }
      downX = null;
    });
    return u;
  }

  var holder = document.getElementById("plots");
  data.plots.forEach(function (plot) { plots.push(makePlot(plot, holder)); });

  function nearest(videoIndex) {
    var lo = 0, hi = data.videoIndex.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (data.videoIndex[mid] < videoIndex) { lo = mid + 1; } else { hi = mid; }
    }
    return lo;
  }

  function showMissing() {
    if (missing) { missing.hidden = false; }
    document.body.setAttribute("data-video-missing", "1");
  }

  if (video) {
    var play = document.getElementById("play");
    var slider = document.getElementById("seek");
    var clock = document.getElementById("clock");
    var rate = document.getElementById("rate");
    var step = fps ? 1 / fps : 0.05;
    video.addEventListener("error", showMissing);
    if (video.error || !video.getAttribute("src")) { showMissing(); }
    play.addEventListener("click", function () {
      if (video.paused) { video.play().catch(function () {}); } else { video.pause(); }
    });
    video.addEventListener("play", function () { play.textContent = "pause"; });
    video.addEventListener("pause", function () { play.textContent = "play"; });
    document.getElementById("back").addEventListener("click", function () {
      video.pause();
      video.currentTime = Math.max(0, video.currentTime - step);
    });
    document.getElementById("forward").addEventListener("click", function () {
      video.pause();
      video.currentTime = Math.min(video.duration || 0, video.currentTime + step);
    });
    slider.addEventListener("input", function () {
      if (video.duration) { video.currentTime = Number(slider.value) * video.duration; }
    });
    rate.addEventListener("change", function () { video.playbackRate = Number(rate.value); });
    video.addEventListener("timeupdate", function () {
      var duration = video.duration || 0;
      if (duration) { slider.value = String(video.currentTime / duration); }
      clock.textContent = video.currentTime.toFixed(2) + " / " + duration.toFixed(2) + " s";
      if (fps && data.t.length) {
        playT = data.t[nearest(Math.floor(video.currentTime * fps))];
        plots.forEach(function (u) { u.redraw(false, false); });
      }
    });
  }
  function seekFragment() {
    var match = /^#t=(-?[0-9.]+)/.exec(window.location.hash);
    if (!match || !data.t.length) { return; }
    var wanted = parseFloat(match[1]), best = 0;
    data.t.forEach(function (t, i) {
      if (t !== null && Math.abs(t - wanted) < Math.abs(data.t[best] - wanted)) { best = i; }
    });
    playT = data.t[best];
    plots.forEach(function (u) { u.redraw(false, false); });
    seek(data.videoIndex[best]);
  }
  seekFragment();
  window.addEventListener("hashchange", seekFragment);
  Array.prototype.forEach.call(document.querySelectorAll(".card"), function (card) {
    card.addEventListener("click", function () {
      seek(parseInt(card.getAttribute("data-video-index"), 10));
      if (video) { video.scrollIntoView({block: "nearest"}); }
    });
  });
  window.driveVizReport = {plots: plots};
  document.body.setAttribute("data-report-ready", "1");
}());
</script>
</body>
</html>
"""
