"""LRP against VisualBackProp on a model and recording: map agreement and cost.

Bojarski et al. (2016) say VisualBackProp gives maps like LRP's at a fraction of the cost.
This measures both on the same frames: per frame, the Spearman and Pearson correlation of the
VisualBackProp map with |LRP| (VisualBackProp is non-negative and unsigned), averaged over
frames; and each method's frames/s at batch 64 (each engine computes only that method, plus
the prediction), fastest of interleaved rounds, as ratios to the prediction alone.
Prints a table and writes ``benchmarks/results/lrp_vs_vbp.json``.

    python benchmarks/lrp_vs_vbp.py REC [--model models/dave2_synth.keras] [--frames 64]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from attention import best_seconds_per_call  # noqa: E402

from drive_viz.attention import AttentionEngine  # noqa: E402
from drive_viz.attention.evaluate import spearman_rows  # noqa: E402
from drive_viz.model.dave2 import load_steering_model, model_contract  # noqa: E402
from drive_viz.model.preprocess import preprocess_batch  # noqa: E402
from drive_viz.recording.reader import open_recording  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "lrp_vs_vbp.json"
ROOT = Path(__file__).resolve().parent.parent
LRP = ("lrp_epsilon", "lrp_zplus")
CASES = {"prediction only": (), "visualbackprop": ("visualbackprop",),
         "lrp_epsilon": ("lrp_epsilon",), "lrp_zplus": ("lrp_zplus",),
         "saliency": ("saliency",)}


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (N, ...) -> (N,)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", help="recording folder")
    parser.add_argument("--model", default=str(ROOT / "models" / "dave2_synth.keras"))
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")
    model = load_steering_model(args.model)
    recording = open_recording(args.recording)
    rows = np.unique(np.linspace(0, len(recording) - 1, args.frames).round().astype(int))
    camera = recording.cameras[0]
    inputs = preprocess_batch([recording.image(int(r), camera) for r in rows],
                              model_contract(args.model))
    maps = AttentionEngine(model, ("visualbackprop", *LRP))(inputs).maps
    agreement = {}
    for name in LRP:
        agreement[name] = {
            "spearman_mean": float(np.nanmean(spearman_rows(np.abs(maps[name]),
                                                            maps["visualbackprop"]))),
            "pearson_mean": float(np.nanmean(pearson_rows(np.abs(maps[name]),
                                                          maps["visualbackprop"])))}
    agreement["lrp_epsilon vs lrp_zplus"] = {
        "spearman_mean": float(np.nanmean(spearman_rows(maps["lrp_epsilon"], maps["lrp_zplus"]))),
        "pearson_mean": float(np.nanmean(pearson_rows(maps["lrp_epsilon"], maps["lrp_zplus"])))}
    engines = {label: AttentionEngine(model, methods) for label, methods in CASES.items()}
    for engine in engines.values():
        engine(inputs)  # trace before timing
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(args.rounds):
        for label, engine in engines.items():
            best[label] = min(best[label], best_seconds_per_call(
                lambda e=engine: e(inputs), 0.5))
    unit = best["prediction only"]
    timing = {label: {"frames_per_s": len(inputs) / seconds, "cost_in_predictions":
                      seconds / unit} for label, seconds in best.items()}
    print(f"{len(inputs)} frames of {args.recording}, model {args.model}")
    print(f"{'maps':30s} {'Spearman':>9s} {'Pearson':>9s}")
    for label, values in agreement.items():
        shown = label if " vs " in label else f"|{label}| vs visualbackprop"
        print(f"{shown:30s} {values['spearman_mean']:9.3f} {values['pearson_mean']:9.3f}")
    heading = f"method (batch {len(inputs)})"
    print(f"\n{heading:30s} {'frames/s':>9s} {'x prediction':>13s}")
    for label, values in timing.items():
        print(f"{label:30s} {values['frames_per_s']:9.0f} {values['cost_in_predictions']:13.2f}")
    ratio = best["lrp_epsilon"] / best["visualbackprop"]
    print(f"\nlrp_epsilon costs {ratio:.1f}x visualbackprop "
          f"(lrp_zplus {best['lrp_zplus'] / best['visualbackprop']:.1f}x)")
    summary = {"recording": str(args.recording), "model": str(args.model),
               "frames": len(inputs), "agreement": agreement, "timing": timing,
               "lrp_epsilon_over_visualbackprop": ratio,
               "lrp_zplus_over_visualbackprop": best["lrp_zplus"] / best["visualbackprop"],
               "rounds": args.rounds, "tensorflow": tf.__version__,
               "note": "fastest of interleaved rounds on a shared machine: ratios of one run"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
