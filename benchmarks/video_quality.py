"""Replay video size and encoder CPU per ``--video-quality`` level, on a synthetic drive.

    python benchmarks/video_quality.py [--frames 600] [--seed 3]

Synthesizes a drive (800x600 JPEG, 20 frames/s), replays it with the shipped model once per
level (1280x720 overlay, default methods) and reports the video's average bitrate (Mbit/s),
what an hour of driving would take (GB, 10^9 bytes), and the encoder's CPU ms per frame: the
frames of the highest level's video are decoded once and encoded again at every level's
quantizer in one thread (libx264 ``ultrafast``, one thread, as replay runs it), the levels
interleaved over ``--rounds`` rounds and the best round reported, so the levels are compared on
the same pictures in one run. The quantizer 24 that was the default before the
levels existed is measured the same way, as level "before". Writes
benchmarks/results/video_quality.json and a decoded frame of each level's video as
video_quality_LEVEL.png beside it, to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

#: The constant quantizer replay used before the quality levels, measured as level PREVIOUS.
PREVIOUS_QP = 24
PREVIOUS = "before"


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of an MP4 as RGB uint8 (H, W, 3)."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def encode_cpu_ms(frames: list[np.ndarray], qp: int, fps: float, out: Path) -> float:
    """CPU ms per frame (whole process) to encode ``frames`` at constant quantizer ``qp``."""
    from drive_viz.render.video import H264Writer

    height, width = frames[0].shape[:2]
    cpu = time.process_time()
    with H264Writer(out, fps, (width, height), qp=qp, threads=1) as writer:
        for frame in frames:
            writer.write(frame)
    return (time.process_time() - cpu) * 1000 / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames in the drive (600: 30 s)")
    parser.add_argument("--seed", type=int, default=3, help="synthetic world seed")
    parser.add_argument("--rounds", type=int, default=3,
                        help="encoder timing rounds per level (the best is reported)")
    args = parser.parse_args()

    from drive_viz.model.dave2 import SHIPPED_MODEL
    from drive_viz.render.video import DEFAULT_QUALITY, QUALITY_QP
    from drive_viz.runs.replay import ReplayOptions, replay
    from drive_viz.sim.synth import write_synthetic_recording

    results_dir = Path(__file__).with_name("results")
    results_dir.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_synthetic_recording(root / "drive", frames=args.frames, seed=args.seed)
        # The previous default, replayed as one more level (in this process only) for comparison.
        QUALITY_QP[PREVIOUS] = PREVIOUS_QP
        levels = sorted(QUALITY_QP, key=QUALITY_QP.get)
        videos = {}
        for level in levels:
            run = root / level
            summary = replay(root / "drive", SHIPPED_MODEL, run,
                             ReplayOptions(video_quality=level, progress=False))
            videos[level] = run / "annotated.mp4"
            seconds = summary["frames"]["replayed"] / summary["video"]["fps"]
            mbit_s = videos[level].stat().st_size * 8 / seconds / 1e6
            rows.append({"level": level, "qp": QUALITY_QP[level],
                         "default": level == DEFAULT_QUALITY, "mbit_per_s": mbit_s,
                         "gb_per_hour": mbit_s / 8 * 3600 / 1000, "fps": summary["video"]["fps"]})
        frames = decoded_frames(videos[levels[0]])
        for row in rows:
            row["encode_cpu_ms_rounds"] = []
        for _ in range(args.rounds):  # interleaved, so a slow moment hits every level alike
            for row in rows:
                row["encode_cpu_ms_rounds"].append(encode_cpu_ms(
                    frames, row["qp"], row["fps"], root / f"again_{row['level']}.mp4"))
        for row in rows:
            row["encode_cpu_ms"] = min(row["encode_cpu_ms_rounds"])
            picture = decoded_frames(videos[row["level"]])[len(frames) // 2]
            cv2.imwrite(str(results_dir / f"video_quality_{row['level']}.png"),
                        cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"{'level':<8} {'QP':>3} {'Mbit/s':>7} {'GB/hour':>8} {'encode CPU ms/frame':>20}")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        print(f"{row['level']:<8} {row['qp']:>3} {row['mbit_per_s']:>7.2f} "
              f"{row['gb_per_hour']:>8.2f} {row['encode_cpu_ms']:>20.2f}{mark}")
    (results_dir / "video_quality.json").write_text(
        json.dumps({"frames": args.frames, "seed": args.seed, "levels": rows}, indent=2))


if __name__ == "__main__":
    main()
