"""Per-frame cost of the attention statistics and activation grids (pure numpy).

Replay and live call ``map_statistics`` once per method per batch and ``tile_activations``
once per batch; this measures frames/s of each at batch 1 and batch 64 on random maps with
masks, so it can be set against the engine's own frames/s (benchmarks/attention.py) taken
on the same machine. Prints a table and writes ``benchmarks/results/attention_stats.json``.

    python benchmarks/attention_stats.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drive_viz.attention.grids import LayerScale, tile_activations
from drive_viz.attention.stats import activation_summary, map_statistics

RESULTS = Path(__file__).resolve().parent / "results" / "attention_stats.json"


def frames_per_second(work: Callable[[], object], frames: int, repeats: int) -> float:
    """Median frames/s of ``work`` (which processes ``frames`` frames) over ``repeats`` runs."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 64):
        maps = rng.standard_normal((batch, 66, 200)).astype(np.float32)
        masks = rng.integers(0, 4, size=(batch, 66, 200), dtype=np.uint8)
        acts = np.maximum(rng.standard_normal((batch, 31, 98, 24)), 0).astype(np.float32)
        scale = LayerScale.fit(acts)
        cases = {
            "map_statistics (with masks)": lambda m=maps, k=masks: map_statistics(m, k, m[0]),
            "map_statistics (no masks)": lambda m=maps: map_statistics(m),
            "activation_summary conv1": lambda a=acts: activation_summary(a),
            "tile_activations conv1": lambda a=acts, s=scale: tile_activations(a, s),
        }
        for name, work in cases.items():
            fps = frames_per_second(work, batch, args.repeats)
            rows.append({"case": name, "batch": batch, "frames_per_s": fps,
                         "ms_per_frame": 1000.0 / fps})
    print(f"{'case':<30} {'batch':>5} {'frames/s':>10} {'ms/frame':>9}")
    for row in rows:
        print(f"{row['case']:<30} {row['batch']:>5} {row['frames_per_s']:>10.0f} "
              f"{row['ms_per_frame']:>9.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
