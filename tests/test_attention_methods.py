"""Attention maps checked against mathematics: finite differences, closed forms, planted answers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from support import dave2_float64

from drive_viz.attention import AttentionEngine, attribute
from drive_viz.model.dave2 import build_dave2

H, W = 66, 200


@pytest.fixture(scope="module")
def dave2_elu():
    return build_dave2(activation="elu", seed=3)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(7)
    return rng.uniform(0, 255, (2, H, W, 3)).astype(np.float32)


def test_gradient_matches_central_finite_differences(dave2_elu, frames):
    result = AttentionEngine(dave2_elu, ("gradient", "saliency"))(frames[:1])
    model64 = dave2_float64(dave2_elu)
    x = frames[:1].astype(np.float64)
    step = 0.5  # YUV levels; the ELU network is smooth
    pixels = [(0, 0), (33, 100), (20, 37), (65, 199), (50, 160)]
    probes, channel_probes = [], []
    for row, col in pixels:
        for sign in (1, -1):
            shifted = x.copy()
            shifted[0, row, col, :] += sign * step  # all three channels: the channel sum
            probes.append(shifted)
            for channel in range(3):
                shifted = x.copy()
                shifted[0, row, col, channel] += sign * step
                channel_probes.append(shifted)
    values = np.asarray(model64(np.concatenate(probes)))[:, 0].reshape(len(pixels), 2)
    finite_diff = (values[:, 0] - values[:, 1]) / (2 * step)
    per_channel = np.asarray(model64(np.concatenate(channel_probes)))[:, 0]
    per_channel = per_channel.reshape(len(pixels), 2, 3)
    channel_grad = (per_channel[:, 0] - per_channel[:, 1]) / (2 * step)
    scale = np.abs(channel_grad).max()
    assert scale > 0
    engine_grad = np.array([result.maps["gradient"][0, r, c] for r, c in pixels])
    np.testing.assert_allclose(engine_grad, finite_diff, rtol=1e-3, atol=1e-3 * scale)
    engine_saliency = np.array([result.maps["saliency"][0, r, c] for r, c in pixels])
    np.testing.assert_allclose(engine_saliency, np.abs(channel_grad).max(axis=1),
                               rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(result.prediction, np.asarray(model64(x))[:, 0], rtol=1e-4)


@pytest.fixture(scope="module")
def linear_model():
    """y = sum(weights * (x / 127.5 - 1)) + 0.25: every attribution has a closed form."""
    inputs = keras.Input((H, W, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    weights = np.random.default_rng(1).normal(0, 1e-3, (H, W, 3)).astype(np.float32)
    model.layers[-1].set_weights([weights.reshape(-1, 1), np.array([0.25], np.float32)])
    return model, weights


def test_linear_model_closed_forms(linear_model, frames):
    model, weights = linear_model
    methods = ("saliency", "gradient", "gradient_x_input", "integrated_gradients",
               "guided_backprop")
    result = AttentionEngine(model, methods, ig_steps=4)(frames)
    grad = weights / 127.5  # dy/dx per channel, the same at every x
    expected_y = (weights * (frames / 127.5 - 1)).sum(axis=(1, 2, 3)) + 0.25
    np.testing.assert_allclose(result.prediction, expected_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.maps["saliency"][0], np.abs(grad).max(-1), rtol=1e-5)
    np.testing.assert_allclose(result.maps["gradient"][1], grad.sum(-1), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(result.maps["gradient_x_input"], (frames * grad).sum(-1),
                               rtol=1e-4, atol=1e-7)
    black = np.array([0.0, 128.0, 128.0], np.float32)  # the default baseline
    np.testing.assert_allclose(result.maps["integrated_gradients"],
                               ((frames - black) * grad).sum(-1), rtol=1e-4, atol=1e-7)
    # No rectifier anywhere: guided backprop has nothing to gate.
    np.testing.assert_allclose(result.maps["guided_backprop"], result.maps["gradient"],
                               rtol=1e-6)


def test_left_is_minus_steer_for_linear_methods(linear_model, frames):
    model, _ = linear_model
    for method in ("gradient", "gradient_x_input", "integrated_gradients"):
        steer = attribute(model, frames, method, "steer", steps=2)
        left = attribute(model, frames, method, "left", steps=2)
        np.testing.assert_allclose(left, -steer, rtol=1e-6, atol=1e-9)


def test_maintain_gradient_is_minus_y_times_steer_gradient(dave2_elu, frames):
    steer = AttentionEngine(dave2_elu, ("gradient",))(frames)
    maintain = AttentionEngine(dave2_elu, ("gradient",), target="maintain")(frames)
    y = steer.prediction[:, None, None]
    np.testing.assert_allclose(maintain.maps["gradient"], -y * steer.maps["gradient"],
                               rtol=1e-4, atol=1e-6 * np.abs(steer.maps["gradient"]).max())


@pytest.mark.parametrize("baseline", ["black", "zeros"])
def test_integrated_gradients_completeness(dave2_elu, frames, baseline):
    # 48 steps for 2 frames: chunks of 32 samples, the second half padding (weight 0).
    engine = AttentionEngine(dave2_elu, ("integrated_gradients",), ig_steps=48)
    maps = engine(frames, baseline=baseline).maps["integrated_gradients"]
    reference = {"black": (0.0, 128.0, 128.0), "zeros": (0.0, 0.0, 0.0)}[baseline]
    start = np.broadcast_to(np.asarray(reference, np.float32), frames.shape)
    gap = np.asarray(dave2_elu(frames))[:, 0] - np.asarray(dave2_elu(start))[:, 0]
    assert np.all(np.abs(gap) > 0.05)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), gap, rtol=0.02, atol=1e-3)


def _patch_model():
    """An 8x8 stride-8 'patchify' conv (8x25 cells, receptive-field centres 3.5 + 8 i) with
    channel 0 = mean brightness (Y), channel 1 = mean V, ReLU; the output reads channel 0 of
    the cells in rows 2-3, columns 5-7 only."""
    inputs = keras.Input((H, W, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(2, 8, strides=8, activation="relu", name="cells")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((8, 8, 3, 2), np.float32)
    kernel[:, :, 0, 0] = 1 / 64
    kernel[:, :, 2, 1] = 1 / 64
    model.get_layer("cells").set_weights([kernel, np.zeros(2, np.float32)])
    dense = np.zeros((8, 25, 2), np.float32)
    dense[2:4, 5:8, 0] = 1.0
    model.layers[-1].set_weights([dense.reshape(-1, 1), np.zeros(1, np.float32)])
    return model


def test_gradcam_and_plus_plus_on_a_planted_region():
    model = _patch_model()
    frame = np.zeros((1, H, W, 3), np.float32)
    frame[0, 16:32, 40:64, 0] = 255  # bright exactly on the cells the output reads
    frame[0, 32:48, 120:152, 2] = 255  # strong V elsewhere: channel 1, which the output ignores
    result = AttentionEngine(model, ("gradcam", "gradcam_plus_plus"))(frame)
    assert result.prediction[0] == pytest.approx(6.0, rel=1e-5)
    cam, cam_pp = result.maps["gradcam"][0], result.maps["gradcam_plus_plus"][0]
    # Grad-CAM: w_0 = mean over the 8x25 cells of dS/dA_0 = 6 / 200, w_1 = 0; A_0 = 1 on R.
    np.testing.assert_allclose(cam[20:28, 44:60], 6 / 200, rtol=1e-5)
    # Grad-CAM++: alpha = 1 / (2 + 6) on R, w_0 = 6 * alpha * exp(6).
    np.testing.assert_allclose(cam_pp[20:28, 44:60], 6 / 8 * np.exp(6.0), rtol=1e-4)
    for heat in (cam, cam_pp):
        # Zero wherever the bilinear interpolation touches no cell of R (centres 3.5 + 8 i).
        outside = np.ones((H, W), bool)
        outside[12:36, 36:68] = False
        assert np.all(heat[outside] == 0)
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        assert 16 <= row < 32 and 40 <= col < 64


def test_gradcam_alignment_of_dave2_layers(dave2_elu):
    geometry = AttentionEngine(dave2_elu, ("gradcam",)).network.geometry
    # conv1 (5x5, stride 2) cell j is centred on input pixel 2 j + 2; each later 5x5 stride-2
    # layer maps j -> 2 j + 2 in the layer below, so conv3's cell j sits at 8 j + 14.
    assert geometry["conv1"].offset == (2.0, 2.0) and geometry["conv1"].stride == (2.0, 2.0)
    assert geometry["conv3"].offset == (14.0, 14.0) and geometry["conv3"].stride == (8.0, 8.0)
    assert geometry["conv3"].out_hw == (5, 22)


def test_gradcam_on_a_gap_head_is_the_class_activation_map(frames):
    """With global average pooling then Dense, dS/dA_k = W_k / (h w) everywhere, so Grad-CAM
    is Zhou et al.'s CAM relu(sum_k W_k A_k) divided by h w (conv5: 1x18 cells)."""
    model = build_dave2(activation="relu", head="gap", seed=5)
    heat = AttentionEngine(model, ("gradcam",), gradcam_layer="conv5")(frames).maps["gradcam"]
    conv5 = np.asarray(keras.Model(model.inputs[0], model.get_layer("conv5").output)(frames))
    dense = model.get_layer("steer").get_weights()[0][:, 0]
    cam = np.maximum(conv5 @ dense, 0)[:, 0, :] / 18
    assert cam.max() > 0
    # conv5 cell j is centred on input column 30 + 8 j (and the one row covers every row).
    np.testing.assert_allclose(heat[:, 33, 30:30 + 8 * 18:8], cam, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(heat[:, 0, :], heat[:, 65, :])


def _brightness_dave2():
    """A ReLU DAVE-2 whose filters average their input; conv1 fires only where its 5x5 window
    averages above 0.5 after the model's x / 127.5 - 1 (YUV above about 191)."""
    model = build_dave2(activation="relu", seed=0)
    for index, name in enumerate(("conv1", "conv2", "conv3", "conv4", "conv5")):
        layer = model.get_layer(name)
        kernel = np.full(layer.kernel.shape, 1.0 / np.prod(layer.kernel.shape[:3]), np.float32)
        bias = np.full(layer.bias.shape, -0.5 if index == 0 else 0.0, np.float32)
        layer.set_weights([kernel, bias])
    return model


def test_visualbackprop_lights_up_a_planted_patch():
    frame = np.full((1, H, W, 3), 100.0, np.float32)  # 100 / 127.5 - 1 < 0.5: conv1 silent
    frame[0, 20:40, 120:150] = 255.0
    result = AttentionEngine(_brightness_dave2(), ("visualbackprop",))(frame)
    heat = result.maps["visualbackprop"][0]
    assert heat.shape == (H, W) and heat.dtype == np.float32
    assert heat.max() == pytest.approx(1.0)
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert 20 <= row < 40 and 120 <= col < 150
    # conv1 cells see 5x5 pixels: nothing outside the patch grown by 4 pixels can light up.
    outside = np.ones((H, W), bool)
    outside[16:44, 116:154] = False
    assert np.all(heat[outside] == 0)


def test_visualbackprop_single_layer_closed_form():
    """One 2x2 stride-2 conv: the map is each cell's channel-mean ReLU output copied onto its
    2x2 pixels (the transposed convolution of ones), divided by the maximum."""
    inputs = keras.Input((6, 8, 3))
    x = keras.layers.Conv2D(4, 2, strides=2, activation="relu", name="c")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    frame = np.random.default_rng(3).uniform(-1, 1, (1, 6, 8, 3)).astype(np.float32)
    kernel, bias = model.get_layer("c").get_weights()
    cells = np.zeros((3, 4))
    for i in range(3):
        for j in range(4):
            patch = frame[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            cells[i, j] = np.maximum(np.einsum("abc,abck->k", patch, kernel) + bias, 0).mean()
    expected = np.kron(cells, np.ones((2, 2))) / cells.max()
    heat = AttentionEngine(model, ("visualbackprop",))(frame).maps["visualbackprop"][0]
    np.testing.assert_allclose(heat, expected, rtol=1e-5, atol=1e-6)


def _tiny_model(activation: str):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(2, 3, activation=activation, name="c")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, activation=activation, name="d")(x)
    outputs = keras.layers.Dense(1, name="out")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def _manual_backward(model, frame: np.ndarray, activation: str, guided: bool) -> np.ndarray:
    """dy/dx for one (6, 6, 3) frame by hand, guided: gate with (dy > 0)(z > 0) at each
    rectifier (ELU treated as its positive part); vanilla: the true derivatives."""
    (kc, bc), (kd, bd), (ko, _) = (model.get_layer(n).get_weights() for n in ("c", "d", "out"))
    act = (lambda z: np.maximum(z, 0)) if activation == "relu" else (
        lambda z: np.where(z > 0, z, np.expm1(z)))
    slope = (lambda z: (z > 0) * 1.0) if activation == "relu" else (
        lambda z: np.where(z > 0, 1.0, np.exp(z)))
    z1 = np.zeros((4, 4, 2))
    for i in range(4):
        for j in range(4):
            z1[i, j] = np.einsum("abc,abck->k", frame[i:i + 3, j:j + 3], kc) + bc
    z2 = act(z1).reshape(-1) @ kd + bd
    d_a2 = ko[:, 0]
    d_z2 = d_a2 * (d_a2 > 0) * (z2 > 0) if guided else d_a2 * slope(z2)
    d_a1 = (kd @ d_z2).reshape(4, 4, 2)
    d_z1 = d_a1 * (d_a1 > 0) * (z1 > 0) if guided else d_a1 * slope(z1)
    d_x = np.zeros((6, 6, 3))
    for i in range(4):
        for j in range(4):
            d_x[i:i + 3, j:j + 3] += np.einsum("abck,k->abc", kc, d_z1[i, j])
    return d_x.sum(-1)


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_guided_backprop_follows_the_gating_rule(activation):
    model = _tiny_model(activation)
    frame = np.random.default_rng(5).uniform(-1, 1, (1, 6, 6, 3)).astype(np.float32)
    result = AttentionEngine(model, ("guided_backprop", "gradient"))(frame)
    guided = _manual_backward(model, frame[0], activation, guided=True)
    vanilla = _manual_backward(model, frame[0], activation, guided=False)
    assert not np.allclose(guided, vanilla, atol=1e-3)  # the gating matters for this network
    np.testing.assert_allclose(result.maps["guided_backprop"][0], guided, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.maps["gradient"][0], vanilla, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_guided_backprop_differs_from_gradient_on_dave2(activation, frames):
    model = build_dave2(activation=activation, seed=4)
    result = AttentionEngine(model, ("guided_backprop", "gradient"))(frames[:1])
    guided, vanilla = result.maps["guided_backprop"], result.maps["gradient"]
    assert np.abs(guided).max() > 0
    assert np.corrcoef(guided.ravel(), vanilla.ravel())[0, 1] < 0.99


def test_occlusion_on_a_single_pixel_linear_model():
    inputs = keras.Input((H, W, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    weights = np.zeros((H, W, 3), np.float32)
    weights[30, 100, 0] = 0.01
    model.layers[-1].set_weights([weights.reshape(-1, 1), np.zeros(1, np.float32)])
    frame = np.full((1, H, W, 3), 200.0, np.float32)
    heat = attribute(model, frame, "occlusion", patch=10, stride=5, fill="gray")[0]
    drop = 0.01 * (200.0 - 128.0)  # S(x) - S(occluded) for every patch covering the pixel
    assert heat[30, 100] == pytest.approx(drop, rel=1e-4)
    far = np.ones((H, W), bool)
    far[21:40, 91:110] = False  # pixels sharing no 10x10 patch with (30, 100)
    assert np.all(np.abs(heat[far]) < 1e-6)
    assert np.all(heat >= -1e-6) and np.all(heat <= drop * (1 + 1e-4))


def test_smoothgrad_is_seeded_and_reduces_to_saliency_without_noise(dave2_elu, frames):
    first = attribute(dave2_elu, frames[:1], "smoothgrad", samples=4, sigma=0.1, seed=1)
    again = AttentionEngine(dave2_elu, ("smoothgrad",), smoothgrad_samples=4,
                            smoothgrad_sigma=0.1, seed=1)(frames[:1]).maps["smoothgrad"]
    np.testing.assert_array_equal(first, again)
    noiseless = AttentionEngine(dave2_elu, ("smoothgrad", "saliency"), smoothgrad_samples=2,
                                smoothgrad_sigma=0.0)(frames[:1])
    np.testing.assert_allclose(noiseless.maps["smoothgrad"], noiseless.maps["saliency"],
                               rtol=1e-4, atol=1e-4 * noiseless.maps["saliency"].max())


@pytest.mark.parametrize(("small", "big", "kernel", "stride", "padding"), [
    (31, 66, 5, 2, "VALID"),  # DAVE-2 conv1: needs output padding (2 * 30 + 5 = 65 < 66)
    (3, 5, 3, 1, "VALID"), (5, 10, 3, 2, "SAME"), (4, 7, 3, 2, "SAME"), (5, 5, 3, 1, "SAME")])
def test_visualbackprop_upscale_matrix_equals_transposed_convolution_of_ones(
        small: int, big: int, kernel: int, stride: int, padding: str) -> None:
    from drive_viz.attention.network import _ones_transpose_matrix

    signal = np.random.default_rng(small + big).random((1, small, 1)).astype(np.float32)
    expected = tf.nn.conv1d_transpose(signal, tf.ones((kernel, 1, 1)), (1, big, 1),
                                      strides=stride, padding=padding).numpy()[0, :, 0]
    matrix = _ones_transpose_matrix(small, big, kernel, stride, padding)
    np.testing.assert_allclose(matrix @ signal[0, :, 0], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("kernel", "stride", "in_hw"), [
    (5, 2, (66, 200)),  # DAVE-2 conv1
    (5, 2, (31, 98)),   # last column unused by the forward pass
    (3, 2, (9, 12)),
    (4, 3, (14, 11)),   # kernel not a multiple of the stride
    (2, 2, (8, 8)),
])
def test_polyphase_conv_gradients_equal_the_transposed_convolution(kernel, stride, in_hw):
    from drive_viz.attention.network import conv_polyphase_grad

    rng = np.random.default_rng(kernel * 10 + stride)
    x = tf.constant(rng.normal(size=(2, *in_hw, 3)), tf.float64)
    weights = tf.constant(rng.normal(size=(kernel, kernel, 3, 4)), tf.float64)
    out_hw = [(size - kernel) // stride + 1 for size in in_hw]
    upstream = tf.constant(rng.normal(size=(2, *out_hw, 4)), tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, weights])
        plain = tf.nn.conv2d(x, weights, strides=stride, padding="VALID")
        polyphase = conv_polyphase_grad(x, weights, stride)
        plain_score = tf.reduce_sum(plain * upstream)
        polyphase_score = tf.reduce_sum(polyphase * upstream)
    np.testing.assert_allclose(polyphase.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    for plain_grad, polyphase_grad in zip(tape.gradient(plain_score, [x, weights]),
                                          tape.gradient(polyphase_score, [x, weights]),
                                          strict=True):
        np.testing.assert_allclose(polyphase_grad.numpy(), plain_grad.numpy(), rtol=1e-10,
                                   atol=1e-10)


def test_only_the_strided_first_conv_takes_the_polyphase_gradient(dave2_elu):
    from drive_viz.attention.network import Network

    network = Network(dave2_elu)
    flagged = [op.name for op in network._ops if op.polyphase_grad]
    assert flagged == ["conv1"]
    inputs = keras.Input((H, W, 3))
    hidden = keras.layers.Conv2D(4, (5, 3), strides=2)(inputs)  # not square: TF's gradient
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(hidden))
    assert not any(op.polyphase_grad for op in Network(keras.Model(inputs, outputs))._ops)
