"""The attention engine: fused passes, tracing once, outputs that match Keras, clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from drive_viz.attention import (
    DEFAULT_METHODS,
    METHODS,
    AttentionEngine,
    UnitTarget,
    attribute,
    engine_for,
)
from drive_viz.errors import ModelError
from drive_viz.model.dave2 import build_dave2


@pytest.fixture(scope="module")
def dave2():
    return build_dave2(activation="elu", seed=2)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).uniform(0, 255, (3, 66, 200, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(dave2):
    return AttentionEngine(dave2, ("saliency", "gradient", "gradient_x_input", "gradcam",
                                   "gradcam_plus_plus", "visualbackprop"),
                           activation_layers=("conv1", "conv5"))


def test_fused_bundle_is_one_traced_pass_and_never_retraces(bundle, frames):
    first = bundle(frames)
    second = bundle(frames)
    assert bundle.trace_counts == {"shared": 1}
    for name in first.maps:
        np.testing.assert_array_equal(first.maps[name], second.maps[name])
    bundle(frames[:1])  # a new batch shape traces once more, then is cached too
    bundle(frames[:1])
    assert bundle.trace_counts == {"shared": 2}


def test_outputs_match_keras(bundle, dave2, frames):
    result = bundle(frames)
    np.testing.assert_allclose(result.prediction, np.asarray(dave2(frames))[:, 0],
                               rtol=1e-4, atol=1e-5)
    probe = keras.Model(dave2.inputs[0], [dave2.get_layer("conv1").output,
                                       dave2.get_layer("conv5").output])
    conv1, conv5 = (np.asarray(a) for a in probe(frames))
    assert result.activations["conv1"].shape == (3, 31, 98, 24)
    np.testing.assert_allclose(result.activations["conv1"], conv1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.activations["conv5"], conv5, rtol=1e-4, atol=1e-5)
    assert list(result.maps) == list(bundle.methods)
    for name, heat in result.maps.items():
        assert heat.shape == (3, 66, 200) and heat.dtype == np.float32, name
        assert np.isfinite(heat).all() and np.abs(heat).max() > 0, name
        if METHODS[name].sign == "non-negative":
            assert heat.min() >= 0, name


def test_fusion_does_not_change_maps(bundle, dave2, frames):
    fused = bundle(frames)
    for name in ("saliency", "gradcam", "visualbackprop"):
        alone = AttentionEngine(dave2, (name,))(frames).maps[name]
        np.testing.assert_allclose(fused.maps[name], alone, rtol=1e-5, atol=1e-7)


def test_default_bundle_and_gradcam_layer(dave2, frames):
    engine = AttentionEngine(dave2, activation_layers=("conv1",))
    assert engine.methods == DEFAULT_METHODS
    assert engine.gradcam_layer == "conv3"  # 5x22: localizes in 2-D; conv5 is one row high
    assert set(engine(frames[:1]).maps) == set(DEFAULT_METHODS)


def test_attribute_reuses_its_engine(dave2, frames):
    first = attribute(dave2, frames[:2], "gradient", "left")
    engine = engine_for(dave2, "gradient", "left")
    second = attribute(dave2, frames[:2], "gradient", "left")
    assert engine_for(dave2, "gradient", "left") is engine
    assert engine.trace_counts == {"shared": 1}
    np.testing.assert_array_equal(first, second)


def test_unit_target_gradient_matches_keras(dave2, frames):
    import tensorflow as tf

    engine = AttentionEngine(dave2, ("gradient",), target=UnitTarget("conv4", 7))
    heat = engine(frames[:1]).maps["gradient"]
    probe = keras.Model(dave2.inputs[0], dave2.get_layer("conv4").output)
    x = tf.constant(frames[:1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        unit = tf.reduce_mean(probe(x)[..., 7])
    expected = tf.reduce_sum(tape.gradient(unit, x), axis=-1).numpy()
    np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_separate_batchnorm_and_activation_layers(frames):
    inputs = keras.Input((66, 200, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 5, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.Conv2D(4, 5, strides=2, activation="elu", name="conv_b")(x)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8),
                                       rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)])
    result = AttentionEngine(model, ("visualbackprop",), activation_layers=("conv",))(frames)
    np.testing.assert_allclose(result.prediction, np.asarray(model(frames))[:, 0],
                               rtol=1e-4, atol=1e-5)
    block = np.asarray(keras.Model(inputs, model.get_layer("act").output)(frames))
    np.testing.assert_allclose(result.activations["conv"], block, rtol=1e-4, atol=1e-5)


def test_unsupported_layer_is_named():
    inputs = keras.Input((66, 200, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.LayerNormalization(name="ln_here")(x)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    with pytest.raises(ModelError, match=r"ln_here.*LayerNormalization"):
        AttentionEngine(keras.Model(inputs, outputs), ("saliency",))


def test_branching_model_runs_as_keras_does(frames):
    """Two conv branches joined by Add and Concatenate: the engine walks Keras's graph, so its
    prediction and input gradient equal Keras's own on the same model."""
    inputs = keras.Input((66, 200, 3))
    a = keras.layers.Conv2D(2, 3, activation="relu", name="left_branch")(inputs)
    b = keras.layers.Conv2D(2, 3, activation="elu", name="right_branch")(inputs)
    x = keras.layers.Concatenate()([keras.layers.Add(name="merge")([a, b]), a])
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    result = AttentionEngine(model, ("gradient",))(frames[:2])
    x_in = tf.constant(frames[:2])
    with tf.GradientTape() as tape:
        tape.watch(x_in)
        y = model(x_in)[:, 0]
    expected = tf.reduce_sum(tape.gradient(y, x_in), axis=-1).numpy()
    np.testing.assert_allclose(result.prediction, y.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.maps["gradient"], expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def test_bad_arguments(dave2, frames):
    with pytest.raises(ValueError, match="unknown attention method"):
        AttentionEngine(dave2, ("saliency", "lime"))
    with pytest.raises(ValueError, match="target"):
        AttentionEngine(dave2, ("saliency",), target="right")
    with pytest.raises(ModelError, match="dense1"):
        AttentionEngine(dave2, ("gradcam",), gradcam_layer="dense1")
    with pytest.raises(ModelError, match="conv9"):
        AttentionEngine(dave2, ("saliency",), activation_layers=("conv9",))
    engine = engine_for(dave2, "gradient", "left")
    with pytest.raises(ModelError, match=r"\(2, 66, 100, 3\)"):
        engine(frames[:2, :, :100])


def test_engine_sees_weight_changes():
    inputs = keras.Input((66, 200, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    engine = AttentionEngine(model, ("gradient",))
    frame = np.ones((1, 66, 200, 3), np.float32)
    kernel = np.zeros((66 * 200 * 3, 1), np.float32)
    kernel[0] = 2.0
    model.layers[-1].set_weights([kernel, np.zeros(1, np.float32)])
    assert engine(frame).maps["gradient"][0, 0, 0] == pytest.approx(2.0)
    kernel[0] = -1.0
    model.layers[-1].set_weights([kernel, np.zeros(1, np.float32)])
    assert engine(frame).maps["gradient"][0, 0, 0] == pytest.approx(-1.0)
    assert engine.trace_counts == {"shared": 1}
