"""The tornado server both ``serve`` and ``live --serve`` run: its IOLoop in a background
thread, the listening socket bound in the caller's thread (so a busy port is a one-line error
at once), and a Host-header check against DNS rebinding when bound to the loopback address.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from drive_viz.errors import DriveVizError

DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
#: uPlot, vendored once for the whole package (drive_viz/report/vendor/README.md).
VENDOR = Path(__file__).resolve().parents[1] / "report" / "vendor"


def parse_address(text: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``"[HOST:]PORT"`` -> (host, port); port 0 picks a free one. IPv6 hosts in brackets."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else default_host
    try:
        port = int(port_text)
    except ValueError:
        raise DriveVizError(f"address {text!r}: the port must be a number, as in 8080 or "
                            "127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise DriveVizError(f"address {text!r}: port {port} is outside 0..65535")
    if not host:
        raise DriveVizError(f"address {text!r}: empty host")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def vendor_text(name: str) -> str:
    """A vendored file's text (``uPlot.iife.min.js``, ``uPlot.min.css``), for inline use."""
    return (VENDOR / name).read_text(encoding="utf-8")


class GuardedHandler(tornado.web.RequestHandler):
    """Answers GET and HEAD only; when the server is bound to loopback, refuses requests whose
    Host is not a loopback name (a web page elsewhere cannot read it through DNS rebinding)."""

    SUPPORTED_METHODS = ("GET", "HEAD")

    def prepare(self) -> None:
        if self.settings.get("loopback_only") and self.request.host_name not in LOOPBACK_NAMES:
            raise tornado.web.HTTPError(403)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")


def _no_access_log(handler: tornado.web.RequestHandler) -> None:
    """Requests are not logged (tornado would print one line per 4xx/5xx to stderr)."""


class ServerThread:
    """``app`` listening on ``host:port`` (0: a free port) with its IOLoop in a daemon thread.

    ``url`` is where it answers; ``call(fn, *args)`` runs ``fn`` on the loop's thread without
    waiting (``IOLoop.add_callback``); ``close()`` drops every connection and ends the thread.
    """

    def __init__(self, app: tornado.web.Application, host: str, port: int,
                 name: str = "drive-viz server") -> None:
        app.settings["loopback_only"] = is_loopback(host)
        app.settings["log_function"] = _no_access_log
        try:
            self._sockets = tornado.netutil.bind_sockets(port, address=host,
                                                         family=socket.AF_UNSPEC)
        except OSError as exc:
            raise DriveVizError(f"address {host}:{port}: cannot listen "
                                f"({exc.strerror or exc})") from None
        self.host = host
        self.port = int(self._sockets[0].getsockname()[1])
        self._app = app
        self._started = threading.Event()
        self._server: tornado.httpserver.HTTPServer | None = None
        self.loop: tornado.ioloop.IOLoop | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def url(self) -> str:
        shown = "localhost" if self.host in ("127.0.0.1", "::1") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/"

    def _main(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        self.loop = tornado.ioloop.IOLoop.current()
        self._server = tornado.httpserver.HTTPServer(self._app)
        self._server.add_sockets(self._sockets)
        self.loop.add_callback(self._started.set)
        self.loop.start()
        self.loop.close(all_fds=True)

    def call(self, function: Any, *args: Any) -> None:
        """Run ``function(*args)`` on the server's thread, soon; never blocks the caller."""
        assert self.loop is not None
        self.loop.add_callback(function, *args)

    def wait_for(self, coroutine_function: Any, timeout: float) -> None:
        """Run ``coroutine_function()`` on the server's thread and wait up to ``timeout`` s."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine_function(),
                                                  self.loop.asyncio_loop)
        try:
            future.result(timeout)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()

    async def _shutdown(self) -> None:
        assert self._server is not None and self.loop is not None
        self._server.stop()
        await self._server.close_all_connections()
        self.loop.stop()

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening, close every open connection and end the thread (idempotent)."""
        if self._thread.is_alive():
            self.call(self._shutdown)
            self._thread.join(timeout)

    def wait(self) -> None:
        """Block until Ctrl-C, then close."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            print("drive-viz: server stopped", file=sys.stderr)
        finally:
            self.close()


def warn_if_exposed(host: str) -> None:
    """Print a warning when ``host`` is reachable from other machines."""
    if not is_loopback(host):
        print(f"drive-viz: warning: listening on {host}, reachable from other machines; "
              "anyone who can reach it can watch (there is no login). Prefer the default "
              "127.0.0.1 with an SSH tunnel.", file=sys.stderr)
