"""Compare two models in one pass vs replaying each alone, one after the other.

    python benchmarks/compare.py [--frames 400] [--rounds 2] [--no-video]

On a synthetic 320x160 drive: the shipped DAVE-2 and an untrained ReLU DAVE-2 (seed 0). Each
round times ``compare`` of both, then ``replay`` of each model alone, in alternating order
(compare first in even rounds, last in odd ones), all end to end (tables, report and video
included, model loading in both), after one untimed round on 8 frames (the process's one-time
TensorFlow and library start-up would otherwise land on whichever runs first). Prints a table
and writes benchmarks/results/compare.json. The issue's target: compare's time <= the two
replays' sum, i.e. ``speedup`` (sum of the replays / compare) >= 1. All figures come from one
run: compare ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="frames in the drive")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (alternating order)")
    parser.add_argument("--no-video", action="store_true", help="tables and report only")
    args = parser.parse_args()

    from drive_viz.model.dave2 import SHIPPED_MODEL, build_dave2
    from drive_viz.runs.compare import compare
    from drive_viz.runs.replay import ReplayOptions, replay
    from drive_viz.sim.synth import write_synthetic_recording

    options = ReplayOptions(video=not args.no_video, progress=False, overwrite=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rec = write_synthetic_recording(root / "rec", frames=args.frames, seed=2)
        other = root / "relu.keras"
        build_dave2(activation="relu", seed=0).save(other)
        models = [Path(SHIPPED_MODEL), other]
        times: dict[str, list[float]] = {"compare": [], "replay_a": [], "replay_b": []}

        def run_compare(options: ReplayOptions = options) -> None:
            tick = time.perf_counter()
            compare(rec, models, root / "compare", options, labels=["shipped", "relu"])
            times["compare"].append(time.perf_counter() - tick)

        def run_replays(options: ReplayOptions = options) -> None:
            for name, model in zip(("replay_a", "replay_b"), models, strict=True):
                tick = time.perf_counter()
                replay(rec, model, root / name, options)
                times[name].append(time.perf_counter() - tick)

        warm_up = dataclasses.replace(options, end=8)
        run_compare(warm_up)
        run_replays(warm_up)
        times = {name: [] for name in times}
        for index in range(args.rounds):
            for step in ((run_compare, run_replays) if index % 2 == 0
                         else (run_replays, run_compare)):
                step()

    rounds = []
    print(f"{'round':>5} {'compare s':>10} {'replay A s':>11} {'replay B s':>11} "
          f"{'A + B s':>8} {'(A + B) / compare':>18}")
    for k in range(args.rounds):
        both = times["replay_a"][k] + times["replay_b"][k]
        rounds.append({"compare_s": times["compare"][k], "replay_a_s": times["replay_a"][k],
                       "replay_b_s": times["replay_b"][k], "speedup": both / times["compare"][k]})
        print(f"{k:>5} {times['compare'][k]:>10.2f} {times['replay_a'][k]:>11.2f} "
              f"{times['replay_b'][k]:>11.2f} {both:>8.2f} {both / times['compare'][k]:>18.2f}")
    total = (sum(times["replay_a"]) + sum(times["replay_b"])) / sum(times["compare"])
    print(f"all rounds: (A + B) / compare = {total:.2f} "
          f"(target >= 1: {'met' if total >= 1 else 'NOT met'})")
    out = Path(__file__).with_name("results") / "compare.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "frames": args.frames, "video": not args.no_video, "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0], "rounds": rounds, "speedup": total}, indent=2))


if __name__ == "__main__":
    main()
