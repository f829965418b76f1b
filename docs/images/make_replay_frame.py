"""Rebuild the README's hero picture, ``docs/images/replay_frame.jpg``: one frame of the
annotated video that ``drive-viz replay --causal-blobs`` writes.

Run from the repo root: ``python docs/images/make_replay_frame.py``. Replays rows 200-500 of
the held-out synthetic drive (seed 101, 1,500 frames, synthesized here if
``recordings/synth_heldout_s101`` is missing) with the shipped model into ``build/hero`` and
keeps the video frame of the sharpest bend (largest recorded |steer|).
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "dave2_synth.keras"
HELDOUT = ROOT / "recordings" / "synth_heldout_s101"
RUN = ROOT / "build" / "hero"
OUT = ROOT / "docs" / "images" / "replay_frame.jpg"


def main() -> int:
    from drive_viz.runs.replay import ReplayOptions, replay
    from drive_viz.sim.synth import write_synthetic_recording

    if not (HELDOUT / "meta.json").is_file():
        write_synthetic_recording(HELDOUT, 1500, seed=101, masks=False)
    replay(HELDOUT, MODEL, RUN, ReplayOptions(start=200, end=500, causal_blobs=True,
                                              overwrite=True, progress=False))
    table = pd.read_parquet(RUN / "frames.parquet")
    wanted = int(np.nanargmax(np.abs(table["steer_true"].to_numpy())))
    with av.open(str(RUN / "annotated.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == wanted:
                picture = frame.to_ndarray(format="rgb24")
                break
    cv2.imwrite(str(OUT), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {OUT} (row {int(table['row'].iloc[wanted])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
