"""Training throughput at batch 64 with augmentation, and how long steps wait for data.

Writes a synthetic recording (with side cameras), builds the same input stream and compiled
model as ``drive-viz train``, and times, in one run:

* cold epoch: the first pass, which decodes every JPEG into the frame store,
* data only: pulling batches from the stream (frames already in the frame store),
* compute only: ``model.fit`` on one cached batch (no input pipeline),
* full loop: ``model.fit`` on the augmented stream (from its start, the store warm), as
  ``drive-viz train`` runs it,
* compute only with ``steps_per_execution`` 8 (what Keras's per-step Python overhead costs),
* the same two with ``train_on_batch`` (one Python call per step, as a hand-written loop).

Data, compute and full loop are measured ``--rounds`` times, interleaved, and the median
is reported (the machine is shared), with the process CPU time per batch (all threads; less
sensitive to other processes than wall time). The share of step time spent waiting for data is
1 - compute / full. Prints a table and writes ``benchmarks/results/training.json``.

    python benchmarks/training.py [--frames 1500] [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 64
#: Forward 26.9 M multiply-adds per frame (DESIGN.md); a train step costs about 3 forwards.
TRAIN_FLOP_PER_FRAME = 3 * 2 * 26.9e6
MATMUL_CEILING_GFLOPS = 500.0
#: steps_per_execution of the extra compute-only measurement (Keras per-step overhead).
GROUPED_STEPS = 8
COMPUTE = "compute only (fit, cached batch)"
FULL = "full loop (fit on the stream, as train)"


def per_step(run: Callable[[int], None], steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds (all threads) per step of ``run(steps)``, after one
    warm-up ``run(2)`` (tracing)."""
    run(2)
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500, help="synthetic frames to record")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved repetitions of each measurement (median reported)")
    args = parser.parse_args()

    import tensorflow as tf

    from drive_viz.model.augment import Augmentation
    from drive_viz.model.dataset import training_dataset
    from drive_viz.model.dave2 import build_dave2
    from drive_viz.model.train import TrainConfig, _geometry, collect_samples, compile_for_training
    from drive_viz.recording.reader import open_recording
    from drive_viz.sim.synth import write_synthetic_recording

    with tempfile.TemporaryDirectory(prefix="drive-viz-bench-") as tmp:
        path = write_synthetic_recording(Path(tmp) / "rec", args.frames, seed=5,
                                         side_cameras=True, masks=False)
        recording = open_recording(path)
        config = TrainConfig(recordings=[path], out=Path(tmp) / "m.keras", batch_size=BATCH)
        geometry = _geometry([recording], config.recovery)
        data = collect_samples([recording], config, geometry)
        steps_needed = 1 + args.rounds * (3 * args.steps + 8)
        epochs = 1 + steps_needed * BATCH // len(data.train) + 1
        stream, steps = training_dataset(data.store, data.train, batch_size=BATCH,
                                         epochs=epochs, seed=0, augmentation=Augmentation(),
                                         geometry=geometry)
        model = compile_for_training(build_dave2(seed=0), config.lr)
        batches = iter(stream)

        start = time.perf_counter()
        for _ in range(steps):  # cold epoch: decode every frame into the store
            next(batches)
        cold = time.perf_counter() - start

        x, y = next(batches)
        cached = tf.data.Dataset.from_tensors((x, y)).repeat()

        def pull(count: int) -> None:
            for _ in range(count):
                next(batches)

        def fit_cached(count: int) -> None:
            model.fit(cached, epochs=1, steps_per_epoch=count, shuffle=False, verbose=0)

        def fit_stream(count: int) -> None:
            model.fit(stream, epochs=1, steps_per_epoch=count, shuffle=False, verbose=0)

        grouped = compile_for_training(build_dave2(seed=0), config.lr,
                                       steps_per_execution=GROUPED_STEPS)

        def fit_cached_grouped(count: int) -> None:
            grouped.fit(cached, epochs=1, steps_per_epoch=count, shuffle=False, verbose=0)

        def steps_cached(count: int) -> None:
            for _ in range(count):
                model.train_on_batch(x, y)

        def steps_stream(count: int) -> None:
            for _ in range(count):
                model.train_on_batch(*next(batches))

        measurements = {
            "data only (frame store + augment)": pull,
            COMPUTE: fit_cached,
            FULL: fit_stream,
            f"compute only (fit, {GROUPED_STEPS} steps per execution)": fit_cached_grouped,
            "compute only (train_on_batch, cached)": steps_cached,
            "full loop (train_on_batch + next batch)": steps_stream,
        }
        rates: dict[str, list[float]] = {name: [] for name in measurements}
        cpu_ms: dict[str, list[float]] = {name: [] for name in measurements}
        for _ in range(args.rounds):
            for name, run in measurements.items():
                wall, cpu = per_step(run, args.steps)
                rates[name].append(BATCH / wall)
                cpu_ms[name].append(1e3 * cpu)
        data.store.close()

    rows = {"cold epoch (decode + preprocess + augment)": steps * BATCH / cold}
    rows.update({name: statistics.median(values) for name, values in rates.items()})
    compute, full = rows[COMPUTE], rows[FULL]
    waiting = max(0.0, 1.0 - full / compute)
    print(f"training DAVE-2, batch {BATCH}, augmentation on, {len(data.train)} samples "
          f"({args.frames} frames x 3 cameras, 320x160 JPEG), {os.cpu_count()} CPUs, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps")
    cpu = {name: statistics.median(values) for name, values in cpu_ms.items()}
    cores = os.cpu_count() or 1
    print(f"{'stage':<45} {'frames/s':>9} {'CPU ms/batch':>13} {'CPU bound':>10}   "
          "frames/s per round")
    for name, rate in rows.items():
        spread = " ".join(f"{r:.0f}" for r in rates.get(name, []))
        used = f"{cpu[name]:.1f}" if name in cpu else ""
        bound = f"{cores * BATCH / cpu[name] * 1e3:.0f}" if name in cpu else ""
        print(f"{name:<45} {rate:>9.0f} {used:>13} {bound:>10}   {spread}")
    print(f"CPU bound: frames/s if all {cores} cores were free (cores x batch / CPU time); "
          "CPU ms/batch barely moves with other load, frames/s does")
    print(f"full loop / compute only (fit): {full / compute:.2f} in frames/s, "
          f"{cpu[COMPUTE] / cpu[FULL]:.2f} in CPU time; share of step time waiting for data: "
          f"{waiting:.0%}")
    gflops = compute * TRAIN_FLOP_PER_FRAME / 1e9
    print(f"train step: {gflops:.0f} GFLOP/s = {gflops / MATMUL_CEILING_GFLOPS:.0%} of the "
          f"~{MATMUL_CEILING_GFLOPS:.0f} GFLOP/s matmul ceiling measured on these machines")
    result = {"batch": BATCH, "samples": len(data.train), "frames_per_second": rows,
              "rounds": rates, "cpu_ms_per_batch": cpu_ms, "wait_share": waiting,
              "train_step_gflops": gflops, "cpus": os.cpu_count(),
              "note": "one run on a shared, noisy machine; compare ratios, not absolutes"}
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
