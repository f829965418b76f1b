"""``drive-viz inspect``: one frame through every conv layer, as one PNG.

ONE attention-engine call on the frame returns every conv layer's activations and every conv
layer's Grad-CAM map (all gradients from the one shared backward pass); ``render.layers``
draws them, one row per conv layer under a header with the input view and steer true/pred.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from drive_viz.errors import DriveVizError


def inspect_frame(recording_path: str | Path, row: int, model_path: str | Path, *,
                  camera: str | None = None, target: str = "steer",
                  gradcam_layer: str | None = None, unsafe_model: bool = False) -> np.ndarray:
    """The per-layer figure (``render.layers.draw_layers``) of table row ``row`` of a
    recording, RGB uint8 (H, W, 3). ``target``: text form (``parse_target``);
    ``gradcam_layer``: only this conv layer's row (None: every conv layer)."""
    from drive_viz.attention.engine import AttentionEngine
    from drive_viz.attention.grids import LayerScale, tile_activations
    from drive_viz.attention.network import Network
    from drive_viz.attention.targets import parse_target
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.preprocess import input_to_rgb, preprocess_frame
    from drive_viz.recording.reader import open_recording
    from drive_viz.render.layers import LayerRow, draw_layers

    parsed = parse_target(target)
    rec = open_recording(recording_path)
    camera = camera or rec.cameras[0]
    rec.meta.camera(camera)
    if not 0 <= row < len(rec):
        raise DriveVizError(f"{rec.path}: --frame {row} is out of range (the recording has "
                            f"{len(rec)} rows, 0..{len(rec) - 1})")
    model = load_steering_model(model_path, unsafe=unsafe_model)
    contract = model_contract(model_path)
    inputs = preprocess_frame(rec.image(row, camera), contract)[None]
    convs = Network(model, contract).conv_layers
    if gradcam_layer is not None:
        if gradcam_layer not in convs:
            raise DriveVizError(f"--gradcam-layer {gradcam_layer!r} is not a conv layer of "
                                f"the model (conv layers: {', '.join(convs)})")
        convs = (gradcam_layer,)
    engine = AttentionEngine(model, methods=(), target=parsed, activation_layers=convs,
                             gradcam_layers=convs, contract=contract)
    result = engine(inputs)
    rows = []
    for name in convs:
        acts = result.activations[name]
        grid = tile_activations(acts, LayerScale.fit(acts), separator=0.3)[0]
        rows.append(LayerRow(name, tuple(int(d) for d in acts.shape[1:]), grid,
                             result.gradcam_by_layer[name][0]))
    table_row = rec.row(row)
    steer_true = float(table_row.steer)
    true_text = f"{steer_true:+.3f}" if math.isfinite(steer_true) else "n/a"
    header = [f"{rec.path.name} / {camera}",
              f"row {row}, frame {table_row.frame}, t {table_row.t:.2f} s",
              f"steer true {true_text}   pred {float(result.prediction[0]):+.3f}",
              f"target {parsed}   model {Path(model_path).name}"]
    return draw_layers(input_to_rgb(inputs[0], contract), rows, header)


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz inspect`` command: write the per-layer PNG atomically."""
    from drive_viz.render.png import png_output, write_png

    out = png_output(args.out)
    image = inspect_frame(args.recording, args.frame, args.model, camera=args.camera,
                          target=args.target, gradcam_layer=args.gradcam_layer,
                          unsafe_model=args.unsafe_model)
    write_png(out, image)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})")
    return 0
