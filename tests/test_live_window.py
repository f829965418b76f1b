"""``drive-viz live --display`` under a virtual X server (Xvfb): the window shows the overlay.

Xvfb's ``-fbdir`` keeps the screen in an XWD file, read here as the screenshot while the live
session runs. Skipped when Xvfb is not installed (``apt-get install xvfb``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from drive_viz.render.overlay import BACKGROUND, PANEL_BACKGROUND

SCREEN = (1600, 900)
DISPLAY_NUMBER = 97
FRAMES = 50  # 2.5 s at 20 fps shown in real time: ample time to catch the window
MODEL = Path(__file__).resolve().parents[1] / "models" / "dave2_synth.keras"

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None,
                                reason="Xvfb is not installed (apt-get install xvfb)")


def read_xwd(path: Path) -> np.ndarray:
    """An XWD screen dump (ZPixmap, 32 bits per pixel, masks 0xff0000/0xff00/0xff) as RGB
    uint8 (height, width, 3)."""
    data = path.read_bytes()
    header = np.frombuffer(data[:100], ">u4")
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    byte_order, bits_per_pixel, bytes_per_line = int(header[7]), int(header[11]), int(header[12])
    colors = int(header[19])
    assert bits_per_pixel == 32 and tuple(header[14:17]) == (0xFF0000, 0xFF00, 0xFF)
    start = header_size + 12 * colors
    words = np.frombuffer(data[start:start + height * bytes_per_line],
                          "<u4" if byte_order == 0 else ">u4").reshape(height, -1)[:, :width]
    return np.stack([(words >> 16) & 255, (words >> 8) & 255, words & 255],
                    axis=2).astype(np.uint8)


def overlay_box(screen: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the overlay's background colour on the screen."""
    ys, xs = np.nonzero((screen == BACKGROUND).all(axis=2))
    if len(xs) < 10_000:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.fixture
def xvfb(tmp_path):
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    server = subprocess.Popen(
        ["Xvfb", f":{DISPLAY_NUMBER}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-fbdir", str(fbdir), "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    framebuffer = fbdir / "Xvfb_screen0"
    deadline = time.monotonic() + 10
    while not framebuffer.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not framebuffer.exists():
        server.kill()
        pytest.fail(f"Xvfb did not start: {server.communicate()[1].decode()[-500:]}")
    yield f":{DISPLAY_NUMBER}", framebuffer
    server.terminate()
    server.wait(timeout=10)


@pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} is missing")
def test_window_shows_the_overlay(xvfb):
    display, framebuffer = xvfb
    env = {**os.environ, "DISPLAY": display, "TF_CPP_MIN_LOG_LEVEL": "2"}
    session = subprocess.Popen(
        [sys.executable, "-m", "drive_viz.cli", "live", "--model", str(MODEL), "--display",
         "--frames", str(FRAMES), "--methods", "saliency,gradcam"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    box, screen = None, None
    deadline = time.monotonic() + 90
    while box is None and session.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        screen = read_xwd(framebuffer)
        box = overlay_box(screen)
    out, err = session.communicate(timeout=120)
    assert session.returncode == 0, err.decode()[-2000:]
    assert box is not None, "no overlay window appeared on the virtual screen"
    x0, y0, x1, y1 = box
    assert (x1 - x0, y1 - y0) == (1280, 720)  # the renderer's whole canvas, unscaled
    window = screen[y0:y1, x0:x1]
    assert (window == PANEL_BACKGROUND).all(axis=2).sum() > 10_000  # the panels are drawn
    # Not blank: the camera view in the main panel has many distinct colours.
    main_panel = window[8:480, 8:848].reshape(-1, 3)
    assert len(np.unique(main_panel, axis=0)) > 500
    assert b"latency p50" in out
