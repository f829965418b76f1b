"""Helpers shared by several test files (imported as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from tornado.websocket import websocket_connect


def tree_digest(folder: Path) -> str:
    """Hash of every path, file content and mode under ``folder`` (symlinks by target)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
        digest.update(str(path.lstat().st_mode).encode())
    return digest.hexdigest()


def dave2_float64(model: Any, activation: str = "elu") -> Any:
    """The same DAVE-2 weights run by Keras in float64: an implementation independent of the
    attention engine's, and precise enough for finite differences."""
    import keras

    from drive_viz.model.dave2 import build_dave2

    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    try:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
        clone = build_dave2(activation=activation, seed=0)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    clone.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return clone


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = ("chromium is not installed (apt-get install chromium) so the page cannot be "
               "loaded in a browser")


def chromium_command(profile: Path, *extra: str) -> list[str]:
    """Headless Chromium with no network of its own (no updates, no first-run), a throw-away
    profile, and ``extra`` arguments."""
    assert CHROMIUM is not None
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--no-first-run", f"--user-data-dir={profile}", *extra]


class HeadlessPage:
    """One headless Chromium tab driven over the DevTools protocol (a WebSocket, through
    tornado's client): ``goto(url)``, ``run(js)`` (the value of a JS expression; a Promise is
    awaited), ``wait_for(js)`` (until the expression is truthy). Use as a context manager."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            chromium_command(profile, "--remote-debugging-port=0", "--window-size=1400,1000",
                             "about:blank"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        endpoint = None
        for line in self.process.stderr:
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match.group(1)
                break
        assert endpoint, "chromium did not start its DevTools endpoint"
        self._drain = threading.Thread(target=self.process.stderr.read, daemon=True)
        self._drain.start()
        port = int(re.search(r":(\d+)/", endpoint).group(1))
        targets = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.loop = asyncio.new_event_loop()
        self._next_id = 0

        async def connect() -> Any:
            return await websocket_connect(page["webSocketDebuggerUrl"],
                                           max_message_size=64 << 20)

        self.socket = self._await(connect())
        self.errors: list[str] = []

    def _await(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, self.timeout))

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        number = self._next_id
        await self.socket.write_message(json.dumps({"id": number, "method": method,
                                                    "params": params}))
        while True:
            message = await self.socket.read_message()
            assert message is not None, "chromium closed the DevTools connection"
            reply = json.loads(message)
            if reply.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(reply["params"]["exceptionDetails"])[:500])
            if reply.get("id") == number:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result."""
        return self._await(self._call(method, params))

    def goto(self, url: str) -> None:
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def run(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy (it may fail while a page loads)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.run(expression)
            except AssertionError:
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)

    def close(self) -> None:
        self.socket.close()
        self.loop.close()
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> HeadlessPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
