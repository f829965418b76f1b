"""Internal-unit targets: the one parser, finite-difference gradients, and replay --target."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from support import dave2_float64

from drive_viz.attention import AttentionEngine
from drive_viz.attention.targets import TargetError, UnitTarget, parse_target
from drive_viz.cli import main
from drive_viz.errors import DriveVizError
from drive_viz.model.dave2 import build_dave2

DAVE2_SHAPES = {"conv1": (31, 98, 24), "conv2": (14, 47, 36), "conv3": (5, 22, 48),
                "conv4": (3, 20, 64), "conv5": (1, 18, 64), "flatten": (1152,),
                "dense1": (100,), "dense2": (50,), "dense3": (10,), "steer": (1,)}


@pytest.mark.parametrize(("text", "expected"), [
    ("steer", "steer"), ("left", "left"), (" maintain ", "maintain"),
    ("conv3:17", UnitTarget("conv3", 17)), ("dense1:4", UnitTarget("dense1", 4)),
    ("conv3:17@2,10", UnitTarget("conv3", 17, (2, 10))),
    ("conv5:63@0,17", UnitTarget("conv5", 63, (0, 17))),
])
def test_parse_target_accepts_the_documented_forms(text, expected):
    target = parse_target(text, DAVE2_SHAPES)
    assert target == expected
    assert parse_target(str(target)) == target  # the text form round-trips


@pytest.mark.parametrize(("text", "message"), [
    ("right", "expected one of"), ("conv3", "LAYER:UNIT"), ("conv3:x", "LAYER:UNIT"),
    ("conv3:-1", "LAYER:UNIT"), ("conv3:17@2", "LAYER:UNIT"), ("conv3:1@a,b", "LAYER:UNIT"),
    ("conv9:1", "layer 'conv9' is not in the model"),
    ("conv3:48", r"unit 48 is out of range for layer 'conv3' \(48 units, 0..47\)"),
    ("dense1:100", "100 units"),
    ("conv3:1@5,0", r"outside 'conv3''s 5x22 feature map"),
    ("conv3:1@0,22", "outside"),
    ("dense1:0@0,0", "no rows and columns"),
])
def test_parse_target_refuses_with_one_line(text, message):
    with pytest.raises(TargetError, match=message) as caught:
        parse_target(text, DAVE2_SHAPES)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, DriveVizError) and isinstance(caught.value, ValueError)


def test_syntax_is_checked_without_a_model():
    assert parse_target("conv9:1") == UnitTarget("conv9", 1)
    with pytest.raises(TargetError):
        parse_target("conv9")


@pytest.fixture(scope="module")
def dave2():
    return build_dave2(activation="elu", seed=6)


@pytest.fixture(scope="module")
def dave2_float64_copy(dave2):
    return dave2_float64(dave2)


# conv3 cell (2, 10) is centred on input pixel (14 + 8 * 2, 14 + 8 * 10) = (30, 94) and sees
# 29 x 29 pixels (5 + 4 * 2 + 4 * 4), rows 16..44 and columns 80..108.
@pytest.mark.parametrize(("target", "layer", "pick"), [
    (UnitTarget("conv3", 17), "conv3", lambda a: a[..., 17].mean(axis=(1, 2))),
    (UnitTarget("conv3", 17, (2, 10)), "conv3", lambda a: a[:, 2, 10, 17]),
    (UnitTarget("dense1", 4), "dense1", lambda a: a[:, 4]),
])
def test_unit_gradient_matches_finite_differences(dave2, dave2_float64_copy, target, layer, pick):
    frame = np.random.default_rng(8).uniform(0, 255, (1, 66, 200, 3)).astype(np.float32)
    heat = AttentionEngine(dave2, ("gradient",), target=target)(frame).maps["gradient"][0]
    probe = keras.Model(dave2_float64_copy.inputs[0], dave2_float64_copy.get_layer(layer).output)
    pixels = [(30, 94), (20, 85), (44, 108), (33, 100), (60, 10), (0, 199)]
    step = 0.5
    probes = []
    for row, col in pixels:
        for sign in (1, -1):
            shifted = frame.astype(np.float64)
            shifted[0, row, col, :] += sign * step  # all three channels: the channel sum
            probes.append(shifted)
    values = pick(np.asarray(probe(np.concatenate(probes)))).reshape(len(pixels), 2)
    finite_diff = (values[:, 0] - values[:, 1]) / (2 * step)
    scale = np.abs(finite_diff).max()
    assert scale > 0
    engine = np.array([heat[r, c] for r, c in pixels])
    np.testing.assert_allclose(engine, finite_diff, rtol=1e-3, atol=2e-3 * scale)
    if target.position is not None:
        receptive = np.zeros(heat.shape, bool)
        receptive[16:45, 80:109] = True
        assert np.all(heat[~receptive] == 0) and np.abs(heat[receptive]).max() > 0


def test_engine_refuses_a_missing_unit(dave2):
    with pytest.raises(TargetError, match="conv3"):
        AttentionEngine(dave2, ("saliency",), target=UnitTarget("conv3", 48))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from drive_viz.sim.synth import write_synthetic_recording

    root = tmp_path_factory.mktemp("targets")
    write_synthetic_recording(root / "rec", 12, seed=3, width=200, height=100)
    build_dave2(seed=0).save(root / "model.keras")
    return root


def test_replay_with_a_unit_target_names_it(workspace, capsys):
    out = workspace / "run"
    code = main(["replay", str(workspace / "rec"), "--model", str(workspace / "model.keras"),
                 "--out", str(out), "--no-video", "--quiet", "--methods", "saliency,gradcam",
                 "--target", "conv3:17@2,10", "--batch-size", "8"])
    assert code == 0
    frames = pd.read_parquet(out / "frames.parquet")
    assert len(frames) == 12 and set(frames["target"]) == {"conv3:17@2,10"}
    assert "saliency_road_share" in frames.columns  # existing column names stay
    assert json.loads((out / "summary.json").read_text())["target"] == "conv3:17@2,10"
    csv = pd.read_csv(out / "frames.csv")
    assert set(csv["target"]) == {"conv3:17@2,10"}


@pytest.mark.parametrize(("target", "message"), [("conv3:99", "out of range"),
                                                 ("conv3:1@", "LAYER:UNIT")])
def test_replay_bad_target_is_a_one_line_error(workspace, capsys, target, message):
    code = main(["replay", str(workspace / "rec"), "--model", str(workspace / "model.keras"),
                 "--out", str(workspace / f"bad{len(target)}"), "--no-video", "--quiet",
                 "--target", target])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
