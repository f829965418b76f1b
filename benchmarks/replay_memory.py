"""Replay memory: peak RSS of a whole replay as the drive grows (it must stay flat).

    python benchmarks/replay_memory.py [--frames 1000 4000] [--no-video]

Synthesizes one drive per length (320x160, masks), replays each in a fresh process with the
shipped model and the default methods, and reports the peak resident memory of that process
(``ru_maxrss``). Replay streams in bounded batches, so the peak should not grow with the
number of frames; the last column is the peak relative to the shortest drive's. Prints a table
and writes benchmarks/results/replay_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drive_viz.model.dave2 import SHIPPED_MODEL
from drive_viz.sim.synth import write_synthetic_recording

RESULTS = Path(__file__).resolve().parent / "results" / "replay_memory.json"


_MEASURE = ("import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_of_replay(recording: Path, out: Path, video: bool) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``drive-viz replay`` run in its own process (measured by
    a fresh parent, so each length's peak is its own)."""
    command = [sys.executable, "-m", "drive_viz.cli", "replay", str(recording), "--model",
               str(SHIPPED_MODEL), "--out", str(out), "--quiet", "--overwrite"]
    if not video:
        command.append("--no-video")
    tick = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - tick


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--no-video", action="store_true")
    args = parser.parse_args()
    lengths = sorted(args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for frames in lengths:
            recording = Path(scratch) / f"drive_{frames}"
            write_synthetic_recording(recording, frames=frames, seed=7)
            peak, seconds = peak_rss_of_replay(recording, Path(scratch) / f"run_{frames}",
                                               not args.no_video)
            rows.append({"frames": frames, "peak_rss_mib": peak, "seconds": seconds})
    base = rows[0]["peak_rss_mib"]
    print(f"replay memory ({'no video' if args.no_video else 'with video'}), shipped model, "
          "default methods, 320x160 synthetic drives")
    print(f"{'frames':>8} {'peak RSS MiB':>14} {'seconds':>9} {'vs shortest':>12}")
    for row in rows:
        row["relative_to_shortest"] = row["peak_rss_mib"] / base
        print(f"{row['frames']:>8} {row['peak_rss_mib']:>14.0f} {row['seconds']:>9.1f} "
              f"{row['relative_to_shortest']:>12.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"video": not args.no_video, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
