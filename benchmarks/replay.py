"""Replay throughput: end to end vs each stage alone, on a synthetic 800x600 JPEG drive.

    python benchmarks/replay.py [--frames 400] [--batch-size 32]

Prints a table and writes benchmarks/results/replay.json. Stages alone: decode + preprocess
(JPEG -> RGB -> 66x200 YUV), model + attention (default methods, batched), render
(1280x720 overlay) and encode (H.264). Targets on 2 cores: >= 150 frames/s end to end and
end to end >= 70 % of the slowest stage alone. All figures come from one run: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="frames in the drive")
    parser.add_argument("--batch-size", type=int, default=32, help="model batch size")
    args = parser.parse_args()

    from drive_viz.attention import AttentionEngine
    from drive_viz.attention.grids import LayerScale, tile_activations
    from drive_viz.model.dave2 import build_dave2
    from drive_viz.model.preprocess import preprocess_frame
    from drive_viz.recording.reader import open_recording
    from drive_viz.render.colormap import RunningScale
    from drive_viz.render.overlay import OverlayRenderer, Timeline
    from drive_viz.render.video import H264Writer
    from drive_viz.replay import DEFAULT_METHODS, ReplayOptions, replay
    from drive_viz.sim.synth import write_synthetic_recording

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rec_path = write_synthetic_recording(root / "rec", frames=args.frames, seed=1,
                                             width=800, height=600, masks=True)
        model_path = root / "dave2.keras"
        model = build_dave2(seed=0)
        model.save(model_path)
        rec = open_recording(rec_path)
        n = len(rec)
        rates: dict[str, float] = {}

        tick = time.perf_counter()
        frames = [rec.image(i) for i in range(n)]
        inputs = np.stack([preprocess_frame(f) for f in frames])
        rates["decode + preprocess"] = n / (time.perf_counter() - tick)

        engine = AttentionEngine(model, methods=DEFAULT_METHODS, activation_layers=("conv1",))
        batch = args.batch_size
        padded = np.concatenate([inputs, np.zeros((-n % batch, *inputs.shape[1:]), np.float32)])
        engine(padded[:batch])  # trace once, outside the timing
        tick = time.perf_counter()
        results = [engine(padded[k:k + batch]) for k in range(0, len(padded), batch)]
        rates["model + attention"] = len(padded) / (time.perf_counter() - tick)

        scales = {m: RunningScale() for m in DEFAULT_METHODS}
        heat = {m: np.concatenate([scales[m].normalize(r.maps[m]) for r in results])[:n]
                for m in DEFAULT_METHODS}
        acts = np.concatenate([r.activations["conv1"] for r in results])[:n]
        grids = tile_activations(acts, LayerScale.fit(acts[:batch]))
        renderer = OverlayRenderer(DEFAULT_METHODS[0], DEFAULT_METHODS,
                                   timeline=Timeline(rec.steering()))
        tick = time.perf_counter()
        pictures = []
        for i in range(n):
            picture = renderer.draw(frames[i], inputs[i], {m: heat[m][i] for m in heat},
                                    grids[i], 0.1, 0.2, i, i / rec.fps, position=i)
            if i < 120:
                pictures.append(picture)
        rates["render"] = n / (time.perf_counter() - tick)
        del frames

        tick = time.perf_counter()
        with H264Writer(root / "encode.mp4", rec.fps) as writer:
            for i in range(n):
                writer.write(pictures[i % len(pictures)])
        rates["encode"] = n / (time.perf_counter() - tick)

        tick = time.perf_counter()
        replay(rec_path, model_path, root / "run",
               ReplayOptions(batch_size=batch, progress=False))
        end_to_end = n / (time.perf_counter() - tick)

    slowest = min(rates, key=rates.get)
    ratio = end_to_end / rates[slowest]
    print(f"replay benchmark: {n} frames 800x600 JPEG -> 1280x720 H.264, "
          f"methods {','.join(DEFAULT_METHODS)}, batch {batch}")
    print(f"{'stage':<24}{'frames/s':>10}")
    for stage, rate in rates.items():
        print(f"{stage:<24}{rate:>10.1f}")
    print(f"{'end to end':<24}{end_to_end:>10.1f}")
    print(f"end to end / slowest stage alone ({slowest}): {ratio:.0%}  (target >= 70 %)")
    print(f"end to end target >= 150 frames/s: {'met' if end_to_end >= 150 else 'NOT met'}")
    out = Path(__file__).with_name("results") / "replay.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"frames": n, "batch_size": batch, "stages_fps": rates,
                               "end_to_end_fps": end_to_end, "slowest_stage": slowest,
                               "end_to_end_over_slowest": ratio, "cpus": os.cpu_count()},
                              indent=2))


if __name__ == "__main__":
    main()
