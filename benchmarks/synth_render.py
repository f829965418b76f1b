"""Synthetic world render speed at 320x160 on one core, against numpy ceilings from the same run.

Prints a table and writes benchmarks/results/synth_render.json. Rendering always produces
the frame and its class mask together (one remap gives both); the rows separate the
render, the render plus a closed-loop step (car + expert), and the recording's encoding
cost (JPEG frame + PNG mask) so the whole ``drive-viz synth`` budget is visible.

Ceilings: one numpy pass over a full 320x160x3 frame (a uint8 copy, and a float32
multiply-add); the render's cost is quoted in such passes.
Run: ``python benchmarks/synth_render.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from drive_viz.recording.images import encode_jpeg, encode_mask_png
from drive_viz.sim.world import SyntheticWorld, SyntheticWorldConfig

WIDTH, HEIGHT = 320, 160
RESULTS = Path(__file__).parent / "results" / "synth_render.json"


def per_second(run: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls of ``run`` per second, best of three timed blocks of about ``seconds`` / 3."""
    run()
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            run()
            count += 1
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> dict[str, float]:
    cv2.setNumThreads(1)
    world = SyntheticWorld(SyntheticWorldConfig(width=WIDTH, height=HEIGHT), seed=0)
    world.reset(render=False)

    def render() -> object:
        return world.render("center")

    def render_and_step() -> object:
        control = world.expert_control()
        out = world.render("center")
        world.step(control.steer, control.throttle, control.brake, render=False)
        return out

    rgb, mask = world.render("center")
    frame_a = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame_b = np.empty_like(frame_a)
    float_a = frame_a.astype(np.float32)
    float_b = np.empty_like(float_a)

    results = {
        "render_fps": per_second(render),
        "render_and_step_fps": per_second(render_and_step),
        "jpeg_and_png_encode_fps": per_second(lambda: (encode_jpeg(rgb), encode_mask_png(mask))),
        "ceiling_copy_frames_per_s": per_second(lambda: np.copyto(frame_b, frame_a)),
        "ceiling_float_madd_frames_per_s": per_second(
            lambda: np.multiply(float_a, 1.01, out=float_b).__iadd__(float_a)),
    }
    results["render_cost_in_copy_passes"] = (results["ceiling_copy_frames_per_s"]
                                             / results["render_fps"])
    results["render_cost_in_madd_passes"] = (results["ceiling_float_madd_frames_per_s"]
                                             / results["render_fps"])
    results["render_pixel_gops"] = results["render_fps"] * WIDTH * HEIGHT / 1e9

    print(f"synthetic world, {WIDTH}x{HEIGHT}, one core (cv2 threads = 1)")
    print(f"{'measure':36s} {'value':>12s}")
    for key, value in results.items():
        print(f"{key:36s} {value:12.1f}" if value >= 10 else f"{key:36s} {value:12.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")
    return results


if __name__ == "__main__":
    main()
