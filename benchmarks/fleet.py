"""Fleet scaling: 8 synthetic recordings on 1 and 2 local workers, and on a two-node cluster.

    python benchmarks/fleet.py [--recordings 8] [--frames 240]

Each configuration gets a fresh Ray session, started (and timed) before ``run_fleet`` so the
fleet's wall time excludes the cluster's start: a local cluster of 1 CPU, one of 2 CPUs, and
two nodes of 1 CPU each started on this machine with ``ray.cluster_utils.Cluster``. Replays
run without video (the fleet's default). Reported per configuration: the fleet's wall time,
frames/s, the scaling against one worker, the sum of the replays' own time (``replay`` inside
the task), and what the fleet costs beyond the replays: "start", from ``run_fleet``'s call
to the first replay (shipping the model, starting a worker process, importing TensorFlow and
loading the model), "loads", the other workers' model loads in their first task, and the
overhead per recording, ``(wall x workers - replay seconds - start x workers - loads) /
recordings``: dispatch, the dataset copy, publishing, fleet.json and the report, and idle
worker time (the other workers during the start, an uneven last round). "ray s" is the
cluster's own start, before the fleet. It then checks that every run's per-frame table is
identical across the configurations (timing columns aside). Targets on 2 cores: 2 workers
>= 1.7x one worker; <= 1 s overhead per recording.
Writes benchmarks/results/fleet.json. All figures come from one run: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TIMING = ("decode_ms", "model_ms", "render_ms", "encode_ms")
QUIET = {"log_to_driver": False, "logging_level": logging.ERROR}


def _start(config: str) -> tuple[Any, int]:
    """Start the Ray session of ``config``; (the Cluster to shut down or None, its CPUs)."""
    import ray

    if config == "two nodes":
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, **QUIET)
        cluster.wait_for_nodes()
        return cluster, 2
    workers = 1 if config == "1 worker" else 2
    ray.init(address="local", num_cpus=workers, include_dashboard=False, **QUIET)
    return None, workers


def _tables(out: Path, names: list[str]) -> dict[str, Any]:
    import pandas as pd

    return {name: pd.read_parquet(out / "runs" / name / "frames.parquet").drop(
        columns=list(TIMING)) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240)
    args = parser.parse_args()

    import ray

    from drive_viz.model.dave2 import build_dave2
    from drive_viz.runs.fleet import FleetOptions, run_fleet
    from drive_viz.runs.replay import ReplayOptions
    from drive_viz.sim.synth import write_synthetic_recording

    options = ReplayOptions(video=False, progress=False)
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        recordings = [write_synthetic_recording(root / f"rec{k}", frames=args.frames, seed=k)
                      for k in range(args.recordings)]
        model = root / "dave2.keras"
        build_dave2(seed=0).save(model)
        for config in ("1 worker", "2 workers", "two nodes"):
            tick = time.perf_counter()
            cluster, workers = _start(config)
            start_seconds = time.perf_counter() - tick
            try:
                out = root / config.replace(" ", "-")
                tick, began = time.perf_counter(), time.time()
                data = run_fleet(recordings, model, out, options, FleetOptions(progress=False))
                wall = time.perf_counter() - tick
            finally:
                ray.shutdown()
                if cluster is not None:
                    cluster.shutdown()
            entries = data["recordings"]
            assert data["counts"]["ok"] == args.recordings, data["counts"]
            replay_seconds = sum(e["worker"]["replay_seconds"] for e in entries)
            start = min(e["worker"]["replay_started_at"] for e in entries) - began
            loads = sum(e["worker"]["load_seconds"] for e in entries)
            one_time = start * workers + loads
            frames = data["frames"]
            tables[config] = _tables(out, [e["name"] for e in entries])
            rows.append({"config": config, "workers": workers, "start_seconds": start_seconds,
                         "wall_seconds": wall, "frames": frames,
                         "frames_per_second": frames / wall,
                         "replay_seconds_sum": replay_seconds,
                         "fleet_start_seconds": start, "worker_load_seconds": loads,
                         "overhead_per_recording": (wall * workers - replay_seconds - one_time)
                         / args.recordings,
                         "worker_processes": len({e["worker"]["pid"] for e in entries})})
    base = rows[0]["frames_per_second"]
    for row in rows:
        row["scaling"] = row["frames_per_second"] / base
    reference = tables["1 worker"]
    differences = {}
    for config, runs in tables.items():
        worst = 0.0
        for name, table in runs.items():
            ref = reference[name]
            assert list(table.columns) == list(ref.columns)
            for column in table.columns:
                if table[column].dtype.kind == "f":
                    delta = (table[column] - ref[column]).abs().max()
                    worst = max(worst, float(0.0 if delta != delta else delta))
                else:
                    assert table[column].tolist() == ref[column].tolist(), (config, column)
        differences[config] = worst

    print(f"{args.recordings} recordings x {args.frames} frames, no video")
    print(f"{'config':<10} {'ray s':>6} {'wall s':>7} {'frames/s':>9} {'scaling':>8} "
          f"{'replay s':>9} {'start s':>8} {'loads s':>8} {'overhead s/rec':>15} "
          f"{'max |diff|':>11}")
    for row in rows:
        print(f"{row['config']:<10} {row['start_seconds']:>6.1f} {row['wall_seconds']:>7.1f} "
              f"{row['frames_per_second']:>9.1f} {row['scaling']:>8.2f} "
              f"{row['replay_seconds_sum']:>9.1f} {row['fleet_start_seconds']:>8.1f} "
              f"{row['worker_load_seconds']:>8.1f} {row['overhead_per_recording']:>15.2f} "
              f"{differences[row['config']]:>11.2g}")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "fleet.json").write_text(json.dumps(
        {"recordings": args.recordings, "frames": args.frames, "rows": rows,
         "max_abs_difference_vs_1_worker": differences,
         "load_average": os.getloadavg()}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
