"""How fast the CARLA recorder's client side runs: can it keep up with a 20 fps simulation?

Measures, at 800x600 with three RGB cameras and one segmentation camera:
- conversion: BGRA -> RGB for 3 cameras + tag -> mask lookup, per tick;
- the whole ``record()`` loop against the in-process fake server of tests/carla_double.py
  (includes the fake's image synthesis, 3 JPEG encodes, 1 PNG mask, the table row).
No CARLA server is involved, so this is the recorder's overhead, not the simulator's speed.
Prints a table and writes benchmarks/results/carla_record.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from carla_double import Scenario, make_fake_carla  # noqa: E402

from drive_viz.sim.carla_session import (  # noqa: E402
    SessionConfig,
    bgra_to_rgb,
    mask_lookup,
    segmentation_tags,
)

WIDTH, HEIGHT, FRAMES, SIM_FPS = 800, 600, 60, 20.0


def per_second(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return repeats / (time.perf_counter() - start)


def main() -> None:
    module, _ = make_fake_carla(Scenario())
    sys.modules["carla"] = module
    from drive_viz.sim.carla_record import record

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8).tobytes()
    lookup = mask_lookup(module)

    def convert() -> None:
        for _ in range(3):
            bgra_to_rgb(raw, WIDTH, HEIGHT)
        cv2.LUT(segmentation_tags(raw, WIDTH, HEIGHT), lookup)

    conversion = per_second(convert, 100)
    config = SessionConfig(width=WIDTH, height=HEIGHT, warmup_ticks=0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        record(config, Path(folder) / "rec", FRAMES)
        recording = FRAMES / (time.perf_counter() - start)
    rows = {"conversion ticks/s": conversion, "record() ticks/s (fake server)": recording,
            "record() / 20 fps real time": recording / SIM_FPS}
    for name, value in rows.items():
        print(f"{name:34s} {value:10.1f}")
    out = HERE / "results" / "carla_record.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"width": WIDTH, "height": HEIGHT, "frames": FRAMES, **rows},
                              indent=2))


if __name__ == "__main__":
    main()
