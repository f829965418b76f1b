"""The engine on models other than DAVE-2: several outputs, softmax bins, pooling, batch norm,
cropping and resizing inside the model, other input sizes; and the plausibility warnings.

Every model is tiny and built here; expected values come from Keras's own forward pass,
numpy, or finite differences, never from the engine."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from drive_viz.attention import METHODS, AttentionEngine
from drive_viz.errors import DriveVizError, ModelError
from drive_viz.model.contract import InputContract, OutputSpec
from drive_viz.model.plausibility import plausibility_warnings

BINS = 15
CENTRES = np.linspace(-1.0, 1.0, BINS)


def inputs_for(shape: tuple[int, int], n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape, 3)).astype(np.float32)


def donkey_model(softmax: bool = True, seed: int = 0, activation: str = "relu") -> keras.Model:
    """A donkeycar-style pilot: 30x40 RGB /255, a conv trunk, an angle head of 15 bins
    (softmax, or raw logits) and a linear throttle head on the same Flatten."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((30, 40, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(6, 5, strides=2, activation=activation, name="c1")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation=activation, name="c2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation=activation, name="d1")(x)
    angle = keras.layers.Dense(BINS, activation="softmax" if softmax else "linear",
                               name="angle")(x)
    throttle = keras.layers.Dense(1, name="throttle")(x)
    return keras.Model(inputs, [angle, throttle])


def bins_contract(throttle: bool = True) -> InputContract:
    return InputContract(input_size=(30, 40), colour="rgb",
                         steering=OutputSpec("angle", f"bins:{BINS}:-1:1"),
                         throttle=OutputSpec("throttle") if throttle else None)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_two_output_linear_model_reads_each_head() -> None:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((24, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2, name="c")(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(1, name="throttle")(x),
                                 keras.layers.Dense(1, name="angle")(x)])
    contract = InputContract(input_size=(24, 32), colour="rgb",
                             steering=OutputSpec(1), throttle=OutputSpec("throttle"))
    x_in = inputs_for((24, 32))
    throttle_true, angle_true = (np.asarray(o)[:, 0] for o in model(x_in))
    for target, expected_output in (("steer", 1), ("throttle", 0)):
        result = AttentionEngine(model, ("gradient",), target, contract=contract)(x_in)
        np.testing.assert_allclose(result.prediction, angle_true, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.throttle, throttle_true, rtol=1e-5, atol=1e-5)
        x = tf.constant(x_in)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = model(x)[expected_output][:, 0]
        expected = tf.reduce_sum(tape.gradient(score, x), axis=-1).numpy()
        np.testing.assert_allclose(result.maps["gradient"], expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(expected).max())
    with pytest.raises(DriveVizError, match="names no throttle output"):
        AttentionEngine(model, ("gradient",), "throttle",
                        contract=InputContract(input_size=(24, 32), steering=OutputSpec(1)))


@pytest.mark.parametrize("softmax_layer", [True, False])
def test_bins_decode_is_the_expectation_and_its_gradient(softmax_layer: bool) -> None:
    """Steering = sum_i p_i c_i with p the head's softmax (or the softmax of its logits);
    its input gradient matches central finite differences of that expectation (ELU trunk:
    smooth, so the differences are accurate)."""
    model = donkey_model(softmax=softmax_layer, seed=2, activation="elu")
    x_in = inputs_for((30, 40), n=2, seed=3)

    def expectation(batch: np.ndarray) -> np.ndarray:
        raw = np.asarray(model(batch)[0], np.float64)
        return (raw if softmax_layer else softmax(raw)) @ CENTRES

    result = AttentionEngine(model, ("gradient",), contract=bins_contract())(x_in)
    np.testing.assert_allclose(result.prediction, expectation(x_in), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(4)
    grad = result.maps["gradient"]
    pixels = [(int(r), int(c)) for r, c in zip(rng.integers(0, 30, 12), rng.integers(0, 40, 12),
                                               strict=True)]
    step = 1.0
    for frame in range(2):
        for row, col in pixels:
            up, down = x_in[frame:frame + 1].copy(), x_in[frame:frame + 1].copy()
            up[0, row, col] += step  # all three channels: the map sums over channels
            down[0, row, col] -= step
            numeric = (expectation(up)[0] - expectation(down)[0]) / (2 * step)
            assert numeric == pytest.approx(grad[frame, row, col],
                                            abs=2e-3 * np.abs(grad[frame]).max() + 1e-9)


def test_throttle_and_unit_targets_on_a_bins_model() -> None:
    model = donkey_model(seed=5)
    x_in = inputs_for((30, 40), n=2)
    result = AttentionEngine(model, ("saliency",), "throttle", contract=bins_contract())(x_in)
    x = tf.constant(x_in)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)[1][:, 0]
    expected = tf.reduce_max(tf.abs(tape.gradient(score, x)), axis=-1).numpy()
    np.testing.assert_allclose(result.maps["saliency"], expected, rtol=1e-4,
                               atol=1e-6 * expected.max())
    from drive_viz.attention.targets import parse_target

    for text in ("left", "maintain", "c2:3", "d1:5"):
        maps = AttentionEngine(model, ("gradient",), parse_target(text),
                               contract=bins_contract())(x_in).maps["gradient"]
        assert maps.shape == (2, 30, 40) and np.isfinite(maps).all() and np.abs(maps).max() > 0


def pooled_model(seed: int = 0) -> keras.Model:
    """Cropping2D, Conv, BatchNorm, MaxPooling, Conv, AveragePooling, BatchNorm, GAP head:
    every method, cam included, applies."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((40, 56, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Cropping2D(((6, 2), (3, 5)), name="crop")(x)
    x = keras.layers.Conv2D(6, 3, name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.AveragePooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c3")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, name="steer")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for name, channels in (("bn1", 6), ("bn3", 8)):
        model.get_layer(name).set_weights([rng.uniform(0.5, 2, channels),
                                           rng.normal(0, 0.5, channels),
                                           rng.normal(0, 0.3, channels),
                                           rng.uniform(0.5, 2, channels)])
    return model


def test_pooling_batchnorm_cropping_model_through_every_method() -> None:
    model = pooled_model(seed=6)
    x_in = inputs_for((40, 56), n=2, seed=7)
    engine = AttentionEngine(model, tuple(METHODS), smoothgrad_samples=2, ig_steps=64,
                             occlusion_patch=8, occlusion_stride=4)
    result = engine(x_in)
    assert set(result.maps) == set(METHODS)
    for name, heat in result.maps.items():
        assert heat.shape == (2, 40, 56) and heat.dtype == np.float32, name
        assert np.isfinite(heat).all(), name
        if METHODS[name].sign == "non-negative":
            assert (heat >= 0).all(), name
    np.testing.assert_allclose(result.prediction, np.asarray(model(x_in))[:, 0], rtol=1e-4,
                               atol=1e-5)
    # gradient family: Keras's own autodiff of the same model
    x = tf.constant(x_in)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)[:, 0]
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(result.maps["saliency"], np.abs(grad).max(axis=-1), rtol=1e-4,
                               atol=1e-5 * np.abs(grad).max())
    np.testing.assert_allclose(result.maps["gradient_x_input"], (grad * x_in).sum(axis=-1),
                               rtol=1e-3, atol=1e-5 * np.abs(grad * x_in).max())
    # cropped pixels never reach the network: zero gradient there
    assert np.all(result.maps["saliency"][:, :6] == 0)
    assert np.all(result.maps["saliency"][:, :, -5:] == 0)
    # integrated gradients: completeness, sum of the map = S(x) - S(baseline)
    black = np.broadcast_to(np.asarray((0, 128, 128), np.float32), x_in.shape)
    total = result.maps["integrated_gradients"].sum(axis=(1, 2))
    gap = result.prediction - np.asarray(model(black))[:, 0]
    np.testing.assert_allclose(total, gap, rtol=0.05, atol=0.02 * np.abs(gap).max())
    # guided Grad-CAM is guided backprop times Grad-CAM; VisualBackProp peaks at 1
    np.testing.assert_allclose(result.maps["guided_gradcam"],
                               result.maps["guided_backprop"] * result.maps["gradcam"],
                               rtol=1e-5, atol=1e-12)
    assert np.allclose(result.maps["visualbackprop"].max(axis=(1, 2)), 1.0)
    # VisualBackProp reaches only pixels inside the crop
    assert np.all(result.maps["visualbackprop"][:, :6] == 0)
    # Grad-CAM defaults to the deepest conv with >= 5x5 cells: c3 (5x9)
    assert engine.gradcam_layer == "c3"
    assert AttentionEngine(model, ("gradcam",), gradcam_layer="c2").gradcam_layer == "c2"


def test_gradcam_geometry_through_crop_and_pooling() -> None:
    engine = AttentionEngine(pooled_model(), ("gradcam",))
    geometry = engine.network.geometry
    # crop moves the origin by (6, 3); c1 (3x3 valid) centres cell 0 at +1; pool1 (2x2 /2)
    # at +0.5 cell of c1, stride 2; c2 same padding keeps it; pool2 again +0.5 cell (of 2).
    assert geometry["c1"].offset == (7.0, 4.0) and geometry["c1"].stride == (1.0, 1.0)
    assert geometry["pool1"].offset == (7.5, 4.5) and geometry["pool1"].stride == (2.0, 2.0)
    assert geometry["c2"].offset == (7.5, 4.5)
    assert geometry["pool2"].offset == (8.5, 5.5) and geometry["pool2"].stride == (4.0, 4.0)


@pytest.mark.parametrize("size", [(64, 64), (120, 160)])
def test_gradient_map_matches_finite_differences_at_other_sizes(size) -> None:
    """A smooth model (ELU, tanh, average pooling, bilinear Resizing and Cropping2D inside),
    so central differences are accurate: the engine's gradient map at sampled pixels."""
    keras.utils.set_random_seed(8)
    inputs = keras.Input((*size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Cropping2D(((size[0] // 8, 2), (1, 3)))(x)
    x = keras.layers.Resizing(32, 48, interpolation="bilinear")(x)
    x = keras.layers.Conv2D(5, 5, strides=2, activation="elu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(6, 3, activation="tanh")(x)
    x = keras.layers.Dense(8, activation="elu")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    x_in = inputs_for(size, n=1, seed=9)
    result = AttentionEngine(model, ("gradient",))(x_in)
    heat = result.maps["gradient"][0]
    assert heat.shape == size
    np.testing.assert_allclose(result.prediction, np.asarray(model(x_in))[:, 0], rtol=1e-5,
                               atol=1e-6)
    rng = np.random.default_rng(10)
    rows = rng.integers(size[0] // 8, size[0] - 2, 10)
    cols = rng.integers(1, size[1] - 3, 10)
    step = 4.0
    batch = np.repeat(x_in.astype(np.float64), 2 * len(rows), axis=0)
    for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
        batch[2 * k, row, col] += step
        batch[2 * k + 1, row, col] -= step
    outputs = np.asarray(model(batch.astype(np.float32)), np.float64)[:, 0]
    numeric = (outputs[0::2] - outputs[1::2]) / (2 * step)
    np.testing.assert_allclose(heat[rows, cols], numeric, rtol=0.05,
                               atol=0.02 * np.abs(heat).max())
    # cropped rows get no gradient; Resizing's adjoint spreads the rest
    assert np.all(heat[:size[0] // 8] == 0) and np.abs(heat[size[0] // 8:]).max() > 0


def test_an_unsupported_layer_is_refused_by_name_before_any_frame() -> None:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.DepthwiseConv2D(3, name="depthwise_here")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    with pytest.raises(ModelError, match=r"'depthwise_here' \(DepthwiseConv2D\)") as info:
        AttentionEngine(model, ("saliency",))
    assert "\n" not in str(info.value)


def test_plausibility_checks_on_known_series() -> None:
    rng = np.random.default_rng(11)
    recorded = 0.3 * np.sin(np.linspace(0, 12, 200))
    assert plausibility_warnings(recorded + rng.normal(0, 0.03, 200), recorded) == []
    checks = [w["check"] for w in plausibility_warnings(recorded * 150, recorded)]
    assert checks == ["range"]
    checks = [w["check"] for w in plausibility_warnings(np.full(200, 0.2), recorded)]
    assert checks == ["constant"]
    anti = plausibility_warnings(-recorded + rng.normal(0, 0.03, 200), recorded)
    assert [w["check"] for w in anti] == ["correlation"] and anti[0]["value"] < -0.9
    assert "negative" in anti[0]["message"] and "contract" in anti[0]["message"]
    noise = plausibility_warnings(rng.normal(0, 0.3, 200), recorded)
    assert [w["check"] for w in noise] == ["correlation"] and abs(noise[0]["value"]) < 0.2
    # no recorded steering: only range and (absolute) constancy can be judged
    assert plausibility_warnings(recorded, None) == []
    assert [w["check"] for w in plausibility_warnings(np.zeros(50), None)] == ["constant"]


@pytest.fixture(scope="module")
def shipped_on_a_drive(tmp_path_factory):
    """The shipped model's traced predictor, its contract, and a synthetic drive's frames and
    recorded steering."""
    from drive_viz.attention.network import steering_predictor
    from drive_viz.model.dave2 import SHIPPED_MODEL, load_steering_model, model_contract
    from drive_viz.recording.reader import open_recording
    from drive_viz.sim.synth import write_synthetic_recording

    path = write_synthetic_recording(tmp_path_factory.mktemp("drive") / "rec", frames=120,
                                     seed=3, masks=False)
    rec = open_recording(path)
    right = model_contract(SHIPPED_MODEL)
    predict = steering_predictor(load_steering_model(SHIPPED_MODEL), right)
    return predict, right, [rec.image(i) for i in range(len(rec))], rec.steering()


def test_plausibility_is_quiet_on_the_shipped_model_with_its_contract(shipped_on_a_drive):
    from drive_viz.model.preprocess import preprocess_batch

    predict, right, frames, recorded = shipped_on_a_drive
    assert plausibility_warnings(predict(preprocess_batch(frames, right)), recorded) == []


@pytest.mark.parametrize("wrong", [
    {"scale": 1 / 255}, {"colour": "bgr"}, {"crop": (0.0, 0.5, 0.0, 0.0)}])
def test_plausibility_warns_on_the_shipped_model_with_a_wrong_contract(shipped_on_a_drive,
                                                                       wrong) -> None:
    from dataclasses import replace

    from drive_viz.model.preprocess import preprocess_batch

    predict, right, frames, recorded = shipped_on_a_drive
    warnings = plausibility_warnings(predict(preprocess_batch(frames, replace(right, **wrong))),
                                     recorded)
    assert warnings and all(w["check"] in ("range", "constant", "correlation")
                            for w in warnings)


def test_a_loaded_sequential_model_runs(tmp_path) -> None:
    """Keras rebuilds a loaded Sequential, leaving its layers with inbound nodes from
    earlier builds: the engine follows the one that belongs to the model's graph."""
    keras.utils.set_random_seed(12)
    model = keras.Sequential([keras.Input((20, 24, 3)), keras.layers.Conv2D(3, 3, name="c"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(1, name="out")])
    model.save(tmp_path / "seq.keras")
    loaded = keras.saving.load_model(tmp_path / "seq.keras")
    x_in = inputs_for((20, 24), n=2)
    result = AttentionEngine(loaded, ("saliency", "visualbackprop"))(x_in)
    np.testing.assert_allclose(result.prediction, np.asarray(loaded(x_in))[:, 0], rtol=1e-5,
                               atol=1e-5)
    assert result.maps["visualbackprop"].shape == (2, 20, 24)
