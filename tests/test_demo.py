"""The README's first quick-start command works from a fresh clone: `drive-viz demo` uses only
committed files (the shipped model), synthesizes a drive and writes the video and report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and a git checkout")
def test_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(clone)],
                   check=True)
    assert (clone / "models" / "dave2_synth.keras").is_file(), "the shipped model is committed"
    env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's code, not this checkout's
    done = subprocess.run([sys.executable, "-m", "drive_viz.cli", "demo", "--frames", "30",
                           "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stdout + done.stderr  # no fall-back to an untrained model
    run = tmp_path / "runs" / "demo"
    assert f"video:  {Path('runs/demo/annotated.mp4')}" in done.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert Path(summary["model"]).resolve() == (clone / "models/dave2_synth.keras").resolve()
    assert summary["frames"]["replayed"] == 30
    with av.open(str(run / "annotated.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 30
    assert (run / "report.html").stat().st_size > 10_000
