"""Read a Keras model file as data and rebuild it from Keras built-in layers.

Nothing from the file is executed. A legacy HDF5 file (Keras 1.x/2.x, tf.keras 2.x, or Keras 3
in legacy mode) holds its architecture as JSON in the ``model_config`` attribute and its
weights under ``model_weights/<layer>/`` (``layer_names`` / ``weight_names`` attributes);
both are read with h5py. The architecture (Sequential as a list or a dict, or a Functional
graph) is rebuilt with the built-in layers in ``BUILDERS``, old field names translated, and
the weights are copied by layer name with shape checks; the parameter count of the result
must equal the count stored in the file. A Keras 3 ``.keras`` archive's ``config.json`` is
read the same way first; without Lambda layers it is loaded by Keras with ``safe_mode=True``.

Lambda layers are never deserialized: each must be declared as ``rescale:SCALE:OFFSET``
(a Rescaling layer), ``resize:HEIGHT:WIDTH`` (a bilinear Resizing layer) or ``identity``
(removed).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.errors import ModelError
from drive_viz.model.lambda_code import code_constants, decode_function_field

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Largest members of a .keras archive read (a zip can unpack to far more than its size).
ARCHIVE_LIMITS = {"config.json": 64 << 20, "metadata.json": 1 << 20,
                  "model.weights.h5": 4 << 30}
ACTIVATIONS = frozenset({
    "linear", "relu", "elu", "selu", "tanh", "sigmoid", "hard_sigmoid", "softmax", "softplus",
    "softsign", "swish", "silu", "gelu", "exponential", "relu6", "leaky_relu", "mish"})
#: Class names of other Keras versions -> the Keras 3 layer that replaces them.
ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D",
           "AvgPool2D": "AveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
           "GlobalMaxPool2D": "GlobalMaxPooling2D"}


@dataclass
class LayerSpec:
    """One layer of a stored architecture: its class, config, and for each call (node) the
    (layer, node, tensor) triples it takes as input."""

    name: str
    class_name: str
    config: dict[str, Any]
    nodes: list[list[tuple[str, int, int]]] = field(default_factory=list)


@dataclass
class StoredModel:
    """A model file read as data: architecture, weights by layer, and what the file says."""

    path: Path
    format: str  # "Keras 2.x HDF5", "tf.keras HDF5", "Keras 3 HDF5", "Keras 3 .keras", ...
    keras_version: str | None
    layers: list[LayerSpec]
    inputs: list[tuple[str, int, int]]
    outputs: list[tuple[str, int, int]]
    input_shapes: dict[str, tuple[int | None, ...]]  # input layer name -> shape without batch
    weights: dict[str, list[np.ndarray]]  # layer name (or Keras 3 path) -> arrays in order
    stored_parameters: int
    archive_config: dict[str, Any] | None = None  # a .keras file's config.json

    def lambdas(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.class_name == "Lambda"]


@dataclass(frozen=True)
class LambdaDeclaration:
    """What a Lambda layer is declared to do: ``rescale`` (x * scale + offset), ``resize``
    (bilinear, to height x width) or ``identity``."""

    kind: str
    scale: float = 1.0
    offset: float = 0.0
    height: int = 0
    width: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str, where: str) -> LambdaDeclaration:
        """``rescale:SCALE:OFFSET`` (fractions such as 1/255 allowed), ``resize:H:W`` or
        ``identity``; ModelError naming ``where`` otherwise."""
        parts = text.strip().split(":")
        try:
            if parts == ["identity"]:
                return cls("identity", text=text)
            if parts[0] == "rescale" and len(parts) == 3:
                return cls("rescale", scale=parse_number(parts[1]),
                           offset=parse_number(parts[2]), text=text)
            if parts[0] == "resize" and len(parts) == 3:
                height, width = int(parts[1]), int(parts[2])
                if height >= 1 and width >= 1:
                    return cls("resize", height=height, width=width, text=text)
        except (ValueError, ZeroDivisionError):
            pass
        raise ModelError(f"{where}: {text!r} is not a Lambda declaration (expected "
                         "rescale:SCALE:OFFSET, resize:HEIGHT:WIDTH or identity)")


def parse_number(text: str) -> float:
    """``"0.5"``, ``"-1"`` or a fraction such as ``"1/127.5"`` -> float; ValueError otherwise."""
    numerator, slash, denominator = text.strip().partition("/")
    value = float(numerator) / float(denominator) if slash else float(numerator)
    if not np.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_declarations(declarations: Mapping[str, str] | None) -> dict[str, LambdaDeclaration]:
    """Lambda layer name -> its parsed declaration."""
    return {name: LambdaDeclaration.parse(text, f"Lambda declaration {name}={text}")
            for name, text in (declarations or {}).items()}


# ---------------------------------------------------------------------------------------------
# Reading files as data


def read_model_file(path: str | Path) -> StoredModel:
    """A Keras model file read with h5py / zipfile only: nothing in it is executed.

    SavedModel folders and .tflite files are refused with the reason."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            raise ModelError(
                f"{path}: a TensorFlow SavedModel holds a traced graph that cannot be rebuilt "
                "into Keras layers without executing it; save the model as .keras or .h5 from "
                "its training code (model.save('model.keras')) and adopt that file")
        raise ModelError(f"{path}: is a folder, not a model file (.keras or .h5)")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if path.suffix.lower() == ".tflite" or head[4:8] == b"TFL3":
        raise ModelError(f"{path}: a TensorFlow Lite model has no gradients, which every "
                         "attention map needs; adopt the .keras or .h5 file it was converted "
                         "from")
    if path.suffix.lower() == ".pb":
        raise ModelError(f"{path}: a frozen TensorFlow graph cannot be rebuilt into Keras "
                         "layers without executing it; save the model as .keras or .h5")
    if head[:4] == b"PK\x03\x04":
        return _read_keras_archive(path)
    if head == HDF5_SIGNATURE or _has_hdf5_userblock(path):
        return _read_hdf5(path)
    raise ModelError(f"{path}: not a Keras model file (neither a .keras archive nor HDF5)")


def _has_hdf5_userblock(path: Path) -> bool:
    """HDF5 may start at 512, 1024, 2048, ... bytes (a user block)."""
    with path.open("rb") as handle:
        offset = 512
        while True:
            handle.seek(offset)
            chunk = handle.read(8)
            if len(chunk) < 8:
                return False
            if chunk == HDF5_SIGNATURE:
                return True
            offset *= 2


def _open_hdf5(source: Path | bytes, where: Path) -> Any:
    """An HDF5 file (by path, or in memory) opened read-only."""
    import h5py

    try:
        return h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/ValueError for broken files
        raise ModelError(f"{where}: not a readable HDF5 file (truncated or corrupt: "
                         f"{_one_line(exc)})") from None


def _attr_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_text(value.item())
    return str(value)


def _attr_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [_attr_text(v) or "" for v in np.asarray(value).ravel()]


def _read_dataset(group: Any, name: str, where: str) -> np.ndarray:
    """One weight array, refusing links to other files and external/virtual storage."""
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        raise ModelError(f"{where}: weight {name!r} is listed but not stored")
    if isinstance(link, h5py.ExternalLink):
        raise ModelError(f"{where}: weight {name!r} links to another file; refused")
    dataset = group[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ModelError(f"{where}: weight {name!r} is not an array")
    if dataset.external or dataset.is_virtual:
        raise ModelError(f"{where}: weight {name!r} is stored outside this file; refused")
    array = np.asarray(dataset[()])
    if not np.issubdtype(array.dtype, np.floating):
        raise ModelError(f"{where}: weight {name!r} is {array.dtype}, not floating point")
    return array


def _read_hdf5(path: Path) -> StoredModel:
    with _open_hdf5(path, path) as h5:
        try:
            config_text = _attr_text(h5.attrs.get("model_config"))
            keras_version = _attr_text(h5.attrs.get("keras_version"))
            root = h5["model_weights"] if "model_weights" in h5 else h5
            if config_text is None:
                raise ModelError(f"{path}: holds weights only, no architecture "
                                 "(saved with save_weights); save the whole model instead")
            weights: dict[str, list[np.ndarray]] = {}
            for layer_name in _attr_list(root.attrs.get("layer_names")):
                if layer_name not in root:
                    raise ModelError(f"{path}: weights of layer {layer_name!r} are listed but "
                                     "not stored (truncated file?)")
                group = root[layer_name]
                names = _attr_list(group.attrs.get("weight_names"))
                arrays = [_read_dataset(group, name, f"{path}: layer {layer_name!r}")
                          for name in names]
                if arrays:
                    weights[layer_name] = arrays
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - reading a damaged file raises many types
            raise ModelError(f"{path}: cannot read the HDF5 contents (truncated or corrupt: "
                             f"{_one_line(exc)})") from None
    config = _parse_json(config_text, f"{path}: model_config")
    if keras_version and keras_version.startswith("3."):
        format_name = "Keras 3 HDF5"
    elif keras_version and (keras_version.endswith("-tf")  # tf.keras in TF 1.x-2.3: "2.2.4-tf"
                            or _version(keras_version) >= (2, 4)):  # 2.4+: Keras is tf.keras
        format_name = "tf.keras HDF5"
    elif keras_version and keras_version.startswith("1."):
        format_name = "Keras 1.x HDF5"
    else:
        format_name = "Keras 2.x HDF5"
    layers, inputs, outputs, shapes = _parse_architecture(config, path)
    return StoredModel(path, format_name, keras_version, layers, inputs, outputs, shapes,
                       weights, sum(int(a.size) for arrays in weights.values() for a in arrays))


def _version(text: str) -> tuple[int, ...]:
    """``"2.13.1"`` -> (2, 13); unparsable parts count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split(".")[:2])


def _read_keras_archive(path: Path) -> StoredModel:
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            names = set(sizes)
            if "config.json" not in names:
                raise ModelError(f"{path}: a zip without config.json, not a .keras model")
            for name, limit in ARCHIVE_LIMITS.items():
                if sizes.get(name, 0) > limit:
                    raise ModelError(f"{path}: {name} unpacks to {sizes[name]:,} bytes, more "
                                     f"than the {limit:,} accepted")
            config_text = archive.read("config.json").decode("utf-8")
            metadata = (_parse_json(archive.read("metadata.json").decode("utf-8"),
                                    f"{path}: metadata.json")
                        if "metadata.json" in names else {})
            weights_bytes = (archive.read("model.weights.h5")
                             if "model.weights.h5" in names else None)
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, EOFError) as exc:
        raise ModelError(f"{path}: not a readable .keras archive (truncated or corrupt: "
                         f"{_one_line(exc)})") from None
    if weights_bytes is None:
        raise ModelError(f"{path}: the archive holds no model.weights.h5")
    config = _parse_json(config_text, f"{path}: config.json")
    weights: dict[str, list[np.ndarray]] = {}
    with _open_hdf5(weights_bytes, path) as h5:
        try:
            if "layers" in h5:  # the optimizer's variables, if saved, live beside it
                _collect_keras3_weights(h5["layers"], "layers", weights, path)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot read model.weights.h5 (truncated or corrupt: "
                             f"{_one_line(exc)})") from None
    layers, inputs, outputs, shapes = _parse_architecture(config, path)
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return StoredModel(path, "Keras 3 .keras", version, layers, inputs, outputs, shapes,
                       weights, sum(int(a.size) for arrays in weights.values() for a in arrays),
                       archive_config=config)


def _collect_keras3_weights(group: Any, prefix: str, out: dict[str, list[np.ndarray]],
                            path: Path) -> None:
    """``layers/<path>/vars/<i>`` datasets -> out[<path>] in index order."""
    import h5py

    for key in group:
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise ModelError(f"{path}: model.weights.h5 links to another file; refused")
        item = group[key]
        if not isinstance(item, h5py.Group):
            continue
        here = f"{prefix}/{key}" if prefix else key
        if key == "vars":
            indices = sorted(item, key=lambda k: int(k) if k.isdigit() else -1)
            arrays = [_read_dataset(item, k, f"{path}: {here}") for k in indices]
            if arrays:
                out[prefix] = arrays
        else:
            _collect_keras3_weights(item, here, out, path)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: not valid JSON ({exc})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Architecture configs of every Keras version -> LayerSpec lists


def _parse_architecture(config: Any, path: Path
                        ) -> tuple[list[LayerSpec], list[tuple[str, int, int]],
                                   list[tuple[str, int, int]], dict[str, tuple]]:
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelError(f"{path}: the stored architecture is not a Keras model config")
    class_name = config["class_name"]
    body = config.get("config")
    if class_name == "Sequential":
        return _sequential(body, path)
    if class_name in ("Model", "Functional"):
        return _functional(body, path)
    raise ModelError(f"{path}: the model is a {class_name!r}, not a Sequential or Functional "
                     "model; it cannot be rebuilt")


def _spec(entry: Any, path: Path) -> LayerSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ModelError(f"{path}: a layer entry of the architecture is malformed")
    config = entry["config"]
    name = entry.get("name") or config.get("name")
    if not isinstance(name, str):
        raise ModelError(f"{path}: a layer of the architecture has no name")
    return LayerSpec(name, str(entry.get("class_name")), config)


def _shape_of(config: dict[str, Any]) -> tuple | None:
    for key in ("batch_input_shape", "batch_shape"):
        if config.get(key):
            return tuple(config[key][1:])
    if config.get("input_shape"):
        return tuple(config["input_shape"])
    return None


def _sequential(body: Any, path: Path):
    entries = body if isinstance(body, list) else (body or {}).get("layers")  # 2.0/2.1: a list
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{path}: the Sequential model has no layers")
    specs = [_spec(e, path) for e in entries]
    if specs[0].class_name == "InputLayer":
        input_spec = specs.pop(0)
    else:
        shape = _shape_of(specs[0].config)
        if shape is None and isinstance(body, dict) and body.get("build_input_shape"):
            shape = tuple(body["build_input_shape"][1:])
        if shape is None:
            raise ModelError(f"{path}: the Sequential model stores no input shape")
        input_spec = LayerSpec(specs[0].name + "_input", "InputLayer",
                               {"batch_input_shape": [None, *shape]})
    previous = (input_spec.name, 0, 0)
    for spec in specs:
        spec.nodes = [[previous]]
        previous = (spec.name, 0, 0)
    shape = _shape_of(input_spec.config)
    if shape is None:
        raise ModelError(f"{path}: the input layer stores no shape")
    return specs, [(input_spec.name, 0, 0)], [previous], {input_spec.name: shape}


def _history(node: Any) -> list[tuple[str, int, int]]:
    """Inputs of one inbound node in the Keras 1/2 list form or the Keras 3 dict form."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        found: list[tuple[str, int, int]] = []

        def visit(value: Any) -> None:
            if isinstance(value, dict):
                if value.get("class_name") == "__keras_tensor__":
                    name, node_index, tensor_index = value["config"]["keras_history"]
                    found.append((name, int(node_index), int(tensor_index)))
                else:
                    for v in value.values():
                        visit(v)
            elif isinstance(value, list):
                for v in value:
                    visit(v)

        visit(node.get("args", []))
        return found
    return [(str(t[0]), int(t[1]), int(t[2])) for t in node]


def _triples(value: Any) -> list[tuple[str, int, int]]:
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]  # Keras 3 stores a single input/output unwrapped
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value or []]


def _functional(body: Any, path: Path):
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise ModelError(f"{path}: the Functional model config has no layer list")
    specs: list[LayerSpec] = []
    shapes: dict[str, tuple] = {}
    for entry in body["layers"]:
        spec = _spec(entry, path)
        if spec.class_name == "InputLayer":
            shape = _shape_of(spec.config)
            if shape is None:
                raise ModelError(f"{path}: input layer {spec.name!r} stores no shape")
            shapes[spec.name] = shape
            continue
        try:
            spec.nodes = [_history(node) for node in entry.get("inbound_nodes") or []]
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelError(f"{path}: layer {spec.name!r} has malformed inbound nodes") from None
        specs.append(spec)
    try:
        inputs, outputs = _triples(body.get("input_layers")), _triples(body.get("output_layers"))
    except (TypeError, ValueError, IndexError):
        raise ModelError(f"{path}: malformed input/output layer lists") from None
    if not inputs or not outputs:
        raise ModelError(f"{path}: the Functional model names no inputs or outputs")
    return specs, inputs, outputs, shapes


# ---------------------------------------------------------------------------------------------
# Rebuilding with Keras built-in layers


def _first(config: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def _activation(config: dict[str, Any], spec: LayerSpec) -> str:
    value = config.get("activation", "linear")
    if isinstance(value, dict):  # Keras 3 may serialize a built-in activation as an object
        value = value.get("config") if isinstance(value.get("config"), str) else None
    if value is None:
        value = "linear"
    if value not in ACTIVATIONS:
        raise ModelError(f"layer {spec.name!r} ({spec.class_name}): activation {value!r} is "
                         "not a Keras built-in")
    return value


def _channels_last(config: dict[str, Any], spec: LayerSpec) -> None:
    value = _first(config, "data_format", "dim_ordering", default="channels_last")
    if value not in ("channels_last", "tf", "default"):
        raise ModelError(f"layer {spec.name!r} ({spec.class_name}): channels-first data "
                         f"({value}) is not supported")


def _pair(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _padding(config: dict[str, Any], spec: LayerSpec) -> str:
    value = _first(config, "padding", "border_mode", default="valid")
    if value not in ("valid", "same"):
        raise ModelError(f"layer {spec.name!r} ({spec.class_name}): padding {value!r} is "
                         "not supported")
    return value


def _conv2d(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
    _channels_last(c, spec)
    kernel = c.get("kernel_size") or (c.get("nb_row"), c.get("nb_col"))
    return keras.layers.Conv2D(
        _first(c, "filters", "nb_filter"), _pair(kernel),
        strides=_pair(_first(c, "strides", "subsample", default=1)),
        padding=_padding(c, spec), dilation_rate=_pair(_first(c, "dilation_rate",
                                                              "atrous_rate", default=1)),
        groups=c.get("groups", 1), activation=_activation(c, spec),
        use_bias=_first(c, "use_bias", "bias", default=True), name=spec.name)


def _dense(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
    return keras.layers.Dense(_first(c, "units", "output_dim"), activation=_activation(c, spec),
                              use_bias=_first(c, "use_bias", "bias", default=True),
                              name=spec.name)


def _pooling(layer: str) -> Callable[[Any, dict[str, Any], LayerSpec], Any]:
    def build(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
        _channels_last(c, spec)
        return getattr(keras.layers, layer)(
            pool_size=_pair(_first(c, "pool_size", default=(2, 2))),
            strides=_pair(c.get("strides")), padding=_padding(c, spec), name=spec.name)
    return build


def _global_pooling(layer: str) -> Callable[[Any, dict[str, Any], LayerSpec], Any]:
    def build(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
        _channels_last(c, spec)
        return getattr(keras.layers, layer)(keepdims=bool(c.get("keepdims", False)),
                                            name=spec.name)
    return build


def _batch_norm(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
    if c.get("mode", 0) != 0:
        raise ModelError(f"layer {spec.name!r} (BatchNormalization): Keras 1 mode "
                         f"{c['mode']} is not supported")
    axis = c.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise ModelError(f"layer {spec.name!r} (BatchNormalization): axis {axis} is not "
                             "supported")
        axis = axis[0]
    return keras.layers.BatchNormalization(
        axis=axis, momentum=c.get("momentum", 0.99), epsilon=c.get("epsilon", 1e-3),
        center=c.get("center", True), scale=c.get("scale", True), name=spec.name)


def _flatten(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
    _channels_last(c, spec)
    return keras.layers.Flatten(name=spec.name)


def _dropout(layer: str) -> Callable[[Any, dict[str, Any], LayerSpec], Any]:
    def build(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
        return getattr(keras.layers, layer)(_first(c, "rate", "p", default=0.0), name=spec.name)
    return build


def _cropping(keras: Any, c: dict[str, Any], spec: LayerSpec) -> Any:
    _channels_last(c, spec)
    cropping = c.get("cropping", ((0, 0), (0, 0)))
    if isinstance(cropping, list):
        cropping = tuple(tuple(v) if isinstance(v, list) else v for v in cropping)
    return keras.layers.Cropping2D(cropping, name=spec.name)


BUILDERS: dict[str, Callable[[Any, dict[str, Any], LayerSpec], Any]] = {
    "Conv2D": _conv2d,
    "Dense": _dense,
    "Flatten": _flatten,
    "Dropout": _dropout("Dropout"),
    "SpatialDropout2D": _dropout("SpatialDropout2D"),
    "MaxPooling2D": _pooling("MaxPooling2D"),
    "AveragePooling2D": _pooling("AveragePooling2D"),
    "GlobalAveragePooling2D": _global_pooling("GlobalAveragePooling2D"),
    "GlobalMaxPooling2D": _global_pooling("GlobalMaxPooling2D"),
    "BatchNormalization": _batch_norm,
    "Activation": lambda keras, c, s: keras.layers.Activation(_activation(c, s), name=s.name),
    "ReLU": lambda keras, c, s: keras.layers.ReLU(
        max_value=c.get("max_value"), negative_slope=c.get("negative_slope", 0.0),
        threshold=c.get("threshold", 0.0), name=s.name),
    "ELU": lambda keras, c, s: keras.layers.ELU(alpha=c.get("alpha", 1.0), name=s.name),
    "LeakyReLU": lambda keras, c, s: keras.layers.LeakyReLU(
        negative_slope=_first(c, "negative_slope", "alpha", default=0.3), name=s.name),
    "Cropping2D": _cropping,
    "Resizing": lambda keras, c, s: keras.layers.Resizing(
        c["height"], c["width"], interpolation=c.get("interpolation", "bilinear"),
        crop_to_aspect_ratio=bool(c.get("crop_to_aspect_ratio", False)), name=s.name),
    "Rescaling": lambda keras, c, s: keras.layers.Rescaling(
        c.get("scale", 1.0), offset=c.get("offset", 0.0), name=s.name),
    "Concatenate": lambda keras, c, s: keras.layers.Concatenate(axis=c.get("axis", -1),
                                                                name=s.name),
    "Add": lambda keras, c, s: keras.layers.Add(name=s.name),
}


def shape_text(shape: Any) -> str:
    """A tensor shape without its batch axis, as text: ``(66, 200, 3)``, ``(10,)``."""
    dims = tuple(shape)[1:] if shape is not None else ()
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ("," if len(dims) == 1
                                                                          else "") + ")"


def check_layer_types(stored: StoredModel) -> None:
    """ModelError naming every layer whose type cannot be rebuilt from built-in layers."""
    unknown = [f"{s.name!r} ({s.class_name})" for s in stored.layers
               if ALIASES.get(s.class_name, s.class_name) not in BUILDERS
               and s.class_name != "Lambda"]
    if unknown:
        raise ModelError(f"{stored.path}: layer(s) {', '.join(unknown)} cannot be rebuilt from "
                         f"Keras built-in layers (supported: {', '.join(sorted(BUILDERS))}, "
                         "and declared Lambda layers)")


def rebuild(stored: StoredModel, declarations: Mapping[str, LambdaDeclaration]) -> Any:
    """A Keras 3 model of built-in layers with the stored weights; ModelError if a layer,
    a Lambda, a declaration, a weight shape or the parameter count does not fit.

    The stored input shapes are kept: input (N, H, W, C) float32 as the file declares."""
    check_layer_types(stored)
    _check_declarations(stored, declarations)
    if stored.archive_config is not None and not stored.lambdas():
        model = _load_safe(stored)
    else:
        model = _build_graph(stored, declarations)
        _copy_weights(stored, model, declarations)
    if model.count_params() != stored.stored_parameters:
        raise ModelError(f"{stored.path}: the file stores {stored.stored_parameters:,} "
                         f"parameters but the rebuilt model has {model.count_params():,}; "
                         "refusing a partial model")
    return model


def _check_declarations(stored: StoredModel, declarations: Mapping[str, LambdaDeclaration]
                        ) -> None:
    names = {s.name: s for s in stored.layers}
    for name in declarations:
        if name not in names:
            raise ModelError(f"{stored.path}: declared Lambda {name!r} is not a layer of the "
                             "model")
        if names[name].class_name != "Lambda":
            raise ModelError(f"{stored.path}: {name!r} is a {names[name].class_name} layer, "
                             "not a Lambda; only Lambda layers are declared")
    undeclared = [s for s in stored.lambdas() if s.name not in declarations]
    if not undeclared:
        return
    shapes = _lambda_input_shapes(stored, declarations)
    described = []
    for spec in undeclared:
        stored_output = spec.config.get("output_shape")
        output = (shape_text([None, *stored_output]) if isinstance(stored_output, list)
                  and all(isinstance(d, int | None) for d in stored_output)
                  else "not stored")
        raw = decode_function_field(spec.config.get("function"))
        if raw is None:
            function = spec.config.get("function")
            if isinstance(function, dict):  # Keras 3: {"class_name": "function", "config": NAME}
                function = function.get("config")
            constants = (f"named function {function!r}, no code stored"
                         if isinstance(function, str) else "no code stored")
        else:
            values, how = code_constants(raw)
            constants = ("constants " + ", ".join(_number(v) for v in values)
                         + (" (scanned: code of another Python version)"
                            if how == "scanned" else "")
                         if values else "no numeric constants could be read from its code")
        arguments = spec.config.get("arguments")
        if isinstance(arguments, dict) and arguments:
            constants += f", arguments {json.dumps(arguments, sort_keys=True)}"
        described.append(f"{spec.name!r} input {shapes.get(spec.name, '?')} output {output}: "
                         f"{constants}")
    raise ModelError(
        f"{stored.path}: refused: Lambda layers hold code that is never run; declare each "
        "as rescale:SCALE:OFFSET, resize:HEIGHT:WIDTH or identity: " + "; ".join(described))


def _number(value: float) -> str:
    return repr(value) if isinstance(value, int) else repr(float(value))


def _lambda_input_shapes(stored: StoredModel, declarations: Mapping[str, LambdaDeclaration]
                         ) -> dict[str, str]:
    """Input shape of each Lambda, found by building the graph up to it (an undeclared
    Lambda passes its input through, so later shapes may be unknown)."""
    shapes: dict[str, str] = {}

    def note(spec: LayerSpec, tensors: list[Any]) -> None:
        if spec.class_name == "Lambda":
            shapes[spec.name] = " + ".join(shape_text(t.shape) for t in tensors)

    try:
        _build_graph(stored, declarations, on_lambda=note, tolerant=True)
    except ModelError:
        pass
    return shapes


def _build_graph(stored: StoredModel, declarations: Mapping[str, LambdaDeclaration],
                 on_lambda: Callable[[LayerSpec, list[Any]], None] | None = None,
                 tolerant: bool = False) -> Any:
    import keras

    tensors: dict[tuple[str, int, int], Any] = {}
    model_inputs = []
    for name, shape in stored.input_shapes.items():
        tensor = keras.Input(shape=shape, name=name)
        tensors[(name, 0, 0)] = tensor
        model_inputs.append(tensor)
    declared = [f"{n}={d.text}" for n, d in declarations.items() if d.kind != "identity"]
    for spec in stored.layers:
        layer = None
        for node_index, node in enumerate(spec.nodes):
            missing = [t for t in node if t not in tensors]
            if missing:
                raise ModelError(f"{stored.path}: layer {spec.name!r} takes {missing[0][0]!r}, "
                                 "which is not built before it")
            args = [tensors[t] for t in node]
            if spec.class_name == "Lambda":
                if on_lambda is not None:
                    on_lambda(spec, args)
                out = _apply_lambda(keras, spec, declarations.get(spec.name), args, tolerant,
                                    stored.path)
            else:
                if layer is None:
                    layer = _make_layer(keras, spec, stored.path)
                try:
                    out = layer(args[0] if len(args) == 1 else args)
                except Exception as exc:  # noqa: BLE001 - Keras raises many types on shapes
                    shapes = " + ".join(shape_text(a.shape) for a in args)
                    hint = (f" (after the declared Lambda(s) {', '.join(declared)})"
                            if declared else "")
                    raise ModelError(f"{stored.path}: layer {spec.name!r} ({spec.class_name}) "
                                     f"cannot take input {shapes}{hint}: "
                                     f"{_one_line(exc)}") from None
            outs = out if isinstance(out, list | tuple) else [out]
            for tensor_index, tensor in enumerate(outs):
                tensors[(spec.name, node_index, tensor_index)] = tensor
    missing = [t for t in stored.outputs if t not in tensors]
    if missing:
        raise ModelError(f"{stored.path}: output {missing[0][0]!r} is not built by the graph")
    outputs = [tensors[t] for t in stored.outputs]
    return keras.Model(model_inputs if len(model_inputs) > 1 else model_inputs[0],
                       outputs if len(outputs) > 1 else outputs[0],
                       name=re.sub(r"\W", "_", stored.path.stem) or "adopted")


def _make_layer(keras: Any, spec: LayerSpec, path: Path) -> Any:
    """The built-in layer ``spec`` describes; ModelError if its config makes no sense."""
    try:
        return BUILDERS[ALIASES.get(spec.class_name, spec.class_name)](keras, spec.config, spec)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - constructors raise many types on bad values
        raise ModelError(f"{path}: layer {spec.name!r} ({spec.class_name}): config not usable "
                         f"({type(exc).__name__}: {_one_line(exc)})") from None


def _apply_lambda(keras: Any, spec: LayerSpec, declaration: LambdaDeclaration | None,
                  args: list[Any], tolerant: bool, path: Path) -> Any:
    if len(args) != 1:
        raise ModelError(f"{path}: Lambda {spec.name!r} takes {len(args)} inputs; only "
                         "single-input Lambda layers can be declared")
    if declaration is None:
        if tolerant:
            return args[0]
        raise ModelError(f"{path}: Lambda {spec.name!r} is not declared")
    if declaration.kind == "identity":
        out = args[0]
    elif declaration.kind == "rescale":
        out = keras.layers.Rescaling(declaration.scale, offset=declaration.offset,
                                     name=spec.name)(args[0])
    else:
        out = keras.layers.Resizing(declaration.height, declaration.width,
                                    interpolation="bilinear", name=spec.name)(args[0])
    stored_output = spec.config.get("output_shape")
    if (isinstance(stored_output, list) and all(isinstance(d, int | None) for d in stored_output)
            and len(stored_output) == len(out.shape) - 1
            and any(s is not None and s != d for s, d in zip(stored_output, out.shape[1:],
                                                             strict=True))):
        raise ModelError(f"{path}: Lambda {spec.name!r} declared {declaration.text} gives "
                         f"{shape_text(out.shape)} but the file says it outputs "
                         f"{shape_text([None, *stored_output])}")
    return out


def _keras3_weight_keys(layers: list[LayerSpec], stored_inputs: int) -> dict[str, str]:
    """Layer name -> its path in a .keras file's model.weights.h5 (``layers/conv2d_1``):
    Keras 3 names each layer there by its snake-cased class and a per-class counter, in the
    order of the model's layers (input layers first)."""
    counters: dict[str, int] = {"input_layer": stored_inputs - 1}
    keys = {}
    for spec in layers:
        base = re.sub(r"\W+", "", spec.class_name)  # keras.src.utils.naming.to_snake_case
        base = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", base)
        base = re.sub("([a-z])([A-Z])", r"\1_\2", base).lower()
        count = counters.get(base, -1) + 1
        counters[base] = count
        keys[spec.name] = f"layers/{base}" + (f"_{count}" if count else "")
    return keys


def _copy_weights(stored: StoredModel, model: Any,
                  declarations: Mapping[str, LambdaDeclaration]) -> None:
    keys = (_keras3_weight_keys(stored.layers, len(stored.input_shapes))
            if stored.archive_config is not None else {s.name: s.name for s in stored.layers})
    declared = [f"{n}={d.text}" for n, d in declarations.items() if d.kind != "identity"]
    for spec in stored.layers:
        if spec.class_name == "Lambda":
            continue
        arrays = stored.weights.get(keys[spec.name], [])
        try:
            layer = model.get_layer(spec.name)
        except ValueError:  # a layer no output depends on: its weights are not used
            raise ModelError(f"{stored.path}: layer {spec.name!r} ({spec.class_name}) is not "
                             "connected to the model's outputs") from None
        if len(arrays) != len(layer.weights):
            raise ModelError(f"{stored.path}: layer {spec.name!r} ({spec.class_name}) stores "
                             f"{len(arrays)} weight arrays, the rebuilt layer has "
                             f"{len(layer.weights)}")
        for variable, array in zip(layer.weights, arrays, strict=True):
            if tuple(variable.shape) != array.shape:
                hint = (f" (the declared Lambda(s) {', '.join(declared)} change the shapes "
                        "before it)" if declared else "")
                raise ModelError(f"{stored.path}: layer {spec.name!r} ({spec.class_name}) "
                                 f"stores {variable.path.rsplit('/', 1)[-1]} of shape "
                                 f"{array.shape}, the rebuilt layer needs "
                                 f"{tuple(variable.shape)}{hint}")
            variable.assign(array.astype(np.float32))


def _load_safe(stored: StoredModel) -> Any:
    import keras

    try:
        return keras.saving.load_model(stored.path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for broken files
        raise ModelError(f"{stored.path}: Keras cannot load it in safe mode "
                         f"({type(exc).__name__}: {_one_line(exc)})") from None
