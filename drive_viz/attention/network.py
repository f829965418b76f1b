"""The steering network re-run with TensorFlow ops, so the attention engine controls it.

``Network(model, contract)`` walks a Keras model's own graph (Sequential or Functional, one
input, any number of output heads) in topological order, reading only the layers' configs and
variables (nothing from the model file is run), and runs the same computation with TensorFlow
ops from the layers' own variables (so weight changes are seen). Layers it runs: InputLayer,
Rescaling, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D,
AveragePooling2D, Cropping2D, Resizing (bilinear, nearest), BatchNormalization (inference),
Dropout/SpatialDropout2D/GaussianNoise/GaussianDropout (identity at inference), Activation,
ReLU, ELU, LeakyReLU, Softmax, Concatenate and Add; activations in ``SUPPORTED_ACTIVATIONS``.
Anything else raises ``ModelError`` naming the layer and its type, when the network is built
(before any frame is processed).

One forward pass returns the decoded steering (and throttle) of the contract's outputs and
every layer's output by name, and can switch the rectifiers to guided backpropagation's
backward rule. Every spatial layer's output cells are placed on the network input
(``ConvGeometry``), so maps of any conv layer are drawn at the input's own size.
``steering_predictor`` wraps the forward pass as a traced steering-only call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from drive_viz.errors import ModelError

#: Activations the network can run (fused into Conv2D/Dense, or as an activation layer).
#: Guided backprop gates the rectifiers (relu, elu, leaky_relu); the others keep their
#: ordinary gradient (they are output squashers, not rectifiers).
SUPPORTED_ACTIVATIONS = ("linear", "relu", "elu", "leaky_relu", "softmax", "tanh", "sigmoid")
RECTIFIERS = ("relu", "elu", "leaky_relu")


def _guided(function: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """``function`` (a rectifier) with guided backprop's backward rule: gate with (dy > 0)
    and pass the derivative where z > 0 only (which is 1), i.e. ELU and leaky ReLU are treated
    as their positive part in the backward pass."""

    @tf.custom_gradient
    def rectifier(z: tf.Tensor) -> tuple[tf.Tensor, Callable]:
        def backward(dy: tf.Tensor) -> tf.Tensor:
            return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(z > 0, dy.dtype)

        return function(z), backward

    return rectifier


def _polyphase_kernel(kernel: tf.Tensor, stride: int) -> tuple[tf.Tensor, int]:
    """A VALID conv's kernel (k, k, C, O) -> the stride-1 kernel (T, T, O, s*s*C) whose
    correlation with the output gradient gives the s x s phases of the input gradient
    (T = ceil(k / s) taps per phase; the kernel is zero-padded to T*s and flipped)."""
    k, channels, outputs = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    taps = -(-k // stride)
    padded = tf.pad(kernel, [[0, taps * stride - k], [0, taps * stride - k], [0, 0], [0, 0]])
    phases = tf.reverse(tf.reshape(padded, (taps, stride, taps, stride, channels, outputs)),
                        axis=[0, 2])
    phases = tf.transpose(phases, (0, 2, 5, 1, 3, 4))  # taps, taps, O, phase row, col, C
    return tf.reshape(phases, (taps, taps, outputs, stride * stride * channels)), taps


def conv_polyphase_grad(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, stride, "VALID")`` whose input gradient is computed as
    ONE stride-1 convolution of the padded output gradient followed by ``depth_to_space``
    (the polyphase form of the transposed convolution). Exact; on a 3-channel input it costs
    about 0.6x of TensorFlow's Conv2DBackpropInput (0.115 vs 0.189 ms per DAVE-2 frame at
    batch 64, measured with oneDNN on 2 cores), while on wider layers TensorFlow's is faster."""
    in_hw = x.shape[1:3]

    @tf.custom_gradient
    def conv(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Callable]:
        def backward(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            phase_kernel, taps = _polyphase_kernel(kernel, stride)
            padded = tf.pad(dy, [[0, 0], [taps - 1, taps - 1], [taps - 1, taps - 1], [0, 0]])
            phases = tf.nn.conv2d(padded, phase_kernel, strides=1, padding="VALID")
            dx = tf.nn.depth_to_space(phases, stride)
            grow = [max(0, size - have) for size, have in zip(in_hw, dx.shape[1:3], strict=True)]
            dx = tf.pad(dx, [[0, 0], [0, grow[0]], [0, grow[1]], [0, 0]])
            dkernel = tf.compat.v1.nn.conv2d_backprop_filter(
                x, tf.shape(kernel), dy, strides=[1, stride, stride, 1], padding="VALID")
            return dx[:, :in_hw[0], :in_hw[1]], dkernel

        return tf.nn.conv2d(x, kernel, strides=stride, padding="VALID"), backward

    return conv(x, kernel)


@dataclass(frozen=True)
class ConvGeometry:
    """Where a conv layer's output cells sit on the network input.

    Cell (i, j) has its receptive-field centre at input pixel
    (``offset[0] + i * stride[0]``, ``offset[1] + j * stride[1]``) (pixel-centre coordinates);
    ``kernel``, ``strides`` and ``padding`` are the layer's own, ``in_hw`` and ``out_hw``
    its input and output sizes (rows, columns).
    """

    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: str
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    stride: tuple[float, float]
    offset: tuple[float, float]




@dataclass(frozen=True)
class _Grid:
    """Where a spatial tensor's cells sit on the network input: (rows, columns), and cell
    (i, j)'s centre at input pixel ``offset + index * stride`` per axis."""

    hw: tuple[int, int]
    stride: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)


def _window_geometry(name: str, kernel: tuple[int, int], strides: tuple[int, int],
                     padding: str, grid: _Grid, out_hw: tuple[int, int]) -> ConvGeometry:
    """The geometry of a sliding window (conv or pooling) over ``grid``."""
    new_stride, new_offset = [], []
    for axis in range(2):
        pad_before = 0
        if padding == "same":
            total = max((out_hw[axis] - 1) * strides[axis] + kernel[axis] - grid.hw[axis], 0)
            pad_before = total // 2
        centre = (kernel[axis] - 1) / 2 - pad_before  # of cell 0, in the layer's input cells
        new_offset.append(grid.offset[axis] + grid.stride[axis] * centre)
        new_stride.append(grid.stride[axis] * strides[axis])
    if padding not in ("valid", "same"):
        raise ModelError(f"layer {name!r}: padding {padding!r} is not supported by the "
                         "attention engine")
    return ConvGeometry(kernel, strides, padding, grid.hw, out_hw, tuple(new_stride),
                        tuple(new_offset))


def _ones_transpose_matrix(small: int, big: int, kernel: int, stride: int,
                           padding: str) -> np.ndarray:
    """(big, small) float32 0/1 matrix of a 1-D transposed convolution with a kernel of ones:
    output ``i`` sums input ``p`` when ``0 <= i + pad - stride * p < kernel``, with ``pad``
    the forward convolution's leading padding (0 for VALID; TensorFlow's SAME split)."""
    pad = 0
    if padding.lower() == "same":
        pad = max((small - 1) * stride + kernel - big, 0) // 2
    offsets = np.arange(big)[:, None] + pad - stride * np.arange(small)[None, :]
    return ((offsets >= 0) & (offsets < kernel)).astype(np.float32)


def _resize_matrix(big: int, small: int, method: str, antialias: bool) -> np.ndarray:
    """(big, small) float32: the transpose of the 1-D linear map ``tf.image.resize`` applies
    from ``big`` to ``small`` samples (a resize is separable), i.e. its adjoint."""
    basis = tf.eye(big, dtype=tf.float32)[None, :, None, :]  # (1, big, 1, big)
    forward = tf.image.resize(basis, (small, 1), method=method, antialias=antialias)
    return np.ascontiguousarray(forward.numpy()[0, :, 0, :].T)


@dataclass
class _Op:
    name: str
    kind: str
    inputs: tuple[str, ...]
    layer: Any = None
    activation: tuple[str, float] = ("linear", 0.0)
    geometry: ConvGeometry | None = None
    #: Input gradient by ``conv_polyphase_grad`` (a strided VALID conv on the image).
    polyphase_grad: bool = False
    #: Per kind: crop (top, bottom, left, right), resize size and method, pooling window.
    params: dict[str, Any] = field(default_factory=dict)
    #: (rows, columns) matrices mapping a mask on this op's output grid back onto its input
    #: grid (VisualBackProp), for spatial ops.
    backmap: tuple[np.ndarray, np.ndarray] | None = None

    def apply(self, xs: list[tf.Tensor], guided: bool) -> tf.Tensor:
        layer, kind = self.layer, self.kind
        x = xs[0]
        if kind == "rescale":
            return x * tf.cast(layer.scale, x.dtype) + tf.cast(layer.offset, x.dtype)
        if kind == "conv":
            if self.polyphase_grad:
                z = conv_polyphase_grad(x, layer.kernel.value, self.geometry.strides[0])
            else:
                z = tf.nn.conv2d(x, layer.kernel.value, strides=self.geometry.strides,
                                 padding=self.geometry.padding.upper())
            if layer.use_bias:
                z = z + layer.bias.value
            return activate(z, self.activation, guided)
        if kind == "dense":
            if len(x.shape) == 2:
                z = tf.matmul(x, layer.kernel.value)
            else:
                z = tf.tensordot(x, layer.kernel.value, axes=[[len(x.shape) - 1], [0]])
            if layer.use_bias:
                z = z + layer.bias.value
            return activate(z, self.activation, guided)
        if kind == "activation":
            return activate(x, self.activation, guided)
        if kind == "batchnorm":
            factor = tf.math.rsqrt(layer.moving_variance.value + layer.epsilon)
            if layer.scale:
                factor = factor * layer.gamma.value
            x = (x - layer.moving_mean.value) * factor
            return x + layer.beta.value if layer.center else x
        if kind == "flatten":
            return tf.reshape(x, (tf.shape(x)[0], -1))
        if kind == "gap":
            return tf.reduce_mean(x, axis=(1, 2))
        if kind == "gmp":
            return tf.reduce_max(x, axis=(1, 2))
        if kind in ("maxpool", "avgpool"):
            pool = tf.nn.max_pool2d if kind == "maxpool" else tf.nn.avg_pool2d
            return pool(x, self.geometry.kernel, self.geometry.strides,
                        self.geometry.padding.upper())
        if kind == "crop":
            top, bottom, left, right = self.params["crop"]
            return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right]
        if kind == "resize":
            return tf.image.resize(x, self.params["size"], method=self.params["method"],
                                   antialias=self.params["antialias"])
        if kind == "concat":
            return tf.concat(xs, axis=-1)
        if kind == "add":
            return tf.add_n(xs)
        return x


def activate(z: tf.Tensor, activation: tuple[str, float], guided: bool = False) -> tf.Tensor:
    """Apply ``activation`` (name, parameter: ELU's alpha, leaky ReLU's slope, ReLU's
    max value or 0); ``guided`` swaps in guided backprop's gating backward rule for the
    rectifiers."""
    kind, parameter = activation
    if kind == "linear":
        return z
    if kind == "relu":
        function = (tf.nn.relu if not parameter
                    else lambda v: tf.minimum(tf.nn.relu(v), tf.cast(parameter, v.dtype)))
    elif kind == "elu":
        function = (tf.nn.elu if parameter == 1.0
                    else lambda v: tf.where(v > 0, v, parameter * (tf.exp(tf.minimum(v, 0.0))
                                                                   - 1.0)))
    elif kind == "leaky_relu":
        function = lambda v: tf.nn.leaky_relu(v, alpha=parameter)  # noqa: E731
    elif kind == "softmax":
        return tf.nn.softmax(z, axis=-1)
    elif kind == "tanh":
        return tf.tanh(z)
    else:
        return tf.sigmoid(z)
    return _guided(function)(z) if guided else function(z)


def _activation(layer: Any, function: Any = None) -> tuple[str, float]:
    """A layer's activation function as (name, parameter); ModelError if unsupported."""
    import keras

    name = keras.activations.serialize(layer.activation if function is None else function)
    if isinstance(name, dict):
        name = name.get("config", {}).get("name", name.get("class_name", str(name)))
    parameter = {"elu": 1.0, "leaky_relu": 0.2}.get(name, 0.0)
    if name not in SUPPORTED_ACTIVATIONS:
        raise ModelError(f"layer {layer.name!r}: activation {name!r} is not supported by the "
                         f"attention engine (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    return name, parameter


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _spatial(layer: Any, grids: list[_Grid | None]) -> _Grid:
    if grids[0] is None:
        raise ModelError(f"layer {layer.name!r} ({type(layer).__name__}) needs an image-shaped "
                         "(N, H, W, C) input")
    return grids[0]


class Network:
    """A Keras model's graph, runnable with TensorFlow ops (see the module docstring).

    ``contract`` names the steering (and throttle) outputs and their decode (default: the
    model's only output, linear; kept as ``contract``). Attributes: ``layer_names``
    (topological order), ``conv_layers`` (names of the Conv2D layers, in order),
    ``geometry`` (conv or pooling layer name -> ``ConvGeometry``), ``output_shapes`` (name
    -> shape without batch), ``input_hw`` (rows, columns of the input), ``steering_layer``
    and ``throttle_layer`` (the layers producing those outputs; throttle None when the
    contract has none).
    """

    def __init__(self, model: Any, contract: Any = None) -> None:
        from drive_viz.model.contract import InputContract, OutputSpec

        if contract is None:
            contract = InputContract(input_size=tuple(int(d) for d in
                                                      model.inputs[0].shape[1:3]),
                                     steering=OutputSpec())
        if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
            raise ModelError(f"model {model.name!r}: the attention engine needs one image "
                             "input (N, H, W, C)")
        self.input_hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
        self.contract = contract
        self._ops: list[_Op] = []
        self.geometry: dict[str, ConvGeometry] = {}
        self.output_shapes: dict[str, tuple[int, ...]] = {}
        self._build(model)
        self.layer_names = tuple(op.name for op in self._ops)
        self.conv_layers = tuple(op.name for op in self._ops if op.kind == "conv")
        self._blocks = self._block_ends()
        producers = self._producers
        self.steering_layer = producers[contract.output_index(model, contract.steering)]
        self._steering = contract.steering
        self.throttle_layer: str | None = None
        self._throttle = contract.throttle
        if contract.throttle is not None:
            self.throttle_layer = producers[contract.output_index(model, contract.throttle)]
        for name, spec in ((self.steering_layer, self._steering),
                           (self.throttle_layer, self._throttle)):
            if name is not None and self.output_shapes[name] != (spec.width,):
                raise ModelError(f"output {name!r} has shape {self.output_shapes[name]}; "
                                 f"decode {spec.decode!r} needs ({spec.width},)")
        by_name = {op.name: op for op in self._ops}
        self._softmaxed = {name: by_name[name].activation[0] == "softmax"
                           for name in (self.steering_layer, self.throttle_layer) if name}

    def _build(self, model: Any) -> None:
        import keras

        L = keras.layers  # noqa: N806
        source = {id(model.inputs[0]): ""}
        grids: dict[str, _Grid | None] = {"": _Grid(self.input_hw)}
        first_conv = True
        # Keras's own graph, walked back from the outputs (each tensor's ``_keras_history``
        # names the node that made it), in post-order, i.e. topologically: a layer's other
        # inbound nodes (a loaded Sequential keeps those of earlier builds) are not visited.
        order: list[tuple[Any, Any]] = []
        seen: set[int] = {id(model.inputs[0])}
        layer_nodes: dict[int, int] = {}
        stack: list[tuple[Any, bool]] = [(output, False) for output in reversed(model.outputs)]
        while stack:
            tensor, expanded = stack.pop()
            layer, node_index, _ = tensor._keras_history
            node = layer._inbound_nodes[node_index]
            if expanded:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    order.append((layer, node))
                continue
            if id(tensor) in seen:
                continue
            if isinstance(layer, L.InputLayer):
                raise ModelError("the model has more than one input; the attention engine "
                                 "needs one image input")
            if layer_nodes.setdefault(id(layer), id(node)) != id(node):
                raise ModelError(f"layer {layer.name!r} ({type(layer).__name__}) is called "
                                 "more than once in the model (a shared layer); not supported "
                                 "by the attention engine")
            stack.append((tensor, True))
            stack.extend((t, False) for t in reversed(node.input_tensors) if id(t) not in seen)
        for layer, node in order:
            inputs = tuple(source[id(t)] for t in node.input_tensors)
            if len(node.output_tensors) != 1:
                raise ModelError(f"layer {layer.name!r} ({type(layer).__name__}) has "
                                 f"{len(node.output_tensors)} outputs; not supported")
            out_shape = tuple(int(d) for d in node.output_tensors[0].shape[1:])
            op, grid = self._op(layer, L, inputs, [grids[i] for i in inputs], out_shape,
                                first_conv)
            if op.kind == "conv":
                first_conv = False
            self._ops.append(op)
            source[id(node.output_tensors[0])] = layer.name
            grids[layer.name] = grid
            self.output_shapes[layer.name] = out_shape
        self._producers = [source[id(output)] for output in model.outputs]

    def _op(self, layer: Any, L: Any, inputs: tuple[str, ...],  # noqa: N803
            grids: list[_Grid | None], out_shape: tuple[int, ...],
            first_conv: bool) -> tuple[_Op, _Grid | None]:
        """The op running ``layer`` (output shape ``out_shape`` without the batch axis) and
        the grid of its output (None if not spatial)."""
        name, kind_of = layer.name, type(layer).__name__
        out_grid = _Grid(out_shape[:2]) if len(out_shape) == 3 else None
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
        if not channels_last:
            raise ModelError(f"layer {name!r} ({kind_of}): only channels_last is supported")
        if len(inputs) != 1 and not isinstance(layer, L.Concatenate | L.Add):
            raise ModelError(f"layer {name!r} ({kind_of}) has {len(inputs)} inputs")
        same_grid = grids[0]
        if type(layer) is L.Conv2D:
            grid = _spatial(layer, grids)
            if tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
                raise ModelError(f"layer {name!r} (Conv2D): only undilated, ungrouped Conv2D "
                                 "is supported by the attention engine")
            geometry = _window_geometry(name, _pair(layer.kernel_size), _pair(layer.strides),
                                        layer.padding, grid, out_shape[:2])
            self.geometry[name] = geometry
            op = _Op(name, "conv", inputs, layer, _activation(layer), geometry,
                     polyphase_grad=_wants_polyphase_grad(layer, geometry, first_conv),
                     backmap=_window_backmap(geometry))
            return op, _Grid(geometry.out_hw, geometry.stride, geometry.offset)
        if type(layer) in (L.MaxPooling2D, L.AveragePooling2D):
            grid = _spatial(layer, grids)
            geometry = _window_geometry(name, _pair(layer.pool_size), _pair(layer.strides),
                                        layer.padding, grid, out_shape[:2])
            self.geometry[name] = geometry
            kind = "maxpool" if type(layer) is L.MaxPooling2D else "avgpool"
            return (_Op(name, kind, inputs, layer, geometry=geometry,
                        backmap=_window_backmap(geometry)),
                    _Grid(geometry.out_hw, geometry.stride, geometry.offset))
        if type(layer) is L.Cropping2D:
            grid = _spatial(layer, grids)
            (top, bottom), (left, right) = (tuple(int(v) for v in pair)
                                            for pair in layer.cropping)
            rows = np.eye(grid.hw[0], dtype=np.float32)[:, top:grid.hw[0] - bottom]
            cols = np.eye(grid.hw[1], dtype=np.float32)[:, left:grid.hw[1] - right]
            offset = (grid.offset[0] + top * grid.stride[0],
                      grid.offset[1] + left * grid.stride[1])
            return (_Op(name, "crop", inputs, layer, params={"crop": (top, bottom, left, right)},
                        backmap=(rows, cols)),
                    _Grid(out_shape[:2], grid.stride, offset))
        if type(layer) is L.Resizing:
            grid = _spatial(layer, grids)
            method = layer.interpolation
            if (method not in ("bilinear", "nearest") or layer.crop_to_aspect_ratio
                    or getattr(layer, "pad_to_aspect_ratio", False)):
                raise ModelError(f"layer {name!r} (Resizing): only bilinear or nearest "
                                 "resizing without crop/pad to aspect ratio is supported")
            size = (int(layer.height), int(layer.width))
            antialias = bool(getattr(layer, "antialias", False))
            backmap = tuple(_resize_matrix(big, small, method, antialias)
                            for big, small in zip(grid.hw, size, strict=True))
            # half-pixel centres: output cell i reads input position (i + 0.5) * in/out - 0.5
            ratio = [big / small for big, small in zip(grid.hw, size, strict=True)]
            stride = tuple(grid.stride[a] * ratio[a] for a in range(2))
            offset = tuple(grid.offset[a] + grid.stride[a] * (0.5 * ratio[a] - 0.5)
                           for a in range(2))
            return (_Op(name, "resize", inputs, layer, backmap=backmap,
                        params={"size": size, "method": method, "antialias": antialias}),
                    _Grid(size, stride, offset))
        if type(layer) is L.Rescaling:
            return _Op(name, "rescale", inputs, layer), same_grid
        if type(layer) is L.Dense:
            return _Op(name, "dense", inputs, layer, _activation(layer)), out_grid
        if type(layer) is L.Flatten:
            return _Op(name, "flatten", inputs), None
        if type(layer) in (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D):
            if layer.keepdims:
                raise ModelError(f"layer {name!r} ({kind_of}): keepdims is not supported")
            _spatial(layer, grids)
            kind = "gap" if type(layer) is L.GlobalAveragePooling2D else "gmp"
            return _Op(name, kind, inputs), None
        if type(layer) is L.Activation:
            return _Op(name, "activation", inputs, layer, _activation(layer)), same_grid
        if type(layer) is L.ReLU:
            if float(layer.threshold) != 0.0:
                raise ModelError(f"layer {name!r} (ReLU): a threshold is not supported")
            slope = float(layer.negative_slope)
            activation = (("leaky_relu", slope) if slope else
                          ("relu", float(layer.max_value or 0.0)))
            if slope and layer.max_value is not None:
                raise ModelError(f"layer {name!r} (ReLU): slope with max_value is not supported")
            return _Op(name, "activation", inputs, layer, activation), same_grid
        if type(layer) is L.ELU:
            return _Op(name, "activation", inputs, layer, ("elu", float(layer.alpha))), same_grid
        if type(layer) is L.LeakyReLU:
            return (_Op(name, "activation", inputs, layer,
                        ("leaky_relu", float(layer.negative_slope))), same_grid)
        if type(layer) is L.Softmax:
            if layer.axis not in (-1, len(out_shape)):
                raise ModelError(f"layer {name!r} (Softmax): only the last axis is supported")
            return _Op(name, "activation", inputs, layer, ("softmax", 0.0)), same_grid
        if type(layer) is L.BatchNormalization:
            if layer.axis not in (-1, len(out_shape)):
                raise ModelError(f"layer {name!r}: only BatchNormalization over the last "
                                 "(channel) axis is supported")
            return _Op(name, "batchnorm", inputs, layer), same_grid
        if type(layer) in (L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout):
            return _Op(name, "identity", inputs), same_grid
        if type(layer) in (L.Concatenate, L.Add):
            if type(layer) is L.Concatenate and layer.axis not in (-1, len(out_shape)):
                raise ModelError(f"layer {name!r} (Concatenate): only the last axis is "
                                 "supported")
            if len({g for g in grids}) > 1:
                raise ModelError(f"layer {name!r} ({kind_of}) joins tensors whose cells sit "
                                 "at different places on the input")
            kind = "concat" if type(layer) is L.Concatenate else "add"
            return _Op(name, kind, inputs), same_grid
        raise ModelError(f"layer {name!r} ({kind_of}) is not supported by the attention engine")

    def _block_ends(self) -> dict[str, str]:
        """Conv/Dense layer -> the last layer of its block: followed through a chain of
        BatchNormalization, activation and dropout layers that are each the only consumer of
        the layer before."""
        consumers: dict[str, list[_Op]] = {}
        for op in self._ops:
            for name in op.inputs:
                consumers.setdefault(name, []).append(op)
        ends = {}
        for op in self._ops:
            if op.kind not in ("conv", "dense"):
                continue
            end = op.name
            while (len(consumers.get(end, [])) == 1
                   and consumers[end][0].kind in ("activation", "batchnorm", "identity")):
                end = consumers[end][0].name
            ends[op.name] = end
        return ends

    def conv_chain(self) -> list[str]:
        """The conv layers on the path from the deepest conv layer down to the input (first
        input of each layer), shallowest first: the levels of VisualBackProp."""
        by_name = {op.name: op for op in self._ops}
        chain, name = [], self.conv_layers[-1]
        while name:
            if by_name[name].kind == "conv":
                chain.append(name)
            name = by_name[name].inputs[0]
        return chain[::-1]

    def backmaps(self, deeper: str, shallower: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) float32 matrices that map a mask on the output grid of layer
        ``deeper`` back onto the output grid of layer ``shallower`` (None: the network input),
        composed from each spatial op's own backmap along the path between them (the first
        input of each op). ModelError if the path does not pass ``shallower``."""
        by_name = {op.name: op for op in self._ops}
        rows = cols = None
        name = deeper
        while name != (shallower or ""):
            if name == "":
                raise ModelError(f"layer {shallower!r} is not below {deeper!r}")
            op = by_name[name]
            if op.backmap is not None:
                r, c = op.backmap
                rows = r if rows is None else r @ rows
                cols = c if cols is None else c @ cols
            name = op.inputs[0]
        if rows is None:
            rows = np.eye(self.output_shapes[deeper][0], dtype=np.float32)
            cols = np.eye(self.output_shapes[deeper][1], dtype=np.float32)
        return rows, cols

    def decode(self, raw: tf.Tensor, layer: str) -> tf.Tensor:
        """The (N,) value of output ``layer`` (the steering or throttle layer) under its
        decode: linear -> the output itself; bins:N:LO:HI -> the expectation sum_i p_i c_i
        over bin centres linspace(LO, HI, N), p the layer's softmax (or the softmax of its
        logits when the layer does not apply one)."""
        spec = self._steering if layer == self.steering_layer else self._throttle
        bins = spec.bins
        if bins is None:
            return tf.reshape(raw, (-1,))
        probabilities = raw if self._softmaxed[layer] else tf.nn.softmax(raw, axis=-1)
        centres = tf.constant(np.linspace(bins[1], bins[2], bins[0]), raw.dtype)
        return tf.linalg.matvec(probabilities, centres)

    def forward(self, x: tf.Tensor, guided: bool = False,
                ) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """Run the network on ``x`` (N, H, W, C) float32.

        Returns the decoded outputs ``{"steering": (N,), "throttle": (N,)}`` (throttle only
        when the contract names one) and every layer's output by layer name. A Conv2D or
        Dense layer's entry is its block's output: the layer followed by any
        BatchNormalization, activation and dropout layers, i.e. its post-activation features.
        ``guided`` uses guided backprop's backward rule at the rectifiers.
        """
        values: dict[str, tf.Tensor] = {"": x}
        for op in self._ops:
            values[op.name] = op.apply([values[name] for name in op.inputs], guided)
        del values[""]
        layers = dict(values)
        for name, end in self._blocks.items():
            layers[name] = values[end]
        heads = {"steering": self.decode(values[self.steering_layer], self.steering_layer)}
        if self.throttle_layer is not None:
            heads["throttle"] = self.decode(values[self.throttle_layer], self.throttle_layer)
        return heads, layers


def steering_predictor(model: Any, contract: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    """A traced inference call: (M, H, W, 3) float32 inputs -> (M,) float32 decoded steering
    (the contract's steering output and decode; None: the only output, linear). The causal
    tests of ``evaluate`` and ``replay --causal-blobs`` ask the model through it."""
    network = Network(model, contract)

    @tf.function(reduce_retracing=True)
    def forward(x: Any) -> Any:
        return network.forward(x)[0]["steering"]

    return lambda x: forward(tf.constant(np.asarray(x, np.float32))).numpy()


def _window_backmap(geometry: ConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A conv or pooling window's VisualBackProp upscale: transposed convolutions of ones
    with the window's size, stride and padding, to exactly its input size."""
    return tuple(_ones_transpose_matrix(small, big, kernel, stride, geometry.padding)
                 for small, big, kernel, stride in zip(geometry.out_hw, geometry.in_hw,
                                                       geometry.kernel, geometry.strides,
                                                       strict=True))


def _wants_polyphase_grad(layer: Any, geometry: ConvGeometry, first_conv: bool) -> bool:
    """The first conv layer, if square-kernelled, strided (same stride both ways) and VALID:
    its input gradient reaches the image's few channels, where the polyphase form is faster."""
    rows, columns = geometry.strides
    return (first_conv and rows == columns > 1 and geometry.kernel[0] == geometry.kernel[1]
            and geometry.padding == "valid" and int(layer.kernel.shape[2]) <= 4)
