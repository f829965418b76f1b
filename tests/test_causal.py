"""Causal tests: imputation, the shift test, causal blobs and ROAD on a model whose causal
region is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from drive_viz.attention import causal
from drive_viz.attention.network import steering_predictor

H, W = 66, 200
PATCH = (slice(20, 40), slice(120, 160))  # the only pixels the hand-built model reads
ELSEWHERE = (slice(25, 45), slice(30, 60))


@pytest.fixture(scope="module")
def patch_model():
    """steer = mean Y over PATCH / 255, as Rescaling, 1x1 Conv2D, Flatten, Dense."""
    import keras

    inputs = keras.Input(shape=(H, W, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(inputs)
    x = keras.layers.Conv2D(1, 1, name="conv1")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="steer")(
        keras.layers.Flatten(name="flatten")(x)))
    weights = np.zeros((H, W), np.float32)
    weights[PATCH] = 1.0 / weights[PATCH].size
    model.get_layer("conv1").set_weights([np.array([1, 0, 0], np.float32).reshape(1, 1, 3, 1),
                                          np.zeros(1, np.float32)])
    model.get_layer("steer").set_weights([weights.reshape(-1, 1), np.zeros(1, np.float32)])
    return model


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Textured frames with a bright, vertically striped patch on a dark background: removing
    the patch (imputed from the dark surround) or shifting it changes its mean Y."""
    rng = np.random.default_rng(0)
    x = np.empty((3, H, W, 3), np.float32)
    x[..., 0] = rng.uniform(30, 70, size=(3, H, W))
    columns = np.arange(W)[PATCH[1]]
    x[:, PATCH[0], PATCH[1], 0] = 150 + 80 * (columns // 10 % 2) + rng.uniform(0, 10, (3, 20, 40))
    x[..., 1:] = 128
    return x


def test_patch_model_reads_only_the_patch(patch_model, frames) -> None:
    expected = frames[:, PATCH[0], PATCH[1], 0].mean(axis=(1, 2)) / 255
    np.testing.assert_allclose(steering_predictor(patch_model)(frames), expected, rtol=1e-5)


def test_imputation_reconstructs_a_linear_image_exactly() -> None:
    rows, cols = np.mgrid[0:H, 0:W]
    image = np.stack([3 * rows + 0.5 * cols + 7, 2 * cols - rows, np.full((H, W), 5.0)],
                     axis=-1).astype(np.float32)
    removed = np.zeros((H, W), bool)
    removed[10:30, 20:90] = True  # interior regions: every removed pixel has 8 neighbours
    removed[40:60, 150:199] = True
    removed[5, 5] = True
    out = causal.linear_imputation(image, removed)
    np.testing.assert_allclose(out, image, atol=1e-3)
    # A bump inside the region is not seen: the fill follows the ramp, not the old values.
    bumped = image.copy()
    bumped[15:25, 40:60] += 100
    np.testing.assert_allclose(causal.linear_imputation(bumped, removed), image, atol=1e-3)


def test_imputation_noise_has_the_requested_spread() -> None:
    image = np.full((H, W, 3), 100.0, np.float32)
    removed = np.zeros((H, W), bool)
    removed[10:50, 20:180] = True
    out = causal.linear_imputation(image, removed, noise=2.0, rng=np.random.default_rng(1))
    noise = out[removed] - 100.0
    assert abs(noise.std() - 2.0) < 0.05 and abs(noise.mean()) < 0.05
    assert np.array_equal(out[~removed], image[~removed])


def test_imputation_refuses_to_remove_everything() -> None:
    with pytest.raises(ValueError, match="every pixel"):
        causal.linear_imputation(np.zeros((4, 5, 3)), np.ones((4, 5), bool))


def _region_map(region) -> np.ndarray:
    saliency = np.zeros((H, W), np.float32)
    saliency[region] = 1.0
    return saliency


def test_shift_test_finds_the_region_the_model_reads(patch_model, frames) -> None:
    predict = steering_predictor(patch_model)
    maps = {"on_patch": np.stack([_region_map(PATCH)] * len(frames)),
            "elsewhere": np.stack([_region_map(ELSEWHERE)] * len(frames))}
    result = causal.shift_test(predict, frames, maps, dilate=4, shift=4)
    assert result["whole_change"] > 0.05
    # Dilated by the shift, the salient part carries all the pixels that land on the patch,
    # so shifting it alone equals shifting the frame, and shifting the rest leaves the patch.
    on, off = result["methods"]["on_patch"], result["methods"]["elsewhere"]
    assert on["salient_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert on["rest_ratio"] == pytest.approx(0.0, abs=1e-4)
    assert off["salient_ratio"] == pytest.approx(0.0, abs=1e-4)
    assert off["rest_ratio"] == pytest.approx(1.0, abs=1e-4)


def test_causal_blobs_keep_only_the_blob_over_the_patch(patch_model, frames) -> None:
    predict = steering_predictor(patch_model)
    saliency = _region_map(ELSEWHERE) * 2.0 + _region_map(PATCH)  # the decoy is stronger
    saliency[0:4, 0:4] = 0.5  # a small third blob, under min_pixels
    result = causal.causal_blobs(predict, frames, {"map": np.stack([saliency] * len(frames))},
                                 area=0.2, min_pixels=20, threshold=0.005)
    summary = result["methods"]["map"]
    for blobs in summary["frames"]:
        assert [b["pixels"] for b in blobs] == [600, 800]  # decoy first (larger mass)
        assert [b["causal"] for b in blobs] == [False, True]
        assert blobs[0]["change"] == 0.0  # the model never reads the decoy's pixels
    patch_share = 800 / (800 + 2 * 600 + 0.5 * 16)
    assert summary["causal_mass_share"] == pytest.approx(patch_share, rel=1e-6)
    assert summary["blob_mass_share"] == pytest.approx(2000 / 2008, rel=1e-6)


def test_correlation_scale_recovers_a_known_blur() -> None:
    rng = np.random.default_rng(2)
    for scale in (2.0, 5.0):
        maps = causal.blur_matched_random((12, H, W), scale, rng)
        assert causal.correlation_scale(maps) == pytest.approx(scale, rel=0.08)
    # White noise: neighbours are uncorrelated, the half-width is under one pixel.
    assert causal.correlation_scale(rng.random((4, H, W))) < 1.0


def test_road_ranks_the_causal_map_above_its_blur_matched_control(patch_model, frames) -> None:
    predict = steering_predictor(patch_model)
    rng = np.random.default_rng(3)
    smooth = causal.blur_matched_random((len(frames), H, W), 4.0, rng)
    saliency = smooth * 0.1
    saliency[:, PATCH[0], PATCH[1]] += 1.0  # the patch first, then smooth noise
    result = causal.road(predict, frames, {"patch": saliency}, fractions=(0.05, 0.5))
    # MoRF removes the patch at 5% already (800 of 13200 pixels are 6%: most of it); LeRF
    # removes the least relevant pixels and leaves the patch until the very end.
    assert result["morf"]["patch"][0] > 0.1
    assert result["lerf"]["patch"] == [0.0, 0.0]
    assert result["gap"]["patch"] > result["gap"]["random:patch"]
    assert result["correlation_scale"]["patch"] > 1.0


def test_evaluate_writes_the_chosen_sections(patch_model, tmp_path) -> None:
    import json

    from drive_viz.cli import main

    recording = tmp_path / "drive"
    assert main(["synth", str(recording), "--frames", "1", "--seed", "1"]) == 0
    model_path = tmp_path / "patch.keras"
    patch_model.save(model_path)
    out = tmp_path / "eval"
    code = main(["evaluate", str(recording), "--model", str(model_path), "--out", str(out),
                 "--frames", "1", "--steps", "2", "--methods", "gradient_x_input,lrp_epsilon",
                 "--shift-test", "--causal-blobs", "--road"])
    assert code == 0
    report = json.loads((out / "evaluation.json").read_text())
    methods = {"gradient_x_input", "lrp_epsilon"}
    assert set(report["shift_test"]["methods"]) == methods
    assert set(report["causal_blobs"]["methods"]) == methods
    assert set(report["road"]["gap"]) == methods | {f"random:{m}" for m in methods}
    for section in ("shift_test", "causal_blobs", "road"):
        assert report[section]["seconds"] >= 0
    for name in methods:
        assert len(report["road"]["morf"][name]) == len(causal.ROAD_FRACTIONS)
        assert 0 <= report["causal_blobs"]["methods"][name]["causal_mass_share"] <= 1 + 1e-12
    page = (out / "evaluation.html").read_text()
    assert "<h2>Causal tests</h2>" in page
    share = report["causal_blobs"]["methods"]["lrp_epsilon"]["causal_mass_share"]
    assert f"causal blobs: {share:.2f} of the map&#x27;s mass" in page
