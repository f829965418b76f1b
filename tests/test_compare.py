"""``drive-viz compare``: per-model columns against replay of each model alone (also for two
different input contracts), agreement columns against the maps recomputed model by model,
the video's frame count, the report in headless Chromium, and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report_browser import CHROMIUM, INSPECT, _chromium_result

from drive_viz.model.contract import InputContract
from drive_viz.runs.replay import ReplayOptions, replay

FRAMES = 24
METHODS = ("saliency", "gradcam")
#: The second model's contract: another input size, crop (sides too) and colour than DAVE-2's.
OTHER = InputContract(input_size=(64, 128), crop=(0.3, 0.05, 0.1, 0.1), colour="rgb")


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> dict[str, Path]:
    """A 24-frame synthetic recording, the shipped DAVE-2 and an untrained 64x128 RGB net
    with its own contract on its card."""
    import keras

    from drive_viz.model.dave2 import SHIPPED_MODEL, card_path
    from drive_viz.sim.synth import write_synthetic_recording

    root = tmp_path_factory.mktemp("compare")
    recording = write_synthetic_recording(root / "rec", frames=FRAMES, seed=7)
    keras.utils.set_random_seed(5)
    inputs = keras.Input((*OTHER.input_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="c3")(x)
    outputs = keras.layers.Dense(1, name="steer")(keras.layers.Flatten()(x))
    other = root / "wide.keras"
    keras.Model(inputs, outputs).save(other)
    card_path(other).write_text(json.dumps({"contract": OTHER.to_json()}), encoding="utf-8")
    return {"root": root, "rec": Path(recording), "shipped": Path(SHIPPED_MODEL), "other": other}


@pytest.fixture(scope="module")
def compared(drive) -> tuple[dict, pd.DataFrame]:
    from drive_viz.runs.compare import compare

    options = ReplayOptions(methods=METHODS, video=False, progress=False, batch_size=8)
    summary = compare(drive["rec"], [drive["shipped"], drive["other"]], drive["root"] / "run",
                      options, labels=["ship", "wide"])
    return summary, pd.read_parquet(drive["root"] / "run" / "frames.parquet")


@pytest.mark.parametrize("label, model", [("ship", "shipped"), ("wide", "other")])
def test_per_model_columns_equal_replay_of_that_model_alone(drive, compared, label,
                                                            model) -> None:
    summary, table = compared
    out = drive["root"] / f"alone_{label}"
    alone_summary = replay(drive["rec"], drive[model], out,
                           ReplayOptions(methods=METHODS, video=False, progress=False,
                                         batch_size=8))
    alone = pd.read_parquet(out / "frames.parquet")
    np.testing.assert_array_equal(table["frame"], alone["frame"])
    np.testing.assert_allclose(table["steer_true"], alone["steer_true"])
    skip = {"frame", "row", "t", "target", "steer_true", "decode_ms", "model_ms", "render_ms",
            "encode_ms"}
    columns = [c for c in alone.columns if c not in skip]
    assert len(columns) > 20
    for column in columns:
        np.testing.assert_allclose(table[f"{label}_{column}"].to_numpy(np.float64),
                                   alone[column].to_numpy(np.float64), rtol=1e-4, atol=1e-5,
                                   err_msg=column)
    mine = summary["models"][label]
    for key in ("mae", "rmse", "correlation"):
        assert mine[key] == pytest.approx(alone_summary["steering"][key], rel=1e-4, abs=1e-6)


def test_agreement_columns_equal_map_agreement_of_each_models_own_maps(drive, compared) -> None:
    from drive_viz.analysis import FrameAnalyzer
    from drive_viz.attention.agreement import CameraGrid, MapResampler, map_agreement
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.preprocess import preprocess_batch
    from drive_viz.recording.reader import open_recording

    _, table = compared
    rec = open_recording(drive["rec"])
    frames = [rec.image(row, rec.cameras[0]) for row in range(FRAMES)]
    height, width = frames[0].shape[:2]
    grid = CameraGrid.for_frame(height, width)
    on_grid, seen = [], []
    for name in ("shipped", "other"):
        contract = model_contract(drive[name])
        analyzer = FrameAnalyzer(load_steering_model(drive[name]), METHODS, with_video=False,
                                 contract=contract)
        maps = analyzer.analyse(preprocess_batch(frames, contract), rec.steering()[:FRAMES]
                                ).maps["saliency"]
        resample = MapResampler.build(grid, contract.crop_box(height, width),
                                      contract.input_size)
        on_grid.append(resample(maps))
        seen.append(resample.seen)
    # The narrower crop sees less of the frame: agreement only where both look.
    assert (seen[0] & seen[1]).sum() < seen[0].sum()
    expected = map_agreement(on_grid[0], on_grid[1], seen[0] & seen[1], (height, width))
    for statistic, values in expected.items():
        np.testing.assert_allclose(table[f"ship_vs_wide_saliency_{statistic}"], values,
                                   rtol=1e-4, atol=1e-5, err_msg=statistic)
    np.testing.assert_allclose(table["ship_vs_wide_pred_diff"],
                               table["ship_steer_pred"] - table["wide_steer_pred"], atol=1e-12)


def test_summary_pairs_follow_the_columns(compared) -> None:
    summary, table = compared
    assert summary["kind"] == "compare"
    pair = summary["pairs"]["ship_vs_wide"]
    a, b = table["ship_abs_error"].to_numpy(), table["wide_abs_error"].to_numpy()
    assert pair["share_a_better"] == pytest.approx(np.mean(a < b))
    difference = pair["mae_difference"]
    assert difference["value"] == pytest.approx(a.mean() - b.mean())
    assert difference["low"] <= difference["value"] <= difference["high"]
    assert pair["agreement"]["pearson"] == pytest.approx(
        np.nanmean(table["ship_vs_wide_saliency_pearson"]))
    steering = pair["events"]["steering"]
    diff = np.abs(table["ship_vs_wide_pred_diff"].to_numpy())
    assert steering[0]["value"] == pytest.approx(diff.max())
    assert steering[0]["frame"] == int(table["frame"].iat[int(np.argmax(diff))])


def test_video_of_three_models_decodes_to_every_frame_and_report_loads(drive, tmp_path) -> None:
    import av

    from drive_viz.runs.compare import compare

    run = tmp_path / "run"
    options = ReplayOptions(methods=METHODS, progress=False, batch_size=8, end=12,
                            video_size=(640, 360))
    summary = compare(drive["rec"], [drive["shipped"], drive["other"], drive["shipped"]], run,
                      options, labels=["ship", "wide", "again"])
    with av.open(str(run / "annotated.mp4")) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == 12 == summary["video"]["frames"]
    assert pictures[0].shape == (360, 640, 3)
    # The same model twice: no disagreement at all.
    assert summary["pairs"]["ship_vs_again"]["mean_abs_pred_diff"] == pytest.approx(0, abs=1e-7)
    assert summary["pairs"]["ship_vs_again"]["agreement"]["pearson"] == pytest.approx(1, abs=1e-4)
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: the report is not loaded in a browser")
    result = _chromium_result(run / "report.html", tmp_path / "profile", INSPECT,
                              "inspect-result")
    assert result["errors"] == []
    assert result["ready"] == "1"
    assert any(card["gallery"] == "gallery-ship_vs_wide_steering" for card in result["cards"])


def _cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drive_viz.cli", "compare", *map(str, args),
                           "--quiet", "--no-video"], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(Path(__file__).parents[1]),
                               "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("case", ["duplicate", "one", "broken"])
def test_refusals_are_one_line_exit_2_and_leave_no_folder(drive, tmp_path, case) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    models = {"duplicate": ["--model", drive["shipped"], "--model", drive["shipped"]],
              "one": ["--model", drive["shipped"]],
              "broken": ["--model", drive["shipped"], "--model", broken]}[case]
    out = tmp_path / "run"
    done = _cli(drive["rec"], *models, "--out", out)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("drive-viz")]
    assert len(lines) == 1, done.stderr
    expected = {"duplicate": "share the label", "one": "2 to 4 model files",
                "broken": str(broken)}[case]
    assert expected in lines[0]
    assert not out.exists()


def test_compare_layout_places_each_models_heat_through_its_own_crop() -> None:
    from drive_viz.model.contract import DAVE2_CONTRACT
    from drive_viz.render.overlay import OverlayRenderer, Timeline

    frame = np.full((160, 320, 3), 90, np.uint8)
    renderer = OverlayRenderer("saliency", ("saliency",), timeline=Timeline(np.zeros(3), 2),
                               panels=[("dave", DAVE2_CONTRACT), ("wide", OTHER)])
    blank = renderer.draw_compare(frame, [np.zeros((66, 200)), np.zeros((64, 128))],
                                  [0.0, 0.0], 0.0, 0, 0.0, position=0)
    hot = renderer.draw_compare(frame, [np.ones((66, 200)), np.ones((64, 128))],
                                [0.1, -0.2], 0.0, 1, 0.05, position=1)
    changed = np.any(hot != blank, axis=2)
    for box, contract in zip(renderer.panel_boxes, (DAVE2_CONTRACT, OTHER), strict=True):
        # The frame fills the panel's width below its 34-pixel header, centred vertically.
        scale = box.w / 320
        oy = box.y + 34 + (box.h - 34 - round(160 * scale)) // 2
        top, bottom, left, right = contract.crop_box(160, 320)
        inside = changed[oy + round(top * scale) + 2:oy + round(bottom * scale) - 2,
                         box.x + round(left * scale) + 2:box.x + round(right * scale) - 2]
        assert inside.all()
        above = changed[oy + 2:oy + round(top * scale) - 2, box.x + 2:box.x + box.w - 2]
        assert not above.any()
        rows = slice(oy + round(top * scale) + 2, oy + round(bottom * scale) - 2)
        beside = np.concatenate([changed[rows, box.x:box.x + round(left * scale) - 2],
                                 changed[rows, box.x + round(right * scale) + 2:box.x + box.w]],
                                axis=1)
        assert beside.size == 0 if left == 0 else beside.size > 0
        assert not beside.any()
    # Each model's predicted curve (anti-aliased) in its own colour on the one strip.
    strip = hot[renderer.strip.y:renderer.strip.y + renderer.strip.h,
                renderer.strip.x:renderer.strip.x + renderer.strip.w].astype(int)
    from drive_viz.render.overlay import MODEL_COLORS

    for color in MODEL_COLORS[:2]:
        assert (np.abs(strip - color).max(axis=2) < 60).any()
