"""``drive-viz adopt``: legacy Keras files rebuilt from built-in layers, nothing executed.

Each legacy file is written here with h5py the way Keras 2.0/2.1 (Sequential as a list, Keras 1
field names), Keras 2.2 (Sequential as a dict, initializers carrying ``dtype``) and tf.keras
2.x (Functional, several output heads) wrote it, from a network first built in Keras 3 with
its real Lambda layer: that network's outputs are the reference the adopted model must match.
"""

from __future__ import annotations

import base64
import json
import marshal
import struct
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest

from drive_viz.cli import main
from drive_viz.errors import ModelError
from drive_viz.model.contract import output_names
from drive_viz.model.lambda_code import code_constants
from drive_viz.model.legacy import parse_declarations, read_model_file, rebuild

RNG = np.random.default_rng(7)


def normalizer(x: Any) -> Any:
    return x / 127.5 - 1


def lambda_field_311() -> list[Any]:
    """Keras 2's ``func_dump`` of ``lambda x: x / 127.5 - 1`` compiled by this Python."""
    code = marshal.dumps((lambda x: x / 127.5 - 1).__code__)
    return [base64.b64encode(code).decode("ascii"), None, None]


def marshal_39_lambda() -> bytes:
    """``lambda x: x / 127.5 - 1`` in Python 3.9's marshal layout (which 3.11 cannot read):
    code object header of 3.9 (argcount, posonly, kwonly, nlocals, stacksize, flags), 3.9
    bytecode, then consts, names, varnames, freevars, cellvars, filename, name, firstlineno,
    lnotab."""
    def long(v: int) -> bytes:
        return struct.pack("<i", v)

    bytecode = bytes([124, 0, 100, 0, 27, 0, 100, 1, 24, 0, 83, 0])
    return (b"\xe3" + long(1) + long(0) + long(0) + long(1) + long(2) + long(0x43)
            + b"s" + long(len(bytecode)) + bytecode
            + b")\x02" + b"\xe7" + struct.pack("<d", 127.5) + b"\xe9" + long(1)
            + b")\x00" + b")\x01\xda\x01x" + b")\x00" + b")\x00"
            + b"\xfa\x08model.py" + b"\xda\x08<lambda>" + long(12) + b"s" + long(0))


def marshal_27_lambda() -> bytes:
    """``lambda x: x / 255.0 - 0.5`` in Python 2.7's marshal layout (Keras 2.0 under 2.7):
    'c', argcount, nlocals, stacksize, flags, bytecode, then consts as a '(' tuple with a
    4-byte count, names, varnames (interned 't' strings), freevars, cellvars, filename, name
    (a string back-reference 'R'), firstlineno, lnotab."""
    def long(v: int) -> bytes:
        return struct.pack("<i", v)

    bytecode = bytes([124, 0, 0, 100, 1, 0, 21, 100, 2, 0, 24, 83])
    return (b"c" + long(1) + long(1) + long(2) + long(0x43)
            + b"s" + long(len(bytecode)) + bytecode
            + b"(" + long(3) + b"N" + b"g" + struct.pack("<d", 255.0)
            + b"g" + struct.pack("<d", 0.5)
            + b"(" + long(0) + b"(" + long(1) + b"t" + long(1) + b"x" + b"(" + long(0)
            + b"(" + long(0) + b"s" + long(8) + b"model.py" + b"t" + long(8) + b"<lambda>"
            + long(30) + b"R" + long(0))


def test_marshal_39_blob_is_unreadable_here_but_its_constants_are_found() -> None:
    raw = marshal_39_lambda()
    with pytest.raises((ValueError, EOFError, TypeError)):
        marshal.loads(raw)
    assert code_constants(raw) == ([127.5, 1], "scanned")
    assert code_constants(marshal_27_lambda()) == ([255.0, 0.5], "scanned")
    assert code_constants(marshal.dumps((lambda x: x / 255.0 - 0.5).__code__)) == (
        [255.0, 0.5], "unmarshalled")


# --------------------------------------------------------------------------------------------
# Legacy file writers


def keras2_weights(model: Any) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Layer name -> [(Keras 2 weight name, array)] in Keras 2's order (kernel, bias; gamma,
    beta, moving_mean, moving_variance), which is also Keras 3's."""
    return {layer.name: [(v.path.rsplit("/", 1)[-1], np.asarray(v.numpy()))
                         for v in layer.weights]
            for layer in model.layers if layer.weights}


def write_h5(path: Path, config: dict[str, Any], weights: dict[str, list[tuple[str, Any]]],
             layer_names: list[str], keras_version: str) -> Path:
    """An HDF5 model file laid out as Keras 2 / tf.keras ``model.save`` wrote it."""
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = keras_version.encode()
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["model_config"] = json.dumps(config).encode()
        group = h5.create_group("model_weights")
        group.attrs["layer_names"] = [n.encode() for n in layer_names]
        for name in layer_names:
            layer = group.create_group(name)
            pairs = weights.get(name, [])
            layer.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w, _ in pairs]
            for w, array in pairs:
                layer.create_dataset(f"{name}/{w}:0", data=array)
        h5.create_group("optimizer_weights")
    return path


def randomize(model: Any) -> Any:
    for layer in model.layers:
        for v in layer.weights:
            scale = 0.3 if "variance" not in v.path else 1.0
            value = RNG.normal(0, scale, v.shape).astype(np.float32)
            v.assign(np.abs(value) + 0.5 if "variance" in v.path else value)
    return model


def behavioral_cloning(tmp_path: Path, function: Any, shape: tuple[int, int] = (40, 80),
                       cropping: tuple[int, int] = (10, 4)) -> tuple[Path, Any]:
    """Keras 2.0/2.1 Sequential as a LIST with Keras 1 field names: Lambda x/127.5-1 on
    ``shape``, Cropping2D of ``cropping`` rows, two convs, dense head. Returns the file and
    the reference network."""
    reference = randomize(keras.Sequential([
        keras.Input((*shape, 3)),
        keras.layers.Lambda(normalizer, name="lambda_1"),
        keras.layers.Cropping2D((cropping, (0, 0)), name="cropping2d_1"),
        keras.layers.Conv2D(4, 5, strides=2, activation="relu", name="convolution2d_1"),
        keras.layers.Conv2D(6, 3, activation="elu", name="convolution2d_2"),
        keras.layers.Flatten(name="flatten_1"),
        keras.layers.Dense(10, activation="elu", name="dense_1"),
        keras.layers.Dropout(0.5, name="dropout_1"),
        keras.layers.Dense(1, name="dense_2")]))
    init = {"init": "glorot_uniform", "W_regularizer": None, "b_regularizer": None,
            "W_constraint": None, "b_constraint": None, "bias": True, "trainable": True}
    config = {"class_name": "Sequential", "config": [
        {"class_name": "Lambda", "config": {
            "name": "lambda_1", "trainable": True, "batch_input_shape": [None, *shape, 3],
            "input_dtype": "float32", "function": function, "function_type": "lambda",
            "output_shape": None, "output_shape_type": "raw", "arguments": {}}},
        {"class_name": "Cropping2D", "config": {
            "name": "cropping2d_1", "trainable": True, "cropping": [list(cropping), [0, 0]],
            "dim_ordering": "tf"}},
        {"class_name": "Convolution2D", "config": {
            "name": "convolution2d_1", "nb_filter": 4, "nb_row": 5, "nb_col": 5,
            "subsample": [2, 2], "border_mode": "valid", "activation": "relu",
            "dim_ordering": "tf", **init}},
        {"class_name": "Convolution2D", "config": {
            "name": "convolution2d_2", "nb_filter": 6, "nb_row": 3, "nb_col": 3,
            "subsample": [1, 1], "border_mode": "valid", "activation": "elu",
            "dim_ordering": "tf", **init}},
        {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True}},
        {"class_name": "Dense", "config": {"name": "dense_1", "output_dim": 10,
                                           "activation": "elu", "input_dim": None, **init}},
        {"class_name": "Dropout", "config": {"name": "dropout_1", "p": 0.5, "trainable": True}},
        {"class_name": "Dense", "config": {"name": "dense_2", "output_dim": 1,
                                           "activation": "linear", "input_dim": None, **init}},
    ]}
    names = [layer.name for layer in reference.layers]
    path = write_h5(tmp_path / "model.h5", config, keras2_weights(reference), names, "2.0.8")
    return path, reference


def initializer(name: str) -> dict[str, Any]:
    """A tf.keras 2.1/2.2 initializer config: carries ``dtype``, which Keras 3 refuses."""
    return {"class_name": name, "config": {"scale": 1.0, "mode": "fan_avg",
                                           "distribution": "uniform", "seed": None,
                                           "dtype": "float32"}}


def pilotnet(tmp_path: Path, shape: tuple[int, int] = (36, 64)) -> tuple[Path, Any]:
    """Keras 2.2 dict Sequential with initializers carrying dtype: BatchNormalization as the
    input normalizer, conv, MaxPooling, conv, dense head (a CARLA PilotNet shape)."""
    reference = randomize(keras.Sequential([
        keras.Input((*shape, 3)),
        keras.layers.BatchNormalization(name="batch_normalization_1"),
        keras.layers.Conv2D(5, 3, activation="relu", padding="same", name="conv2d_1"),
        keras.layers.MaxPooling2D(2, name="max_pooling2d_1"),
        keras.layers.Conv2D(7, 3, strides=2, activation="relu", name="conv2d_2"),
        keras.layers.Flatten(name="flatten_1"),
        keras.layers.Dense(8, activation="relu", name="dense_1"),
        keras.layers.Dense(1, name="dense_2")]))
    layers = [
        {"class_name": "BatchNormalization", "config": {
            "name": "batch_normalization_1", "trainable": True,
            "batch_input_shape": [None, *shape, 3], "dtype": "float32", "axis": -1,
            "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
            "beta_initializer": {"class_name": "Zeros", "config": {"dtype": "float32"}},
            "gamma_initializer": {"class_name": "Ones", "config": {"dtype": "float32"}}}},
        {"class_name": "Conv2D", "config": {
            "name": "conv2d_1", "filters": 5, "kernel_size": [3, 3], "strides": [1, 1],
            "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1],
            "activation": "relu", "use_bias": True,
            "kernel_initializer": initializer("VarianceScaling")}},
        {"class_name": "MaxPooling2D", "config": {
            "name": "max_pooling2d_1", "pool_size": [2, 2], "padding": "valid",
            "strides": [2, 2], "data_format": "channels_last"}},
        {"class_name": "Conv2D", "config": {
            "name": "conv2d_2", "filters": 7, "kernel_size": [3, 3], "strides": [2, 2],
            "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1],
            "activation": "relu", "use_bias": True,
            "kernel_initializer": initializer("VarianceScaling")}},
        {"class_name": "Flatten", "config": {"name": "flatten_1", "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 8, "activation": "relu",
                                           "use_bias": True,
                                           "kernel_initializer": initializer("VarianceScaling")}},
        {"class_name": "Dense", "config": {"name": "dense_2", "units": 1, "activation": "linear",
                                           "use_bias": True,
                                           "kernel_initializer": initializer("VarianceScaling")}},
    ]
    config = {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": layers}}
    names = [layer.name for layer in reference.layers]
    path = write_h5(tmp_path / "pilotnet.h5", config, keras2_weights(reference), names, "2.2.4")
    return path, reference


def donkey(tmp_path: Path, categorical: bool, shape: tuple[int, int] = (24, 32)
           ) -> tuple[Path, Any]:
    """tf.keras 2.x Functional with two heads, as a donkeycar pilot: linear (n_outputs0 angle,
    n_outputs1 throttle) or categorical (angle_out: 15-bin softmax, throttle_out: 20 bins)."""
    inputs = keras.Input((*shape, 3), name="img_in")
    x = keras.layers.Conv2D(4, 5, strides=2, activation="relu", name="conv2d_1")(inputs)
    x = keras.layers.Dropout(0.2, name="dropout_1")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="conv2d_2")(x)
    x = keras.layers.Flatten(name="flattened")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense_1")(x)
    if categorical:
        heads = [("angle_out", 15, "softmax"), ("throttle_out", 20, "softmax")]
    else:
        heads = [("n_outputs0", 1, "linear"), ("n_outputs1", 1, "linear")]
    outputs = [keras.layers.Dense(units, activation=act, name=name)(x)
               for name, units, act in heads]
    reference = randomize(keras.Model(inputs, outputs))

    def layer(class_name: str, name: str, inbound: str, **config: Any) -> dict[str, Any]:
        return {"name": name, "class_name": class_name,
                "config": {"name": name, "trainable": True, "dtype": "float32", **config},
                "inbound_nodes": [[[inbound, 0, 0, {}]]]}

    conv = {"padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1],
            "use_bias": True, "activation": "relu",
            "kernel_initializer": {"class_name": "GlorotUniform",
                                   "config": {"seed": None, "dtype": "float32"}}}
    layers = [
        {"name": "img_in", "class_name": "InputLayer", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, *shape, 3], "dtype": "float32",
                    "sparse": False, "name": "img_in"}},
        layer("Conv2D", "conv2d_1", "img_in", filters=4, kernel_size=[5, 5], strides=[2, 2],
              **conv),
        layer("Dropout", "dropout_1", "conv2d_1", rate=0.2, noise_shape=None, seed=None),
        layer("Conv2D", "conv2d_2", "dropout_1", filters=6, kernel_size=[3, 3], strides=[2, 2],
              **conv),
        layer("Flatten", "flattened", "conv2d_2", data_format="channels_last"),
        layer("Dense", "dense_1", "flattened", units=12, activation="relu", use_bias=True),
        *[layer("Dense", name, "dense_1", units=units, activation=act, use_bias=True)
          for name, units, act in heads]]
    config = {"class_name": "Model", "config": {
        "name": "model", "layers": layers, "input_layers": [["img_in", 0, 0]],
        "output_layers": [[name, 0, 0] for name, _, _ in heads]}}
    names = [layer.name for layer in reference.layers]
    path = write_h5(tmp_path / ("categorical.h5" if categorical else "linear.h5"), config,
                    keras2_weights(reference), names, "2.2.4-tf")
    return path, reference


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_genuine_tf_keras_file(tmp_path: Path) -> None:
    """A file written by tf.keras 2 itself (the tf-keras package): Lambda x/255 - 0.5,
    BatchNormalization, MaxPooling, a 15-bin softmax angle and a linear throttle."""
    tf_keras = pytest.importorskip("tf_keras")
    layers = tf_keras.layers
    inputs = tf_keras.Input((30, 40, 3), name="img_in")
    x = layers.Lambda(lambda t: t / 255.0 - 0.5, name="normalize")(inputs)
    x = layers.Conv2D(4, 5, strides=2, activation="relu", name="conv2d_1")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flattened")(x)
    original = tf_keras.Model(inputs, [layers.Dense(15, activation="softmax", name="angle_out")(x),
                                       layers.Dense(1, name="throttle_out")(x)])
    for layer in original.layers:
        layer.set_weights([RNG.uniform(0.5, 1.5, w.shape) if "variance" in v.name
                           else RNG.normal(0, 0.3, w.shape)
                           for v, w in zip(layer.weights, layer.get_weights(), strict=True)])
    path = tmp_path / "tfk.h5"
    original.save(path, save_format="h5")
    out = tmp_path / "pilot.keras"
    assert main(["adopt", str(path), "--out", str(out), "--crop", "0.2,0.1",
                 "--steering", "angle_out", "--decode", "bins:15:-1:1",
                 "--throttle", "throttle_out", "--lambda", "normalize=rescale:1/255:-0.5"]) == 0
    from drive_viz.model.dave2 import load_steering_model, model_contract
    from drive_viz.model.preprocess import preprocess_batch

    frames = list(RNG.integers(0, 256, (4, 90, 120, 3), dtype=np.uint8))
    x = preprocess_batch(frames, model_contract(out))
    for got, want in zip(outputs_of(load_steering_model(out), x),
                         original.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert read_model_file(path).format == "tf.keras HDF5"


def outputs_of(model: Any, x: np.ndarray) -> list[np.ndarray]:
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, list | tuple) else [out])]


# --------------------------------------------------------------------------------------------
# The loader


@pytest.mark.parametrize("function", [lambda_field_311(),
                                      [base64.b64encode(marshal_39_lambda()).decode(), None,
                                       None]], ids=["py311-bytecode", "py39-bytecode"])
def test_keras20_list_sequential_rebuilt_with_declared_lambda(tmp_path: Path,
                                                              function: Any) -> None:
    path, reference = behavioral_cloning(tmp_path, function)
    stored = read_model_file(path)
    assert stored.format == "Keras 2.x HDF5" and stored.keras_version == "2.0.8"
    with pytest.raises(ModelError) as refused:
        rebuild(stored, {})
    message = str(refused.value)
    assert "\n" not in message
    assert "'lambda_1' input (40, 80, 3)" in message and "127.5, 1" in message
    model = rebuild(stored, parse_declarations({"lambda_1": "rescale:1/127.5:-1"}))
    assert model.count_params() == reference.count_params()
    x = RNG.uniform(0, 255, (4, 40, 80, 3)).astype(np.float32)
    np.testing.assert_allclose(outputs_of(model, x)[0], outputs_of(reference, x)[0],
                               atol=1e-5, rtol=0)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    # Declared identity, the Lambda is removed: the rest of the network takes x / 127.5 - 1.
    model = rebuild(stored, parse_declarations({"lambda_1": "identity"}))
    np.testing.assert_allclose(outputs_of(model, x / 127.5 - 1)[0], outputs_of(reference, x)[0],
                               atol=1e-5, rtol=0)


def test_keras22_dict_sequential_with_initializer_dtype(tmp_path: Path) -> None:
    path, reference = pilotnet(tmp_path)
    stored = read_model_file(path)
    model = rebuild(stored, {})
    x = RNG.uniform(0, 255, (3, 36, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(outputs_of(model, x)[0], outputs_of(reference, x)[0],
                               atol=1e-5, rtol=0)
    moving_variance = model.get_layer("batch_normalization_1").moving_variance.numpy()
    np.testing.assert_array_equal(
        moving_variance, reference.get_layer("batch_normalization_1").moving_variance.numpy())


@pytest.mark.parametrize("categorical", [False, True], ids=["linear", "categorical"])
def test_tf_keras_functional_two_heads(tmp_path: Path, categorical: bool) -> None:
    path, reference = donkey(tmp_path, categorical)
    stored = read_model_file(path)
    assert stored.format == "tf.keras HDF5"
    model = rebuild(stored, {})
    assert output_names(model) == (["angle_out", "throttle_out"] if categorical
                                   else ["n_outputs0", "n_outputs1"])
    x = RNG.uniform(0, 1, (5, 24, 32, 3)).astype(np.float32)
    for got, want in zip(outputs_of(model, x), outputs_of(reference, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_keras3_archive_with_lambda_rebuilt_and_without_loaded_safely(tmp_path: Path) -> None:
    inputs = keras.Input((20, 30, 3), name="img")
    x = keras.layers.Lambda(lambda t: t / 127.5 - 1, name="norm")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.image.resize(t, (16, 24)), name="shrink")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, name="c2")(x)
    x = keras.layers.Flatten()(x)
    outputs = [keras.layers.Dense(1, name="angle")(x), keras.layers.Dense(1, name="thr")(x)]
    reference = randomize(keras.Model(inputs, outputs))
    reference.save(tmp_path / "lambda.keras")
    stored = read_model_file(tmp_path / "lambda.keras")
    assert stored.format == "Keras 3 .keras"
    with pytest.raises(ModelError, match=r"'norm' input \(20, 30, 3\) output not stored: "
                                         r"constants 127\.5, 1; 'shrink' input \(20, 30, 3\) "
                                         r"output not stored: constants 16, 24$"):
        rebuild(stored, {})
    model = rebuild(stored, parse_declarations({"norm": "rescale:1/127.5:-1",
                                                "shrink": "resize:16:24"}))
    x = RNG.uniform(0, 255, (3, 20, 30, 3)).astype(np.float32)
    for got, want in zip(outputs_of(model, x), outputs_of(reference, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

    plain = randomize(keras.Sequential([keras.Input((20, 30, 3)), keras.layers.Rescaling(1 / 255),
                                        keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                                        keras.layers.Dense(1)]))
    plain.compile("adam", "mse")  # saved with its optimizer's variables, which are not weights
    plain.optimizer.build(plain.trainable_variables)
    plain.save(tmp_path / "plain.keras")
    model = rebuild(read_model_file(tmp_path / "plain.keras"), {})
    np.testing.assert_allclose(outputs_of(model, x)[0], outputs_of(plain, x)[0], atol=1e-5)


# --------------------------------------------------------------------------------------------
# adopt end to end: the contract prepares the frame, the adopted file reproduces the network


def test_adopted_files_reproduce_the_original_networks_on_contract_inputs(tmp_path: Path
                                                                          ) -> None:
    from drive_viz.model.adopt import adopt
    from drive_viz.model.dave2 import card_path, load_steering_model, model_contract
    from drive_viz.model.preprocess import preprocess_batch

    frames = RNG.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8)
    cases = [
        (behavioral_cloning(tmp_path, lambda_field_311()),
         {"lambdas": {"lambda_1": "rescale:1/127.5:-1"}, "crop": (0.3, 0.1, 0, 0)}),
        (pilotnet(tmp_path), {"colour": "bgr", "crop": (30, 10, 8, 8), "interpolation": "area"}),
        (donkey(tmp_path, False), {"steering": "n_outputs0", "throttle": "1", "scale": 1 / 255}),
        (donkey(tmp_path, True), {"steering": 0, "decode": "bins:15:-1:1",
                                  "throttle": "throttle_out", "throttle_decode": "bins:20:0:1",
                                  "scale": 1 / 255}),
    ]
    for (path, reference), options in cases:
        out = tmp_path / f"adopted_{path.stem}.keras"
        adopt(path, out, **options)
        contract = model_contract(out)
        model = load_steering_model(out)
        assert json.loads(card_path(out).read_text())["adopted_from"]["sha256"]
        x = preprocess_batch(list(frames), contract)
        assert x.shape == (3, *reference.inputs[0].shape[1:])
        for got, want in zip(outputs_of(model, x), outputs_of(reference, x), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert contract.steering.output == "angle_out" and contract.throttle.width == 20


# --------------------------------------------------------------------------------------------
# Refusals: one line, exit 2, nothing written


def refused(tmp_path: Path, capsys: Any, *argv: str) -> str:
    """Run ``drive-viz adopt`` expecting a refusal; check nothing was written anywhere in
    ``tmp_path`` (no DST, no card, no temp file, no folder); return the message."""
    before = sorted(p.name for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["adopt", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drive-viz: error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    return err


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "new" / "dst.keras")
    bc, _ = behavioral_cloning(tmp_path, lambda_field_311())
    message = refused(tmp_path, capsys, str(bc), "--out", out)
    assert "'lambda_1' input (40, 80, 3)" in message and "constants 127.5, 1" in message

    # A declaration that changes the shape the dense head was trained on.
    message = refused(tmp_path, capsys, str(bc), "--out", out, "--lambda",
                      "lambda_1=resize:30:60")
    assert "'dense_1' (Dense) stores kernel of shape (1944, 10)" in message
    assert "(624, 10)" in message and "lambda_1=resize:30:60" in message
    # ... or leaves a conv layer too little input: 20 rows - 14 cropped -> 1 row after conv 1.
    message = refused(tmp_path, capsys, str(bc), "--out", out, "--lambda",
                      "lambda_1=resize:20:40")
    assert "'convolution2d_2' (Convolution2D) cannot take input (1, 18, 4)" in message
    assert "lambda_1=resize:20:40" in message
    message = refused(tmp_path, capsys, str(bc), "--out", out, "--lambda",
                      "dense_1=identity", "--lambda", "lambda_1=identity")
    assert "'dense_1' is a Dense layer, not a Lambda" in message
    refused(tmp_path, capsys, str(bc), "--out", out, "--lambda", "lambda_1=rescale:x:1")

    # A layer type that cannot be rebuilt from built-in layers, named with its type.
    pilot, reference = pilotnet(tmp_path)
    with h5py.File(pilot, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"].insert(3, {"class_name": "LSTM",
                                              "config": {"name": "lstm_1", "units": 4}})
        h5.attrs["model_config"] = json.dumps(config).encode()
    message = refused(tmp_path, capsys, str(pilot), "--out", out)
    assert "'lstm_1' (LSTM)" in message
    # Values no layer can take, and Theano's channels-first ordering.
    for key, value, expected in (("filters", "many", "'conv2d_1' (Conv2D): config not usable"),
                                 ("data_format", "channels_first", "channels-first")):
        pilot, reference = pilotnet(tmp_path)
        with h5py.File(pilot, "r+") as h5:
            config = json.loads(h5.attrs["model_config"])
            config["config"]["layers"][1]["config"][key] = value
            h5.attrs["model_config"] = json.dumps(config).encode()
        assert expected in refused(tmp_path, capsys, str(pilot), "--out", out)

    # Weights stored for a layer the architecture does not have: parameter counts differ.
    pilot, reference = pilotnet(tmp_path)
    names = [layer.name for layer in reference.layers]
    weights = keras2_weights(reference)
    weights["ghost"] = [("kernel", np.zeros((3, 3), np.float32))]
    with h5py.File(pilot, "r") as h5:
        config = json.loads(h5.attrs["model_config"])
    write_h5(pilot, config, weights, [*names, "ghost"], "2.2.4")
    message = refused(tmp_path, capsys, str(pilot), "--out", out)
    assert f"stores {reference.count_params() + 9:,} parameters" in message
    assert f"rebuilt model has {reference.count_params():,}" in message

    # Truncated files, .tflite, SavedModel folders.
    linear, _ = donkey(tmp_path, False)
    data = linear.read_bytes()
    linear.write_bytes(data[: len(data) // 3])
    assert "truncated or corrupt" in refused(tmp_path, capsys, str(linear), "--out", out)
    archive = tmp_path / "cut.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    assert "truncated or corrupt" in refused(tmp_path, capsys, str(archive), "--out", out)
    (tmp_path / "pilot.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    assert "no gradients" in refused(tmp_path, capsys, str(tmp_path / "pilot.tflite"),
                                     "--out", out)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"\x08\x01")
    assert "SavedModel" in refused(tmp_path, capsys, str(tmp_path / "saved"), "--out", out)


def test_declared_output_shape_is_checked(tmp_path: Path) -> None:
    field = lambda_field_311()
    path, _ = behavioral_cloning(tmp_path, field)
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"][0]["config"]["output_shape"] = [40, 80, 3]
        h5.attrs["model_config"] = json.dumps(config).encode()
    stored = read_model_file(path)
    with pytest.raises(ModelError, match=r"declared resize:30:60 gives \(30, 60, 3\) but the "
                                         r"file says it outputs \(40, 80, 3\)"):
        rebuild(stored, parse_declarations({"lambda_1": "resize:30:60"}))


def test_dry_run_writes_nothing_and_info_model_describes(tmp_path: Path, capsys: Any) -> None:
    path, reference = donkey(tmp_path, True)
    out = tmp_path / "pilot.keras"
    argv = ["adopt", str(path), "--out", str(out), "--steering", "angle_out",
            "--decode", "bins:15:-1:1", "--scale", "1/255"]
    assert main([*argv, "--dry-run"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["categorical.h5"]
    dry = capsys.readouterr().out
    assert f"parameters: {reference.count_params():,}" in dry
    assert "softmax over 15 bins from -1 to 1" in dry and "x 0.00392157" in dry
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["info-model", str(out)]) == 0
    info = capsys.readouterr().out
    assert "adopted from: categorical.h5 (tf.keras HDF5, keras_version 2.2.4-tf" in info
    assert "angle_out (15,), throttle_out (20,)" in info


def test_info_model_on_the_shipped_model(capsys: Any) -> None:
    from drive_viz.model.dave2 import SHIPPED_MODEL

    assert main(["info-model", str(SHIPPED_MODEL)]) == 0
    text = capsys.readouterr().out
    # NVIDIA's DAVE-2 as published: 252,219 parameters, conv5 output 1x18x64.
    assert "parameters: 252,219" in text and "(1, 18, 64)" in text
    assert "crop top 40% bottom 10%" in text and "resize to 200x66 (area); YUV" in text


def test_adopted_two_output_model_runs_through_every_command(tmp_path: Path) -> None:
    """Smoke: a donkeycar-like two-head pilot adopted, then replayed (20 synthetic frames),
    inspected, evaluated and visualized like the shipped model."""
    path, reference = donkey(tmp_path, False, shape=(48, 64))
    model = str(tmp_path / "pilot.keras")
    assert main(["adopt", str(path), "--out", model, "--crop", "0.3,0.1",
                 "--steering", "n_outputs0", "--throttle", "n_outputs1", "--scale", "1/255"]) == 0
    rec = str(tmp_path / "rec")
    assert main(["synth", rec, "--frames", "20", "--seed", "3"]) == 0
    run = tmp_path / "run"
    assert main(["replay", rec, "--model", model, "--out", str(run), "--no-video",
                 "--quiet"]) == 0
    import pandas as pd

    from drive_viz.model.contract import InputContract
    from drive_viz.model.preprocess import preprocess_batch
    from drive_viz.recording.reader import open_recording

    table = pd.read_parquet(run / "frames.parquet")
    recording = open_recording(rec)
    frames = [recording.image(row, recording.cameras[0]) for row in range(20)]
    contract = InputContract.from_json(
        json.loads((tmp_path / "pilot.card.json").read_text())["contract"])
    angle, throttle = outputs_of(reference, preprocess_batch(frames, contract))
    np.testing.assert_allclose(table["steer_pred"].to_numpy(), angle[:, 0], atol=1e-4)
    np.testing.assert_allclose(table["throttle_pred"].to_numpy(), throttle[:, 0], atol=1e-4)
    assert main(["inspect", rec, "--frame", "3", "--model", model,
                 "--out", str(tmp_path / "inspect.png")]) == 0
    assert main(["features", "--model", model, "--layer", "conv2d_1", "--filters", "0-1",
                 "--steps", "4", "--out", str(tmp_path / "features.png")]) == 0
    assert main(["evaluate", rec, "--model", model, "--out", str(tmp_path / "eval"),
                 "--frames", "4", "--steps", "4", "--methods", "saliency,gradcam"]) == 0
