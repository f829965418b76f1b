"""``drive-viz live --serve``: the live overlay and its numbers in a browser.

The simulation thread calls ``LivePublisher.publish(picture, row)`` once per step. That call
only serializes the row (a few hundred bytes of JSON) and appends both to a deque that the
server's IOLoop thread drains every ``POLL_MS``: it never waits for a viewer, nor for the
server's thread. (``IOLoop.add_callback`` per step was the first design: it writes to the
loop's wake-up pipe, which releases the GIL, and the woken loop thread then holds the
simulation thread back; on a loaded 2-core machine that hand-over took 0.3 ms at p50 but
50 ms at p95, against 0.02 and 0.03 ms for the deque, measured interleaved in one run.)

On the loop, the newest picture is JPEG-encoded once (in one encoder thread, off the loop)
when at least one viewer watches, and the bytes are shared by every viewer. Each viewer holds
at most one frame being sent; a newer frame replaces the one waiting for it (dropped, never
queued), so a slow or vanished viewer costs the simulation nothing. Rows go to every viewer
as server-sent events; a viewer that cannot keep up gets the rows it missed in one message,
up to the last ``HISTORY`` rows, which are also what a page opened mid-run starts with.

Endpoints (GET only): ``/`` the page, ``/stream.mjpg`` the overlay as MJPEG
(multipart/x-mixed-replace), ``/events`` the rows (text/event-stream; an ``end`` event when the
run stops), ``/latest.jpg`` the newest frame.
"""

from __future__ import annotations

import collections
import contextlib
import html
import itertools
import json
import math
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import tornado.ioloop
import tornado.iostream
import tornado.locks
import tornado.web

from drive_viz.atomic import json_ready
from drive_viz.live import LiveOptions, autonomy_percent
from drive_viz.serve.web import (
    GuardedHandler,
    ServerThread,
    parse_address,
    vendor_text,
    warn_if_exposed,
)

#: Rows kept for pages opened mid-run (and the most a lagging viewer is sent at once).
HISTORY = 2000
#: How often the server's thread takes the steps published since the last time (ms).
POLL_MS = 10
JPEG_QUALITY = 80
BOUNDARY = "drive-viz-frame"


class _Hub:
    """Loop-thread state: the newest JPEG, the rows, and the connected viewers."""

    def __init__(self) -> None:
        self.rows: collections.deque[tuple[int, str]] = collections.deque(maxlen=HISTORY)
        self.next_row = 0
        self.jpeg: bytes | None = None
        self.jpeg_serial = 0
        self.pending: np.ndarray | None = None
        self.encoding = False
        self.ended = False
        self.streams: set[_StreamHandler] = set()
        self.listeners: set[_EventsHandler] = set()
        self.encoder = ThreadPoolExecutor(1, thread_name_prefix="drive-viz jpeg")
        self.poller: tornado.ioloop.PeriodicCallback | None = None

    def start_polling(self, take: Any) -> None:
        self.poller = tornado.ioloop.PeriodicCallback(take, POLL_MS)
        self.poller.start()

    def add_row(self, text: str) -> None:
        self.rows.append((self.next_row, text))
        self.next_row += 1
        for listener in list(self.listeners):
            listener.wake()

    def add_picture(self, picture: np.ndarray) -> None:
        self.pending = picture
        if self.streams and not self.encoding:
            tornado.ioloop.IOLoop.current().add_callback(self._encode_pending)

    async def _encode_pending(self) -> None:
        loop = tornado.ioloop.IOLoop.current()
        self.encoding = True
        try:
            while self.pending is not None and self.streams:
                picture, self.pending = self.pending, None
                self.jpeg = await loop.run_in_executor(self.encoder, _encode_jpeg, picture)
                self.jpeg_serial += 1
                for stream in list(self.streams):
                    stream.wake()
        finally:
            self.encoding = False

    async def end(self) -> None:
        """Send every viewer its last message (the ``end`` event for pages) and wait until
        they are sent."""
        self.ended = True
        if self.poller is not None:
            self.poller.stop()
        viewers = [*self.listeners, *self.streams]
        for viewer in viewers:
            viewer.wake()
        for viewer in viewers:
            await viewer.finished.wait()


def _encode_jpeg(picture: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


class _Viewer(GuardedHandler):
    """A long-lived response: ``wake()`` (loop thread) asks ``send()`` to run; at most one
    ``send`` runs at a time, so one slow connection never holds more than one message."""

    def initialize(self, hub: _Hub) -> None:
        self.hub = hub
        self._closed = tornado.locks.Event()
        self._wanted = tornado.locks.Event()
        self.finished = tornado.locks.Event()

    def wake(self) -> None:
        self._wanted.set()

    def on_connection_close(self) -> None:
        self._closed.set()
        self._wanted.set()

    async def serve(self) -> None:
        """Send until the connection closes or the run ends."""
        try:
            while not self._closed.is_set():
                await self._wanted.wait()
                self._wanted.clear()
                if self._closed.is_set():
                    break
                await self.send()
                if self.hub.ended:
                    break
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            self.finished.set()

    async def send(self) -> None:
        raise NotImplementedError


class _StreamHandler(_Viewer):
    """``/stream.mjpg``: the overlay as multipart JPEG, the newest frame each time."""

    async def get(self) -> None:
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.set_header("Cache-Control", "no-store")
        self.sent_serial = 0
        self.hub.streams.add(self)
        try:
            if self.hub.pending is not None:
                self.hub.add_picture(self.hub.pending)
            self.wake()
            await self.serve()
        finally:
            self.hub.streams.discard(self)

    async def send(self) -> None:
        jpeg = self.hub.jpeg
        if jpeg is None or self.hub.jpeg_serial == self.sent_serial:
            return
        self.sent_serial = self.hub.jpeg_serial
        self.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                   f"Content-Length: {len(jpeg)}\r\n\r\n".encode())
        self.write(jpeg)
        self.write(b"\r\n")
        await self.flush()


class _EventsHandler(_Viewer):
    """``/events``: each row as a server-sent event (``data: [row, ...]``)."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.sent_upto = 0
        self.hub.listeners.add(self)
        try:
            self.wake()
            await self.serve()
        finally:
            self.hub.listeners.discard(self)

    async def send(self) -> None:
        rows = self.hub.rows
        first = rows[0][0] if rows else 0
        rows = [text for _, text in itertools.islice(rows, max(0, self.sent_upto - first), None)]
        self.sent_upto = self.hub.next_row
        if rows:
            self.write(f"data: [{','.join(rows)}]\n\n")
        if self.hub.ended:
            self.write("event: end\ndata: {}\n\n")
        await self.flush()


class _LatestHandler(GuardedHandler):
    """``/latest.jpg``: the newest encoded frame (404 before the first)."""

    def initialize(self, hub: _Hub) -> None:
        self.hub = hub

    def get(self) -> None:
        if self.hub.jpeg is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "no-store")
        self.write(self.hub.jpeg)


class _PageHandler(GuardedHandler):
    def initialize(self, page: str) -> None:
        self.page = page

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(self.page)


class LivePublisher:
    """The live page's server on ``host:port`` (0: a free port), started at once.

    ``info``: what the page says about the session (``title``, ``world``, ``drive``,
    ``model``, ``methods``, ``main_method``, ``fps``); strings in it are escaped. When
    ``world`` is ``"synthetic"``, each row gets ``autonomy_percent`` so far.
    """

    def __init__(self, host: str, port: int, info: dict[str, Any]) -> None:
        self._hub = _Hub()
        self._fps = float(info["fps"]) if info.get("synthetic") else None
        page = live_page(info)
        app = tornado.web.Application([
            (r"/", _PageHandler, {"page": page}),
            (r"/stream\.mjpg", _StreamHandler, {"hub": self._hub}),
            (r"/events", _EventsHandler, {"hub": self._hub}),
            (r"/latest\.jpg", _LatestHandler, {"hub": self._hub}),
        ], compress_response=False)
        warn_if_exposed(host)
        self._server = ServerThread(app, host, port, name="drive-viz live server")
        self._rows: collections.deque[str] = collections.deque()
        self._picture: np.ndarray | None = None  # only the newest waits: memory stays flat
        self._picture_lock = threading.Lock()
        self._server.call(self._hub.start_polling, self._take)
        self.url = self._server.url
        self._closed = False

    def publish(self, picture: np.ndarray | None, row: dict[str, Any]) -> None:
        """Hand one step to the viewers without waiting: ``picture`` the overlay, RGB uint8
        (H, W, 3), which the caller must not modify afterwards (None: no picture this step);
        ``row`` the step's numbers (floats; NaN becomes null)."""
        if self._closed:
            return
        if self._fps is not None:
            row = {**row, "autonomy_percent": autonomy_percent(
                int(row["interventions"]), (int(row["frame"]) + 1) / self._fps)}
        text = json.dumps(json_ready(row), allow_nan=False, separators=(",", ":"))
        self._rows.append(text)  # thread-safe, no system call, no wake-up
        if picture is not None:
            with self._picture_lock:  # never contended for long: a swap on either side
                self._picture = picture

    def _take(self) -> None:
        """(Server thread) hand the steps published since the last call to the viewers."""
        while self._rows:
            self._hub.add_row(self._rows.popleft())
        with self._picture_lock:
            picture, self._picture = self._picture, None
        if picture is not None:
            self._hub.add_picture(picture)

    def close(self) -> None:
        """Tell the pages the run ended, then stop the server (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.call(self._take)
        self._server.wait_for(self._hub.end, timeout=1.0)
        self._server.close()
        self._hub.encoder.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LivePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_live_server(address: str, options: LiveOptions, world: str,
                     model: str) -> Iterator[LivePublisher]:
    """The live page for a ``drive-viz live`` session on ``address`` (``[HOST:]PORT``); says
    where on stderr; closed (pages told the run ended) when the block ends."""
    host, port = parse_address(address)
    info = {"title": f"drive-viz live: {world}, {options.drive} drives", "world": world,
            "synthetic": world == "synthetic", "drive": options.drive, "model": model,
            "methods": list(options.methods), "main_method": options.main_method,
            "fps": options.fps}
    with LivePublisher(host, port, info) as publisher:
        print(f"drive-viz: live page at {publisher.url}", file=sys.stderr)
        yield publisher


def _json_for_script(data: Any) -> str:
    from drive_viz.report.html import _json_for_script as encode

    return encode(data)


def live_page(info: dict[str, Any]) -> str:
    """The live page: stream image, latest numbers and uPlot plots fed by ``/events``."""
    fps = info.get("fps")
    data = {**info, "fps": fps if isinstance(fps, (int, float)) and math.isfinite(fps) else None,
            "history": HISTORY}
    return (LIVE_PAGE
            .replace("{{TITLE}}", html.escape(str(info.get("title", "drive-viz live"))))
            .replace("{{UPLOT_CSS}}", vendor_text("uPlot.min.css"))
            .replace("{{UPLOT_JS}}", vendor_text("uPlot.iife.min.js"))
            .replace("{{DATA}}", _json_for_script(data)))


LIVE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>{{UPLOT_CSS}}</style>
<style>
body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
       margin: 0 auto; max-width: 1320px; padding: 12px; }
h1 { font-size: 18px; margin: 4px 0 10px; }
#status { font-size: 13px; color: #aaa; }
#status.ended { color: #f0b030; }
.top { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
#stream { width: 960px; max-width: 100%; background: #000; display: block; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 10px; text-align: left; } td { text-align: right; }
tr:nth-child(even) { background: #222228; }
.plots { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 12px; }
.uplot { background: #202026; } .u-title { font-size: 13px !important; }
.u-legend { font-size: 12px; }
</style>
</head>
<body>
<h1>{{TITLE}} <span id="status">connecting</span></h1>
<div class="top">
<img id="stream" src="stream.mjpg" alt="live overlay">
<table id="numbers"></table>
</div>
<div class="plots" id="plots"></div>
<script type="application/json" id="live-data">{{DATA}}</script>
<script>{{UPLOT_JS}}</script>
<script>
(function () {
  "use strict";
  var info = JSON.parse(document.getElementById("live-data").textContent);
  var WINDOW = 600;
  var body = document.body;
  var status = document.getElementById("status");
  var numbers = document.getElementById("numbers");
  var main = info.main_method || "";
  var stats = [["entropy", "#4cc9f0"], ["road_share", "#b5e48c"],
               ["lr_balance", "#f72585"], ["temporal_corr", "#ffd166"]];
  var fields = [["frame", "frame", 0], ["t", "time (s)", 2], ["steer_true", "recorded steer", 3],
                ["steer_pred", "predicted steer", 3], ["steer_applied", "applied steer", 3],
                ["latency_ms", "latency (ms)", 1], ["interventions", "interventions", 0],
                ["autonomy_percent", "autonomy (%)", 1]];
  stats.forEach(function (s) { fields.push([main + "_" + s[0], main + " " + s[0], 3]); });
  var cells = {};
  fields.forEach(function (f) {
    var tr = numbers.insertRow();
    var th = document.createElement("th");
    th.textContent = f[1];
    tr.appendChild(th);
    cells[f[0]] = tr.insertCell();
    cells[f[0]].textContent = "-";
  });
  function axes() {
    return [{stroke: "#aaa", grid: {stroke: "#333"}, label: "time (s)"},
            {stroke: "#aaa", grid: {stroke: "#333"}}];
  }
  function makePlot(title, series) {
    var opts = {title: title, width: 620, height: 230, scales: {x: {time: false}},
                axes: axes(), series: [{label: "t (s)"}].concat(series.map(function (s) {
                  return {label: s[1], stroke: s[2], width: 1.5, spanGaps: false};
                }))};
    var data = [[]].concat(series.map(function () { return []; }));
    var plot = new uPlot(opts, data, document.getElementById("plots"));
    return {plot: plot, data: data, keys: series.map(function (s) { return s[0]; })};
  }
  var plots = [
    makePlot("steering (positive = right)", [["steer_true", "recorded", "#3cdc5a"],
                                             ["steer_pred", "predicted", "#ff3cdc"]]),
    makePlot("attention: " + main, stats.map(function (s) {
      return [main + "_" + s[0], s[0], s[1]];
    }))
  ];
  var received = 0;
  var dirty = false;
  function show(value, digits) {
    return (value === null || value === undefined) ? "n/a" : Number(value).toFixed(digits);
  }
  function take(rows) {
    rows.forEach(function (row) {
      plots.forEach(function (p) {
        p.data[0].push(row.t);
        p.keys.forEach(function (key, k) {
          p.data[k + 1].push(row[key] === undefined ? null : row[key]);
        });
        if (p.data[0].length > WINDOW) {
          p.data.forEach(function (column) { column.shift(); });
        }
      });
    });
    var last = rows[rows.length - 1];
    fields.forEach(function (f) { cells[f[0]].textContent = show(last[f[0]], f[2]); });
    received += rows.length;
    body.setAttribute("data-rows", String(received));
    body.setAttribute("data-last-frame", String(last.frame));
    dirty = true;
  }
  function redraw() {
    if (dirty) {
      dirty = false;
      plots.forEach(function (p) { p.plot.setData(p.data); });
      body.setAttribute("data-plot-points", String(plots[0].data[0].length));
    }
    window.requestAnimationFrame(redraw);
  }
  window.requestAnimationFrame(redraw);
  var events = new EventSource("events");
  events.onopen = function () { status.textContent = "live"; };
  events.onmessage = function (message) {
    var rows = JSON.parse(message.data);
    if (rows.length) { take(rows); }
  };
  events.addEventListener("end", function () {
    events.close();
    status.textContent = "run ended";
    status.className = "ended";
    body.setAttribute("data-ended", "1");
  });
  events.onerror = function () {
    if (body.getAttribute("data-ended") !== "1") { status.textContent = "disconnected"; }
  };
  body.setAttribute("data-live-ready", "1");
}());
</script>
</body>
</html>
"""
