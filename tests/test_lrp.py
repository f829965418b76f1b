"""LRP: closed form on a hand-built network, conservation identities, a slow numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from drive_viz.attention import lrp
from drive_viz.attention.engine import AttentionEngine
from drive_viz.attention.network import Network


def _two_layer():
    """x (2 pixels) -> Dense(2, relu) -> Dense(1), weights chosen for a hand computation."""
    import keras

    inputs = keras.Input(shape=(1, 2, 1))
    hidden = keras.layers.Dense(2, activation="relu", name="hidden")(
        keras.layers.Flatten(name="flat")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
    model.get_layer("hidden").set_weights([np.array([[1.0, -1.0], [1.0, 2.0]], np.float32),
                                           np.array([0.5, -1.0], np.float32)])
    model.get_layer("out").set_weights([np.array([[2.0], [3.0]], np.float32),
                                        np.array([0.25], np.float32)])
    return model


X2 = np.array([2.0, 1.0], np.float32).reshape(1, 1, 2, 1)


def _pixels(model, rule, **options) -> np.ndarray:
    trail = lrp.relevance(Network(model), tf.constant(X2), "steer", (rule,), **options)[rule]
    return trail[""].numpy().reshape(-1)


def test_closed_form_two_layers() -> None:
    # Hand computation: hidden pre-activations (2*1 + 1*1 + 0.5, 2*-1 + 1*2 - 1) = (3.5, -1),
    # so h = (3.5, 0) and y = 3.5*2 + 0.25 = 7.25.
    model = _two_layer()
    # Epsilon rule, eps 0.1, at every layer: R_h0 = 3.5*2 * 7.25 / (7.25 + 0.1); R_h1 = 0;
    # at the pixels x_i w_i0 R_h0 / (3.5 + 0.1) = (2, 1) * R_h0 / 3.6.
    r_h0 = 7.0 * 7.25 / 7.35
    np.testing.assert_allclose(_pixels(model, "epsilon", eps=0.1, input_rule="same"),
                               np.array([2.0, 1.0]) * r_h0 / 3.6, rtol=1e-6)
    # z^B at the pixels, bounds (0, 4): unit 0 has no negative weight, so z^B = x . w = 3 and
    # R_x = (2/3, 1/3) R_h0: the bias 0.5 absorbs nothing.
    np.testing.assert_allclose(_pixels(model, "epsilon", eps=0.1, bounds=(0.0, 4.0)),
                               np.array([2.0, 1.0]) / 3.0 * r_h0, rtol=1e-6)
    # z+: the output's positive weights see 3.5*2 + 0*3 = 7, so R_h0 = 7.25 (all of y), then
    # R_x = (2/3, 1/3) * 7.25 with either input rule (z^B of unit 0 equals its z+ here).
    for input_rule in ("zB", "same"):
        np.testing.assert_allclose(
            _pixels(model, "zplus", bounds=(0.0, 4.0), input_rule=input_rule),
            np.array([2.0, 1.0]) / 3.0 * 7.25, rtol=1e-6)


def _small_net(bias: bool, activation: str = "relu", seed: int = 0):
    """Rescaling, conv (+BatchNorm) with separate Activations, flatten, dense: pre-activations
    are the Conv2D/Dense layers' own outputs."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(9, 11, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="norm")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, use_bias=bias, name="conv1")(x)
    x = keras.layers.Activation(activation, name="act1")(x)
    x = keras.layers.Conv2D(5, 2, use_bias=bias, name="conv2")(x)
    if bias:
        x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation(activation, name="act2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(6, use_bias=bias, name="dense1")(x)
    x = keras.layers.Activation(activation, name="act3")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=bias, name="out")(x))
    if bias:
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([w + rng.normal(0, 0.3, w.shape).astype(np.float32)
                                   if w.ndim == 1 else w for w in layer.get_weights()])
        bn = model.get_layer("bn2")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * 1.5, beta, mean, np.abs(var) + 0.5])
    return model


def _inputs(n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 9, 11, 3)).astype(np.float32)


def test_epsilon_rule_conserves_up_to_what_bias_and_eps_absorb() -> None:
    import keras

    model = _small_net(bias=True, activation="elu")
    x = _inputs()
    eps = 0.05
    network = Network(model)
    trail = lrp.relevance(network, tf.constant(x), "steer", ("epsilon",), eps=eps)["epsilon"]
    # Independent pre-activations: the Keras layers' own outputs (conv2's through its BN).
    linear = {"conv2": "bn2", "dense1": "dense1", "out": "out"}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in linear.values()])
    total_absorbed = 0.0
    for name, z in zip(linear, probe(x), strict=True):
        z = np.asarray(z, np.float64)
        if name == "conv2":
            bn = model.get_layer("bn2")
            gamma, beta, mean, var = bn.get_weights()
            bias = model.get_layer("conv2").get_weights()[1]
            bias = (bias - mean) * gamma / np.sqrt(var + bn.epsilon) + beta
        else:
            bias = model.get_layer(name).get_weights()[1]
        # relevance at the layer's output (conv2's through its folded BN) and at its input
        r_out = trail[linear[name]].numpy().astype(np.float64)
        r_in = trail[{"conv2": "act1", "dense1": "flat", "out": "act3"}[name]].numpy().astype(
            np.float64)
        stab = z + eps * np.where(z >= 0, 1.0, -1.0)
        absorbed = (r_out * (bias + eps * np.where(z >= 0, 1.0, -1.0)) / stab).reshape(
            len(x), -1).sum(axis=1)
        np.testing.assert_allclose(r_in.reshape(len(x), -1).sum(axis=1),
                                   r_out.reshape(len(x), -1).sum(axis=1) - absorbed,
                                   rtol=1e-4, atol=1e-6)
        total_absorbed = total_absorbed + absorbed
    # conv1 uses z^B: it absorbs nothing, so the pixels hold y minus the layers' absorption.
    y = model(x).numpy()[:, 0]
    pixels = trail[""].numpy().reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(pixels, y - total_absorbed, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(total_absorbed) > 1e-4)  # the identity is not trivially 0 = 0


def test_zplus_conserves_exactly_on_a_bias_free_relu_network() -> None:
    model = _small_net(bias=False)
    x = _inputs(4)
    y = model(x).numpy()[:, 0]
    engine = AttentionEngine(model, ("lrp_zplus",))
    maps = engine(x).maps["lrp_zplus"]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), y, rtol=1e-5)
    # z+ keeps the sign of the output at every pixel.
    assert np.all(maps * np.sign(y)[:, None, None] >= -1e-7)
    same = lrp.relevance(Network(model), tf.constant(x), "steer", ("zplus",),
                         input_rule="same")["zplus"][""].numpy()
    np.testing.assert_allclose(same.sum(axis=(1, 2, 3)), y, rtol=1e-5)


def test_lrp0_is_gradient_times_input_on_a_bias_free_relu_network() -> None:
    # With no biases and eps -> 0, the epsilon rule at every layer (pixels included) equals
    # gradient x input (Shrikumar et al. 2016; Ancona et al. 2018) when the input is the
    # rescaled one: relevance passes the Rescaling, so compare with x_norm * dS/dx_norm.
    model = _small_net(bias=False)
    x = _inputs()
    network = Network(model)
    got = lrp.relevance(network, tf.constant(x), "steer", ("epsilon",), eps=0.0,
                        input_rule="same")["epsilon"][""].numpy()
    norm = tf.constant(x / 127.5 - 1.0)
    with tf.GradientTape() as tape:
        tape.watch(norm)
        y = model.get_layer("out")(
            _rest(model, norm))
    grad = tape.gradient(y, norm).numpy()
    np.testing.assert_allclose(got, norm.numpy() * grad, rtol=1e-4, atol=1e-6)


def _rest(model, t):
    """The model's layers after the Rescaling, up to (not including) the output layer."""
    for name in ("conv1", "act1", "conv2", "act2", "flat", "dense1", "act3"):
        t = model.get_layer(name)(t)
    return t


def test_targets_scale_the_relevance_linearly() -> None:
    model = _small_net(bias=True)
    x = _inputs()
    y = model(x).numpy()[:, 0]
    steer = AttentionEngine(model, ("lrp_epsilon",))(x).maps["lrp_epsilon"]
    left = AttentionEngine(model, ("lrp_epsilon",), target="left")(x).maps["lrp_epsilon"]
    maintain = AttentionEngine(model, ("lrp_epsilon",), target="maintain")(x).maps["lrp_epsilon"]
    np.testing.assert_allclose(left, -steer, rtol=1e-5, atol=1e-8)
    # maintain starts from y dS/dy = -y^2 = -y * (steer's start y): every rule is linear in R.
    np.testing.assert_allclose(maintain, -y[:, None, None] * steer, rtol=1e-4, atol=1e-8)


# --- slow numpy reference -------------------------------------------------------------------

def _conv_np(a, w, stride):
    n, h, wd, _ = a.shape
    k = w.shape[0]
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    z = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = a[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            z[:, i, j] = np.einsum("nabc,abco->no", patch, w)
    return z


def _linear_relevance_np(a, w, z, r, stride, conv, denominator):
    """R_i = sum_j a_i w_ij r_j / denominator_j, by explicit loops over outputs."""
    out = np.zeros_like(a)
    if not conv:
        for j in range(w.shape[1]):
            out += a * w[:, j][None] * (r[:, j] / denominator[:, j])[:, None]
        return out
    k = w.shape[0]
    for i in range(z.shape[1]):
        for jj in range(z.shape[2]):
            for o in range(w.shape[3]):
                share = (r[:, i, jj, o] / denominator[:, i, jj, o])[:, None, None, None]
                out[:, i * stride:i * stride + k, jj * stride:jj * stride + k, :] += (
                    a[:, i * stride:i * stride + k, jj * stride:jj * stride + k, :]
                    * w[None, :, :, :, o] * share)
    return out


def _reference(model, x, rule, eps):
    """LRP of the ``_small_net(bias=True)`` graph in float64 numpy, written from the rules."""
    x = x.astype(np.float64)
    w1, b1 = (v.astype(np.float64) for v in model.get_layer("conv1").get_weights())
    w2, b2 = (v.astype(np.float64) for v in model.get_layer("conv2").get_weights())
    bn = model.get_layer("bn2")
    gamma, beta, mean, var = (v.astype(np.float64) for v in bn.get_weights())
    w3, b3 = (v.astype(np.float64) for v in model.get_layer("dense1").get_weights())
    w4, b4 = (v.astype(np.float64) for v in model.get_layer("out").get_weights())
    elu = lambda t: np.where(t > 0, t, np.expm1(np.minimum(t, 0)))  # noqa: E731
    a0 = x / 127.5 - 1.0
    z1 = _conv_np(a0, w1, 2) + b1
    a1 = elu(z1)
    scale = gamma / np.sqrt(var + bn.epsilon)
    z2 = (_conv_np(a1, w2, 1) + b2 - mean) * scale + beta  # conv2 then BN
    a2 = elu(z2)
    f2 = a2.reshape(len(x), -1)
    z3 = f2 @ w3 + b3
    a3 = elu(z3)
    z4 = a3 @ w4 + b4
    r = z4  # steer: R = y
    stab = lambda z: z + eps * np.where(z >= 0, 1.0, -1.0)  # noqa: E731

    def layer(a, w, z, r, stride=1, conv=False):
        if rule == "zplus":
            pos, wp = np.maximum(a, 0), np.maximum(w, 0)
            zp = _conv_np(pos, wp, stride) if conv else pos @ wp
            safe = np.where(zp != 0, zp, 1.0)
            return _linear_relevance_np(pos, wp, zp, np.where(zp != 0, r, 0.0), stride, conv,
                                        safe)
        return _linear_relevance_np(a, w, z, r, stride, conv, stab(z))

    r = layer(a3, w4, z4, r)
    r = layer(f2, w3, z3, r).reshape(a2.shape)
    r = layer(a1, w2 * scale, z2, r, conv=True)
    # z^B at conv1 with bounds (0, 255) rescaled to (-1, 1).
    low, high = np.full_like(a0, -1.0), np.full_like(a0, 1.0)
    wp, wm = np.maximum(w1, 0), np.minimum(w1, 0)
    zb = _conv_np(a0, w1, 2) - _conv_np(low, wp, 2) - _conv_np(high, wm, 2)
    safe = np.where(zb != 0, zb, 1.0)
    r = (_linear_relevance_np(a0, w1, z1, r, 2, True, safe)
         - _linear_relevance_np(low, wp, z1, r, 2, True, safe)
         - _linear_relevance_np(high, wm, z1, r, 2, True, safe))
    return r.sum(axis=-1)


@pytest.mark.parametrize("method", ["lrp_epsilon", "lrp_zplus"])
def test_engine_matches_a_slow_numpy_reference(method) -> None:
    model = _small_net(bias=True, activation="elu", seed=3)
    out = model.get_layer("out")
    kernel, bias = out.get_weights()
    out.set_weights([np.abs(kernel) + 0.1, bias])  # so z+ has positive evidence at the top
    x = _inputs(2, seed=4)
    got = AttentionEngine(model, (method,), lrp_eps=0.02)(x).maps[method]
    expected = _reference(model, x, lrp.LRP_RULES[method], 0.02)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def test_unit_target_starts_inside_the_network() -> None:
    import keras

    from drive_viz.attention.targets import UnitTarget

    model = _small_net(bias=False)
    x = _inputs()
    # conv2's block ends after its Activation: the target is a filter of act2, spatial mean.
    probe = keras.Model(model.input, model.get_layer("act2").output)
    means = np.asarray(probe(x)).mean(axis=(1, 2))  # (N, filters)
    unit = int(np.argmax(means.min(axis=0)))
    score = means[:, unit]
    assert np.all(score > 0)
    maps = AttentionEngine(model, ("lrp_zplus",), target=UnitTarget("conv2", unit))(x).maps
    np.testing.assert_allclose(maps["lrp_zplus"].sum(axis=(1, 2)), score, rtol=1e-5)


# --- the graph: pooling, crop, resize, fan-out, two heads -----------------------------------

def _pooling_net(seed: int = 0):
    """Rescaling, conv + BatchNorm (no shift) + ReLU, MaxPooling 2x2, Cropping2D, bilinear
    Resizing, conv (ReLU), AveragePooling 2x2 stride 1, dense: bias-free throughout."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(16, 18, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="norm")(inputs)
    x = keras.layers.Conv2D(6, 3, use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="act1")(x)
    x = keras.layers.MaxPooling2D(2, name="max")(x)
    x = keras.layers.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = keras.layers.Resizing(8, 9, interpolation="bilinear", name="resize")(x)
    x = keras.layers.Conv2D(5, 2, use_bias=False, activation="relu", name="conv2")(x)
    x = keras.layers.AveragePooling2D(2, strides=1, name="avg")(x)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="out")(x))
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 2.0, 6).astype(np.float32), np.zeros(6, np.float32),
                    np.zeros(6, np.float32), rng.uniform(0.5, 2.0, 6).astype(np.float32)])
    out = model.get_layer("out")
    out.set_weights([np.abs(out.get_weights()[0]) + 0.05])
    return model


def _pool_inputs(n: int = 2, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 16, 18, 3)).astype(np.float32)


def test_zplus_conserves_exactly_through_max_and_average_pooling() -> None:
    import keras

    model = _pooling_net()
    x = _pool_inputs()
    y = model(x).numpy()[:, 0]
    maps = AttentionEngine(model, ("lrp_zplus",))(x).maps["lrp_zplus"]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), y, rtol=1e-5)
    assert np.all(maps * np.sign(y)[:, None, None] >= -1e-7)
    trail = lrp.relevance(Network(model), tf.constant(x), "steer", ("zplus",))["zplus"]
    for name in ("avg", "conv2", "resize", "crop", "max", "act1", "norm", ""):
        np.testing.assert_allclose(trail[name].numpy().reshape(len(x), -1).sum(axis=1), y,
                                   rtol=1e-5, err_msg=name)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ("act1", "conv2")])
    act1, conv2 = (np.asarray(t, np.float64) for t in probe(x))
    # Max pooling, 2x2 windows: each window's relevance all at its largest activation.
    r_max, r_act1 = trail["max"].numpy(), trail["act1"].numpy()
    windows = r_act1.reshape(len(x), 7, 2, 8, 2, 6)
    np.testing.assert_allclose(windows.sum(axis=(2, 4)), r_max, rtol=1e-5, atol=1e-7)
    values = act1.reshape(len(x), 7, 2, 8, 2, 6)
    losers = values < values.max(axis=(2, 4), keepdims=True)
    assert np.all(windows[losers] == 0) and np.abs(r_max).max() > 1e-3
    # Average pooling 2x2 stride 1 under z+ (a >= 0): R_i = a_i sum_{windows j of i} R_j /
    # sum_{k in j} a_k (the weights 1/4 cancel), by explicit loops.
    r_avg = trail["avg"].numpy().astype(np.float64)
    expected = np.zeros_like(conv2)
    for i in range(r_avg.shape[1]):
        for j in range(r_avg.shape[2]):
            patch = conv2[:, i:i + 2, j:j + 2]
            total = patch.sum(axis=(1, 2), keepdims=True)
            share = np.divide(r_avg[:, i:i + 1, j:j + 1], total, out=np.zeros_like(total),
                              where=total != 0)
            expected[:, i:i + 2, j:j + 2] += patch * share
    np.testing.assert_allclose(trail["conv2"].numpy(), expected, rtol=1e-4,
                               atol=1e-6 * np.abs(expected).max())


def test_lrp0_is_gradient_times_input_through_pooling_crop_and_resize() -> None:
    model = _pooling_net(seed=1)
    x = tf.constant(_pool_inputs(seed=6))
    got = lrp.relevance(Network(model), x, "steer", ("epsilon",), eps=0.0,
                        input_rule="same")["epsilon"][""].numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)[:, 0]
    # Relevance passes the Rescaling: x_norm dS/dx_norm = (x - 127.5) dS/dx.
    expected = (x.numpy() - 127.5) * tape.gradient(y, x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def _two_heads():
    """conv1 feeds two convs (Add), a Concatenate with itself, and the throttle head (GAP,
    Dense); the steering head is conv3, dense, Dense(1). Bias-free ReLU throughout."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input(shape=(10, 12, 3))
    conv = lambda n, k, name: keras.layers.Conv2D(  # noqa: E731
        n, k, padding="same", use_bias=False, activation="relu", name=name)
    c1 = conv(4, 3, "conv1")(inputs)
    added = keras.layers.Add(name="add")([conv(4, 3, "conv2a")(c1), conv(4, 1, "conv2b")(c1)])
    joined = keras.layers.Concatenate(name="cat")([added, c1])
    hidden = keras.layers.Flatten(name="flat")(conv(3, 3, "conv3")(joined))
    hidden = keras.layers.Dense(5, use_bias=False, activation="relu", name="dense")(hidden)
    steer = keras.layers.Dense(1, use_bias=False, name="steer")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(c1)
    throttle = keras.layers.Dense(1, use_bias=False, name="throttle")(pooled)
    model = keras.Model(inputs, [throttle, steer])
    for name in ("steer", "throttle"):
        layer = model.get_layer(name)
        layer.set_weights([np.abs(layer.get_weights()[0]) + 0.05])
    return model


def _two_head_network(model):
    from drive_viz.model.contract import InputContract, OutputSpec

    contract = InputContract(input_size=(10, 12), steering=OutputSpec("steer"),
                             throttle=OutputSpec("throttle"))
    return Network(model, contract)


def test_two_heads_each_target_gets_relevance_only_through_its_own_path() -> None:
    model = _two_heads()
    network = _two_head_network(model)
    x = tf.constant(np.random.default_rng(7).uniform(0, 1, (3, 10, 12, 3)).astype(np.float32))
    throttle_y, steer_y = (t.numpy()[:, 0] for t in model(x))
    steer = lrp.relevance(network, x, "steer", ("zplus", "epsilon"), eps=0.0,
                          input_rule="same")
    assert not {"gap", "throttle"} & set(steer["zplus"])
    throttle = lrp.relevance(network, x, "throttle", ("zplus",), input_rule="same")["zplus"]
    assert not {"conv2a", "conv2b", "add", "cat", "conv3", "dense", "steer"} & set(throttle)
    # z+ conserves each head's own output exactly, through the Add, the Concatenate and
    # conv1's fan-out (its relevance is the sum of what its three readers send back).
    np.testing.assert_allclose(steer["zplus"][""].numpy().sum(axis=(1, 2, 3)), steer_y,
                               rtol=1e-5)
    np.testing.assert_allclose(throttle[""].numpy().sum(axis=(1, 2, 3)), throttle_y, rtol=1e-5)
    np.testing.assert_allclose(
        steer["zplus"]["conv1"].numpy().sum(axis=(1, 2, 3)), steer_y, rtol=1e-5)
    # LRP-0 is gradient x input of the steering output alone (the Keras model's own gradient).
    for index, (target, got) in enumerate((("throttle", None), ("steer", steer["epsilon"]))):
        if got is None:
            got = lrp.relevance(network, x, target, ("epsilon",), eps=0.0,
                                input_rule="same")["epsilon"]
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)[index][:, 0]
        expected = x.numpy() * tape.gradient(y, x).numpy()
        np.testing.assert_allclose(got[""].numpy(), expected, rtol=1e-3,
                                   atol=1e-5 * np.abs(expected).max(), err_msg=target)


def test_refused_at_engine_construction(monkeypatch) -> None:
    import keras

    from drive_viz.errors import ModelError
    from drive_viz.model.contract import InputContract, OutputSpec

    inputs = keras.Input(shape=(6, 6, 3))
    x = keras.layers.MaxPooling2D(2, name="pool")(
        keras.layers.Conv2D(2, 3, name="conv1")(inputs))
    logits = keras.layers.Dense(5, name="bins")(keras.layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, logits)
    contract = InputContract(input_size=(6, 6), steering=OutputSpec(None, "bins:5:-1:1"))
    with pytest.raises(ModelError, match="'bins'.*decoded 'bins:5:-1:1'.*softmax"):
        AttentionEngine(model, ("lrp_epsilon",), contract=contract)
    from drive_viz.attention.targets import UnitTarget

    AttentionEngine(model, ("lrp_epsilon",), target=UnitTarget("conv1", 1), contract=contract)
    AttentionEngine(model, ("saliency",), contract=contract)  # only LRP is refused
    monkeypatch.delitem(lrp.RULES, "maxpool")
    with pytest.raises(ModelError, match="layer 'pool': LRP has no rule"):
        AttentionEngine(model, ("lrp_zplus",), target=UnitTarget("conv1", 1),
                        contract=contract)
