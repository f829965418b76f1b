"""Rebuild the README picture of counterfactual renders (docs/images/counterfactual.png).

Run from the repo root: ``python docs/images/make_counterfactual.py [EVALUATION_JSON]``.
Reads an ``evaluation.json`` written by ``drive-viz evaluate ... --counterfactuals`` (default
``runs/trust/evaluation.json``), takes its frame where removing the road edge moves the
steering most, and shows that frame as the network sees it, the counterfactuals of the road
edge, edge lines and centre line with the steering each gives, and each method's map with its
attention share on those three elements.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from make_images import _panel, _save, _scaled, _sheet

ROOT = Path(__file__).resolve().parents[2]
SHOWN = ("road_edge", "edge_lines", "centre_line")
NAMES = {"road_edge": "road edge", "edge_lines": "edge lines", "centre_line": "centre line"}
SHORT = {"road_edge": "verge", "edge_lines": "edge lines", "centre_line": "centre"}


def main() -> int:
    from drive_viz.attention.counterfactual import Rerenderer
    from drive_viz.attention.evaluate import MapMaker
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.preprocess import input_to_rgb, preprocess_batch
    from drive_viz.recording.reader import open_recording

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs/trust/evaluation.json"
    report = json.loads(path.read_text())
    section = report["counterfactuals"]
    road_edge = np.asarray(section["delta_steer"]["road_edge"])
    pick = int(np.argmax(road_edge))
    row = section["frames"][pick]
    model_path = report["model"]
    model, prep = load_steering_model(model_path), model_contract(model_path)
    rerenderer = Rerenderer(open_recording(report["recording"]))
    camera = section["camera"]
    frames = [rerenderer.render(row, camera)] + [rerenderer.render(row, camera, (e,))
                                                 for e in SHOWN]
    inputs = preprocess_batch(frames, prep)
    steer = section["steer"][pick]
    panels = [_panel(input_to_rgb(inputs[0]), None, f"frame {row}: steer {steer:+.3f}")]
    for element, view in zip(SHOWN, inputs[1:], strict=True):
        delta = section["delta_steer"][element][pick]
        panels.append(_panel(input_to_rgb(view), None,
                             f"no {NAMES[element]}: |change| {delta:.3f}"))
    methods = [m for m in ("saliency", "gradcam", "visualbackprop", "sobel")
               if m in section["methods"]]
    maps = MapMaker(model, methods)(inputs[:1])
    for method in methods:
        share = section["methods"][method]["attention_share"]
        text = ", ".join(f"{SHORT[e]} {share[e][pick]:.0%}" for e in SHOWN)
        panels.append(_panel(input_to_rgb(inputs[0]), _scaled(np.abs(maps[method][0])),
                             f"{method}: {text}"))
    _save("counterfactual.png", _sheet(panels))
    print(f"wrote docs/images/counterfactual.png (row {row} of {report['recording']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
