"""Training throughput at batch 64 with augmentation, and how long steps wait for data.

Writes a synthetic recording (with side cameras), builds the same input stream and model as
``drive-viz train``, and times, in one run:

* data only: pulling batches from the stream (frames already in the frame store),
* compute only: train steps on one cached batch (no input pipeline),
* full loop: pulling + training, as ``model.fit`` does,
* cold epoch: the first pass, which decodes every JPEG into the frame store.

The share of step time spent waiting for data is 1 - compute / full. Prints a table and
writes ``benchmarks/results/training.json``.

    python benchmarks/training.py [--frames 1500] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 64
#: Forward 26.9 M multiply-adds per frame (DESIGN.md); a train step costs about 3 forwards.
TRAIN_FLOP_PER_FRAME = 3 * 2 * 26.9e6
MATMUL_CEILING_GFLOPS = 500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500, help="synthetic frames to record")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    args = parser.parse_args()

    import keras

    from drive_viz.model.augment import Augmentation
    from drive_viz.model.dataset import training_dataset
    from drive_viz.model.dave2 import build_dave2
    from drive_viz.model.train import TrainConfig, _geometry, collect_samples
    from drive_viz.recording.reader import open_recording
    from drive_viz.sim.synth import write_synthetic_recording

    with tempfile.TemporaryDirectory(prefix="drive-viz-bench-") as tmp:
        path = write_synthetic_recording(Path(tmp) / "rec", args.frames, seed=5,
                                         side_cameras=True, masks=False)
        recording = open_recording(path)
        config = TrainConfig(recordings=[path], out=Path(tmp) / "m.keras", batch_size=BATCH)
        geometry = _geometry([recording], config.recovery)
        data = collect_samples([recording], config, geometry)
        epochs = 1 + 3 * args.steps * BATCH // len(data.train) + 3
        stream, steps = training_dataset(data.store, data.train, batch_size=BATCH,
                                         epochs=epochs, seed=0, augmentation=Augmentation(),
                                         geometry=geometry)
        model = build_dave2(seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        batches = iter(stream)

        start = time.perf_counter()
        for _ in range(steps):  # cold epoch: decode every frame into the store
            next(batches)
        cold = time.perf_counter() - start

        def timed(step, count: int) -> float:
            step()  # warm-up (tracing)
            start = time.perf_counter()
            for _ in range(count):
                step()
            return (time.perf_counter() - start) / count

        x, y = next(batches)
        data_only = timed(lambda: next(batches), args.steps)
        compute_only = timed(lambda: model.train_on_batch(x, y), args.steps)
        full = timed(lambda: model.train_on_batch(*next(batches)), args.steps)
        data.store.close()

    rows = {
        "cold epoch (decode + preprocess + augment)": steps * BATCH / cold,
        "data only (frame store + augment)": BATCH / data_only,
        "compute only (train step, cached batch)": BATCH / compute_only,
        "full loop (data + train step)": BATCH / full,
    }
    waiting = max(0.0, 1.0 - compute_only / full)
    print(f"training DAVE-2, batch {BATCH}, augmentation on, {len(data.train)} samples "
          f"({args.frames} frames x 3 cameras, 320x160 JPEG), {os.cpu_count()} CPUs")
    print(f"{'stage':<45} {'frames/s':>10}")
    for name, rate in rows.items():
        print(f"{name:<45} {rate:>10.0f}")
    print(f"share of step time waiting for data: {waiting:.0%}")
    gflops = rows["compute only (train step, cached batch)"] * TRAIN_FLOP_PER_FRAME / 1e9
    print(f"train step: {gflops:.0f} GFLOP/s = {gflops / MATMUL_CEILING_GFLOPS:.0%} of the "
          f"~{MATMUL_CEILING_GFLOPS:.0f} GFLOP/s matmul ceiling measured on these machines")
    result = {"batch": BATCH, "samples": len(data.train), "frames_per_second": rows,
              "wait_share": waiting, "train_step_gflops": gflops, "cpus": os.cpu_count(),
              "note": "one run on a shared, noisy machine; compare ratios, not absolutes"}
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
