"""``drive-viz serve RUNS_DIR``: the index of runs and the runs' own files, read-only.

``/`` (and ``/index.html``) is the index, built afresh on each request by the same code as
``drive-viz index``. Any other path is a file under RUNS_DIR, served by tornado's
``StaticFileHandler`` (HTTP range requests, so videos seek; conditional GETs) with its path
check replaced by a stricter one: the path is resolved (symbolic links included) and must stay
inside RUNS_DIR, must not name a hidden file or folder (``.NAME.partial`` files of runs being
written) and must be a regular file; anything else is 404, whatever the reason, so a probe
learns nothing. Only GET and HEAD are answered (others: 405); nothing writes to disk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import tornado.web

from drive_viz.serve.index import index_page, runs_folder
from drive_viz.serve.web import GuardedHandler, ServerThread, parse_address, warn_if_exposed


class _IndexHandler(GuardedHandler):
    def initialize(self, root: Path) -> None:
        self.root = root

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.write(index_page(self.root))


def contained_file(root: str, absolute_path: str) -> str | None:
    """The real path of ``absolute_path`` if it is a regular, non-hidden file inside the real
    folder ``root``; None otherwise."""
    try:
        real = os.path.realpath(absolute_path)
        inside = os.path.commonpath([real, root]) == root
    except (ValueError, OSError):  # NUL bytes, paths on other drives
        return None
    if not inside or real == root:
        return None
    shown = os.path.relpath(os.path.abspath(absolute_path), root).split(os.sep)
    resolved = os.path.relpath(real, root).split(os.sep)
    if any(part.startswith(".") for part in (*shown, *resolved)):
        return None
    return real if os.path.isfile(real) else None


class _RunFileHandler(GuardedHandler, tornado.web.StaticFileHandler):
    """A file under RUNS_DIR, or 404."""

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        try:
            return super().get_absolute_path(root, path)
        except tornado.web.HTTPError:
            raise tornado.web.HTTPError(404) from None

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        """Our containment check, then tornado's own (which also refuses non-files)."""
        found = contained_file(os.path.realpath(root), absolute_path)
        if found is None:
            raise tornado.web.HTTPError(404)
        try:
            return super().validate_absolute_path(root, absolute_path)
        except tornado.web.HTTPError:
            raise tornado.web.HTTPError(404) from None

    def compute_etag(self) -> str | None:
        """From size and modification time (the default hashes the whole file, every time)."""
        assert self.absolute_path is not None
        stat = os.stat(self.absolute_path)
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def make_app(root: Path) -> tornado.web.Application:
    """The ``serve`` application for the (resolved) runs folder ``root``."""
    return tornado.web.Application([
        (r"/(?:index\.html)?", _IndexHandler, {"root": root}),
        (r"/(.+)", _RunFileHandler, {"path": str(root)}),
    ], compress_response=False, static_hash_cache=False)


def serve(runs_dir: str | Path, host: str, port: int) -> ServerThread:
    """Start serving ``runs_dir`` on ``host:port`` (0: a free port); returns the running
    server (``.url``, ``.wait()``, ``.close()``)."""
    root = runs_folder(runs_dir)
    warn_if_exposed(host)
    return ServerThread(make_app(root), host, port, name="drive-viz serve")


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz serve`` command: serve until Ctrl-C."""
    host, port = parse_address(str(args.port), default_host=args.host)
    server = serve(args.runs_dir, host, port)
    print(f"serving {Path(args.runs_dir)} at {server.url} (Ctrl-C stops)")
    server.wait()
    return 0
