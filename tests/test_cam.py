"""CAM on a GAP DAVE-2, Guided Grad-CAM(++), and the gap head's comparison in the card."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from drive_viz.attention import AttentionEngine
from drive_viz.attention.targets import TargetError, UnitTarget
from drive_viz.errors import DriveVizError, ModelError
from drive_viz.model.dave2 import build_dave2, card_path


@pytest.fixture(scope="module")
def gap_model():
    return build_dave2(activation="elu", head="gap", seed=9)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(4).uniform(0, 255, (3, 66, 200, 3)).astype(np.float32)


def _conv5(model, frames):
    return np.asarray(keras.Model(model.inputs[0], model.get_layer("conv5").output)(frames))


def test_cam_cells_average_to_the_output(gap_model, frames):
    """y = mean_ij sum_k w_k A_k(i, j) + b: the CAM read at conv5's 18 cell centres
    (column 30 + 8 j; the one row covers every row) averages to y - b."""
    result = AttentionEngine(gap_model, ("cam",))(frames)
    cam = result.maps["cam"]
    kernel, bias = gap_model.get_layer("steer").get_weights()
    cells = cam[:, 33, 30:30 + 8 * 18:8]
    output = np.asarray(gap_model(frames))[:, 0]
    np.testing.assert_allclose(cells.mean(axis=1) + bias[0], output, rtol=1e-4, atol=1e-5)
    expected = _conv5(gap_model, frames)[:, 0] @ kernel[:, 0]
    np.testing.assert_allclose(cells, expected, rtol=1e-4, atol=1e-6)
    assert cam.min() < 0 < cam.max()  # signed: CAM has no ReLU
    np.testing.assert_allclose(result.prediction, output, rtol=1e-4, atol=1e-5)


def test_cam_equals_gradcam_on_the_last_conv_layer_up_to_scale(gap_model, frames):
    """For GAP then a linear output, dS/dA_k = w_k / (h w) in every cell, so Grad-CAM on conv5
    is relu(CAM) / 18 on conv5's cells: proportional wherever the CAM is positive. (Between
    cell centres they differ where the CAM changes sign: Grad-CAM takes the ReLU before the
    upsampling.)"""
    result = AttentionEngine(gap_model, ("cam", "gradcam"), gradcam_layer="conv5")(frames)
    centres = (slice(None), 33, slice(30, 30 + 8 * 18, 8))
    cam, gradcam = result.maps["cam"][centres], result.maps["gradcam"][centres]
    positive = cam > 1e-6 * np.abs(cam).max()
    assert 0.1 < positive.mean() < 0.9
    correlation = np.corrcoef(cam[positive], gradcam[positive])[0, 1]
    assert correlation > 0.9999
    np.testing.assert_allclose(np.maximum(cam, 0) / 18, gradcam, rtol=1e-4,
                               atol=1e-6 * gradcam.max())
    full_cam, full_gradcam = result.maps["cam"], result.maps["gradcam"]
    both_positive = np.all(cam > 0, axis=0)  # cells positive in every frame
    run = np.flatnonzero(both_positive[:-1] & both_positive[1:])
    if len(run):  # between two positive neighbours the upsampled maps are proportional too
        left = 30 + 8 * run[0]
        np.testing.assert_allclose(full_cam[:, :, left:left + 9] / 18,
                                   full_gradcam[:, :, left:left + 9], rtol=1e-4)


def test_cam_left_is_minus_steer(gap_model, frames):
    steer = AttentionEngine(gap_model, ("cam",))(frames).maps["cam"]
    left = AttentionEngine(gap_model, ("cam",), target="left")(frames).maps["cam"]
    np.testing.assert_allclose(left, -steer, rtol=1e-6, atol=1e-9)


def test_cam_needs_a_gap_head_and_an_output_target(gap_model):
    with pytest.raises(ModelError, match="GAP head"):
        AttentionEngine(build_dave2(seed=1), ("cam",))
    with pytest.raises(TargetError, match="steer"):
        AttentionEngine(gap_model, ("cam",), target="maintain")


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_guided_gradcam_is_the_product_of_its_factors(activation, frames):
    """The target (conv3 filter 5 at cell (2, 10)) makes both factors zero somewhere: guided
    backprop outside the cell's receptive field, Grad-CAM on conv3 (= relu(A_5) / 110) where
    the filter is silent."""
    model = build_dave2(activation=activation, seed=12)
    both = AttentionEngine(model, ("guided_gradcam", "guided_gradcam_plus_plus",
                                   "guided_backprop", "gradcam", "gradcam_plus_plus"),
                           target=UnitTarget("conv3", 5, (2, 10)))(frames)
    guided = both.maps["guided_backprop"]
    for name, cam_name in (("guided_gradcam", "gradcam"),
                           ("guided_gradcam_plus_plus", "gradcam_plus_plus")):
        product, cam = both.maps[name], both.maps[cam_name]
        cam_zero, guided_zero = cam == 0, guided == 0
        assert (cam_zero & ~guided_zero).any() and (guided_zero & ~cam_zero).any()
        assert (~cam_zero & ~guided_zero).any()
        assert np.all(product[cam_zero] == 0) and np.all(product[guided_zero] == 0)
        np.testing.assert_allclose(product, guided * cam, rtol=1e-6)
    # Asked alone, the engine computes the same factors itself.
    alone = AttentionEngine(model, ("guided_gradcam",),
                            target=UnitTarget("conv3", 5, (2, 10)))(frames)
    assert list(alone.maps) == ["guided_gradcam"]
    np.testing.assert_allclose(alone.maps["guided_gradcam"], both.maps["guided_gradcam"],
                               rtol=1e-5, atol=1e-7 * np.abs(both.maps["guided_gradcam"]).max())


def test_gradcam_of_every_layer_in_one_pass(frames):
    model = build_dave2(activation="elu", seed=13)
    convs = ("conv1", "conv2", "conv3", "conv4", "conv5")
    engine = AttentionEngine(model, (), activation_layers=convs, gradcam_layers=convs)
    result = engine(frames)
    assert engine.trace_counts == {"shared": 1} and result.maps == {}
    for name in convs:
        alone = AttentionEngine(model, ("gradcam",), gradcam_layer=name)(frames).maps["gradcam"]
        np.testing.assert_allclose(result.gradcam_by_layer[name], alone, rtol=1e-5,
                                   atol=1e-6 * max(alone.max(), 1e-12))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from drive_viz.sim.synth import write_synthetic_recording

    root = tmp_path_factory.mktemp("gap")
    return write_synthetic_recording(root / "rec", 100, seed=5, width=200, height=100)


def _constant_flatten_model(path, value: float):
    """A flatten-head DAVE-2 that predicts ``value`` for every frame (all weights zero)."""
    model = build_dave2(seed=0)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.get_layer("steer").set_weights([np.zeros((10, 1), np.float32),
                                          np.array([value], np.float32)])
    model.save(path)
    return path


def test_gap_training_card_compares_heads_on_the_same_frames(recording, tmp_path):
    from drive_viz.model.train import TrainConfig, train
    from drive_viz.recording.reader import open_recording

    flatten = _constant_flatten_model(tmp_path / "flat.keras", 5.0)
    config = TrainConfig(recordings=[recording], out=tmp_path / "gap.keras", epochs=2,
                         batch_size=16, head="gap", side_cameras=False, block_seconds=1.0,
                         gap_seconds=0.0, compare_with=flatten)
    card = train(config, verbose=0, deterministic=False)
    comparison = card["comparison"]
    assert set(comparison) == {"flatten_val_mae", "gap_val_mae", "compared_model", "data"}
    assert comparison["data"]["val_frames"] == card["samples"]["val"] > 0
    # The gap model's MAE is recomputed on the saved model: Keras's validation metric of the
    # restored best epoch, moved by the output-bias refit that follows. Shifting every
    # prediction by d moves an MAE by at most |d| (triangle inequality). The constant model's
    # is 5 - mean(steer) over the val frames.
    shift = abs(card["output_bias_refit"])
    assert abs(comparison["gap_val_mae"] - card["best"]["val_mae"]) <= shift + 1e-5
    steer = open_recording(recording).steering()
    assert 5 - steer.max() <= comparison["flatten_val_mae"] <= 5 - steer.min()
    assert json.loads(card_path(config.out).read_text())["comparison"] == comparison
    assert "--compare-with" in card["command"]


def test_compare_with_the_same_head_is_refused_before_training(recording, tmp_path):
    from drive_viz.model.train import TrainConfig, train

    flatten = _constant_flatten_model(tmp_path / "flat.keras", 0.0)
    config = TrainConfig(recordings=[recording], out=tmp_path / "f.keras", epochs=1,
                         compare_with=flatten)
    with pytest.raises(DriveVizError, match="same head"):
        train(config, verbose=0, deterministic=False)
    assert not config.out.exists()
