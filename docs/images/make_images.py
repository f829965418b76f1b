"""Rebuild the README pictures of unit targets, Guided Grad-CAM, CAM and ``inspect``.

Run from the repo root: ``python docs/images/make_images.py [--gap-model M.keras]``.
Uses the shipped ``models/dave2_synth.keras`` on the frame with the largest |steer| of the
held-out synthetic drive (seed 101; synthesized here if ``recordings/synth_heldout_s101`` is
missing). The CAM picture needs a DAVE-2 with a GAP head: without ``--gap-model`` one is
trained on ``recordings/synth_train_s1`` (about 8 minutes on 2 cores) with
``--compare-with models/dave2_synth.keras``, so its card compares both heads' MAE.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"
MODEL = ROOT / "models" / "dave2_synth.keras"
HELDOUT = ROOT / "recordings" / "synth_heldout_s101"
TRAIN = ROOT / "recordings" / "synth_train_s1"
LABEL = 22
ZOOM = 2


def _panel(view_rgb: np.ndarray, heat: np.ndarray | None, label: str) -> np.ndarray:
    """The input view (66, 200) zoomed, heat in [0, 1] blended on it, a label above."""
    from drive_viz.render.colormap import blend_heat

    picture = view_rgb if heat is None else blend_heat(view_rgb, heat.astype(np.float32), 0.7)
    picture = cv2.resize(picture, (200 * ZOOM, 66 * ZOOM), interpolation=cv2.INTER_NEAREST)
    strip = np.full((LABEL, picture.shape[1], 3), 24, np.uint8)
    cv2.putText(strip, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1,
                cv2.LINE_AA)
    return np.concatenate([strip, picture])


def _scaled(raw: np.ndarray) -> np.ndarray:
    """A non-negative map divided by its 99.5th percentile, clipped to [0, 1]."""
    high = np.percentile(raw, 99.5)
    return np.clip(raw / high, 0, 1) if high > 0 else np.zeros_like(raw)


def _sheet(panels: list[np.ndarray], cols: int = 2) -> np.ndarray:
    rows = [np.concatenate(panels[i:i + cols], axis=1) for i in range(0, len(panels), cols)]
    return np.concatenate(rows)


def _save(name: str, rgb: np.ndarray, drop_bits: int = 3) -> None:
    """Write a PNG posterized to 8 - ``drop_bits`` bits per channel (README files < 200 KB)."""
    from drive_viz.atomic import write_atomic

    step = 1 << drop_bits
    posterized = (rgb // step) * step + step // 2
    ok, data = cv2.imencode(".png", cv2.cvtColor(posterized.astype(np.uint8), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"{name}: PNG encoding failed")
    write_atomic(OUT / name, data.tobytes())
    print(f"wrote {OUT / name}: {(OUT / name).stat().st_size // 1024} KB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap-model", type=Path, default=None,
                        help="a trained GAP-head DAVE-2 (default: train one)")
    args = parser.parse_args()
    from drive_viz.attention import AttentionEngine, UnitTarget
    from drive_viz.inspect_layers import inspect_frame
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.preprocess import input_to_rgb, preprocess_frame
    from drive_viz.recording.reader import open_recording
    from drive_viz.sim.synth import write_synthetic_recording

    if not (HELDOUT / "meta.json").is_file():
        write_synthetic_recording(HELDOUT, 1000, seed=101, masks=False)
    rec = open_recording(HELDOUT)
    row = int(np.nanargmax(np.abs(rec.steering())))
    model = load_steering_model(MODEL)
    x = preprocess_frame(rec.image(row, rec.cameras[0]), model_contract(MODEL))[None]
    view = input_to_rgb(x[0])

    # 1. Unit targets: the most active conv3 filter, as a whole and at its strongest cell.
    conv3 = AttentionEngine(model, (), activation_layers=("conv3",))(x).activations["conv3"][0]
    filt = int(np.argmax(conv3.mean(axis=(0, 1))))
    cell = np.unravel_index(int(np.argmax(conv3[..., filt])), conv3.shape[:2])
    whole, at = UnitTarget("conv3", filt), UnitTarget("conv3", filt, (int(cell[0]), int(cell[1])))
    maps = {t: AttentionEngine(model, ("saliency",), target=t)(x).maps["saliency"][0]
            for t in (whole, at)}
    _save("unit_target.png", _sheet([
        _panel(view, None, f"input, row {row}"),
        _panel(view, _scaled(maps[whole]), f"saliency of {whole} (filter mean)"),
        _panel(view, _scaled(maps[at]), f"saliency of {at} (one cell)")], cols=3))

    # 2. Guided Grad-CAM(++) and its factors.
    result = AttentionEngine(model, ("guided_backprop", "gradcam", "guided_gradcam",
                                     "guided_gradcam_plus_plus"))(x)
    _save("guided_gradcam.png", _sheet([
        _panel(view, _scaled(np.abs(result.maps["guided_backprop"][0])), "|guided backprop|"),
        _panel(view, _scaled(result.maps["gradcam"][0]), "Grad-CAM (conv3)"),
        _panel(view, _scaled(np.abs(result.maps["guided_gradcam"][0])), "|Guided Grad-CAM|"),
        _panel(view, _scaled(np.abs(result.maps["guided_gradcam_plus_plus"][0])),
               "|Guided Grad-CAM++|")]))

    # 3. CAM on the GAP head.
    gap_path = args.gap_model
    if gap_path is None:
        gap_path = ROOT / "build" / "dave2_synth_gap.keras"
        subprocess.run(["drive-viz", "train", str(TRAIN), "--out", str(gap_path), "--head",
                        "gap", "--epochs", "12", "--patience", "4", "--seed", "0",
                        "--compare-with", str(MODEL), "--no-progress"], check=True)
    gap = load_steering_model(gap_path)
    cam = AttentionEngine(gap, ("cam", "gradcam"), gradcam_layer="conv5")(x)
    signed = cam.maps["cam"][0]
    peak = np.abs(signed).max()
    _save("cam_gap.png", _sheet([
        _panel(view, np.clip(signed / peak, 0, 1),
               f"CAM > 0: pushes right (pred {cam.prediction[0]:+.3f})"),
        _panel(view, np.clip(-signed / peak, 0, 1), "CAM < 0: pushes left"),
        _panel(view, _scaled(cam.maps["gradcam"][0]), "Grad-CAM conv5 (= relu(CAM) / 18)")],
        cols=3))

    # 4. drive-viz inspect.
    _save("layers.png", inspect_frame(HELDOUT, row, MODEL), drop_bits=4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
