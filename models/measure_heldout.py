"""Measure the shipped model on held-out synthetic drives, beside an oracle that sees the state.

    python models/measure_heldout.py models/dave2_synth.keras recordings/synth_heldout_s101 \
        recordings/synth_heldout_s102 recordings/synth_heldout_s103

For each recording (written by ``drive-viz synth``, which stores the car's pose per row):
the model's mean error (prediction - label; negative = steers left of the expert), MAE and
correlation with the expert's label; the always-predict-the-training-mean baseline; and the
ORACLE, the expert's own pure pursuit evaluated on the recorded state (lateral offset, heading
error, the road's curvature ahead, speed) without its weave: the part of the label the state
determines. ``label - oracle`` is the weave, which no single frame shows (the recovery kicks
are not in the labels: they move the car, and the oracle sees where it went). Also the best
linear fit of the label from the state and the oracle (fitted on the same drive). Prints a table and
writes models/dave2_synth.heldout.json. The
last row, ``all``, pools every frame of the drives given (the shipped model's targets are
stated on it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from drive_viz.atomic import write_json_atomic
from drive_viz.attention.counterfactual import Rerenderer
from drive_viz.attention.network import steering_predictor
from drive_viz.model.dave2 import load_steering_model, model_contract, read_card
from drive_viz.model.preprocess import preprocess_batch
from drive_viz.recording.reader import open_recording


def drive_series(model_path: str, recording_path: str) -> dict[str, np.ndarray]:
    """One recording's per-frame series (N,) float64: the model's ``prediction``, the expert's
    ``label``, the no-weave ``oracle`` and ``fitted``, the label's best linear fit from the state
    and the oracle (fitted on this very drive, so optimistic)."""
    model = load_steering_model(model_path)
    prep = model_contract(model_path)
    predict = steering_predictor(model)
    recording = open_recording(recording_path)
    label = recording.steering()
    prediction = np.concatenate([
        predict(preprocess_batch([recording.image(i, "center")
                                  for i in range(start, min(start + 256, len(recording)))],
                                 prep))
        for start in range(0, len(recording), 256)]).astype(np.float64)
    rerenderer = Rerenderer(recording)
    speed = recording.table["speed"].to_numpy(np.float64)
    world = rerenderer.world
    oracle = np.empty(len(recording))
    state = np.empty((len(recording), 4))
    for row in range(len(recording)):
        world.restore(rerenderer.pose(row), speed[row])
        oracle[row] = world.expert_steer(weave=False)
        now = world.state
        state[row] = (1.0, now.lateral_offset, now.heading_error,
                      np.interp(now.s, world.track.s, world.track.kappa))
    features = np.column_stack([state, oracle])
    fitted = features @ np.linalg.lstsq(features, label, rcond=None)[0]
    return {"prediction": prediction, "label": label, "oracle": oracle, "fitted": fitted}


def measure(series: dict[str, np.ndarray], train_mean: float) -> dict[str, float]:
    """Model and oracle numbers (see the module doc) from ``drive_series`` output (one drive,
    or several concatenated)."""
    prediction, label, oracle, fitted = (series[k] for k in
                                         ("prediction", "label", "oracle", "fitted"))
    error, weave = prediction - label, label - oracle
    return {
        "frames": len(label),
        "mean_error": float(error.mean()), "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "correlation": float(np.corrcoef(prediction, label)[0, 1]),
        "baseline_mae": float(np.abs(label - train_mean).mean()),
        "oracle_mae": float(np.abs(weave).mean()),
        "oracle_rmse": float(np.sqrt(np.mean(weave ** 2))),
        "oracle_correlation": float(np.corrcoef(oracle, label)[0, 1]),
        "model_vs_oracle_correlation": float(np.corrcoef(prediction, oracle)[0, 1]),
        "fitted_state_mae": float(np.abs(label - fitted).mean()),
        "fitted_state_correlation": float(np.corrcoef(fitted, label)[0, 1]),
        "model_vs_oracle_mae": float(np.abs(prediction - oracle).mean()),
        # How much of the model's squared error the weave accounts for: the share of the
        # error's variance that a least-squares multiple of the weave explains.
        "error_variance_explained_by_weave": float(np.corrcoef(error, weave)[0, 1] ** 2),
    }


def main(argv: list[str]) -> int:
    model_path, *recordings = argv
    train_mean = float(read_card(model_path)["train_mean_steer"])
    series = [drive_series(model_path, path) for path in recordings]
    rows = [{"recording": str(path), "seed": open_recording(path).meta.extra.get("seed"),
             **measure(one, train_mean)} for path, one in zip(recordings, series, strict=True)]
    pooled = {key: np.concatenate([one[key] for one in series]) for key in series[0]}
    rows.append({"recording": "all", "seed": "all", **measure(pooled, train_mean)})
    keys = ("seed", "mean_error", "mae", "correlation", "baseline_mae", "oracle_mae",
            "oracle_correlation", "fitted_state_correlation", "model_vs_oracle_mae",
            "model_vs_oracle_correlation",
            "error_variance_explained_by_weave")
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:+.4f}" if isinstance(row[k], float) else str(row[k])
                         for k in keys))
    out = Path(model_path).with_suffix(".heldout.json")
    write_json_atomic(out, {"model": str(model_path), "recordings": rows[:-1],
                            "pooled": rows[-1]})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
