"""The steering network re-run with TensorFlow ops, so the attention engine controls it.

``Network(model)`` walks a Keras steering model that is a plain chain of layers (DAVE-2:
Rescaling, Conv2D with a fused activation, Flatten or GlobalAveragePooling2D, Dense, Dropout)
and runs the same computation from the layers' own variables (so weight changes are seen).
Separate Activation layers and inference-mode BatchNormalization are supported too. One
forward pass returns the output and every layer's output by name, and can switch the
rectifiers to guided backpropagation's backward rule. Anything else raises ``ModelError``
naming the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from drive_viz.errors import ModelError

#: Activations the network can run (fused into Conv2D/Dense, or as an Activation layer).
SUPPORTED_ACTIVATIONS = ("linear", "relu", "elu")


@tf.custom_gradient
def _guided_relu(z: tf.Tensor) -> tuple[tf.Tensor, Callable]:
    def backward(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(z > 0, dy.dtype)

    return tf.nn.relu(z), backward


@tf.custom_gradient
def _guided_elu(z: tf.Tensor) -> tuple[tf.Tensor, Callable]:
    # Guided rule for ELU: gate with (dy > 0) and pass the ELU's derivative where z > 0 only
    # (which is 1), i.e. the ELU is treated as its positive part in the backward pass.
    def backward(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(z > 0, dy.dtype)

    return tf.nn.elu(z), backward


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


def activate(z: tf.Tensor, kind: str, guided: bool = False) -> tf.Tensor:
    """Apply activation ``kind``; ``guided`` swaps in guided backprop's gating backward rule."""
    if kind == "linear":
        return z
    if kind == "relu":
        return _guided_relu(z) if guided else tf.nn.relu(z)
    return _guided_elu(z) if guided else tf.nn.elu(z)


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


@dataclass
class _Op:
    name: str
    kind: str  # rescale | conv | flatten | gap | dense | activation | batchnorm | identity
    activation: str = "linear"
    layer: Any = None
    geometry: ConvGeometry | None = None
    #: Input gradient by ``conv_polyphase_grad`` (a strided VALID conv on the image).
    polyphase_grad: bool = False

    def apply(self, x: tf.Tensor, guided: bool) -> tf.Tensor:
        layer = self.layer
        if self.kind == "rescale":
            return x * tf.cast(layer.scale, x.dtype) + tf.cast(layer.offset, x.dtype)
        if self.kind == "conv":
            if self.polyphase_grad:
                z = conv_polyphase_grad(x, layer.kernel.value, self.geometry.strides[0])
            else:
                z = tf.nn.conv2d(x, layer.kernel.value, strides=self.geometry.strides,
                                 padding=self.geometry.padding.upper())
            if layer.use_bias:
                z = z + layer.bias.value
            return activate(z, self.activation, guided)
        if self.kind == "dense":
            z = tf.matmul(x, layer.kernel.value)
            if layer.use_bias:
                z = z + layer.bias.value
            return activate(z, self.activation, guided)
        if self.kind == "flatten":
            return tf.reshape(x, (tf.shape(x)[0], -1))
        if self.kind == "gap":
            return tf.reduce_mean(x, axis=(1, 2))
        if self.kind == "activation":
            return activate(x, self.activation, guided)
        if self.kind == "batchnorm":
            factor = tf.math.rsqrt(layer.moving_variance.value + layer.epsilon)
            if layer.scale:
                factor = factor * layer.gamma.value
            x = (x - layer.moving_mean.value) * factor
            return x + layer.beta.value if layer.center else x
        return x


def _activation_name(layer: Any) -> str:
    import keras

    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else str(name.get("config", name))
    if name not in SUPPORTED_ACTIVATIONS:
        raise ModelError(f"layer {layer.name!r}: activation {name!r} is not supported by the "
                         f"attention engine (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    return name


def _conv_geometry(layer: Any, in_hw: tuple[int, int], stride: tuple[float, float],
                   offset: tuple[float, float]) -> ConvGeometry:
    if (tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1
            or layer.data_format != "channels_last"):
        raise ModelError(f"layer {layer.name!r}: only undilated, ungrouped, channels_last "
                         "Conv2D is supported by the attention engine")
    kernel = tuple(int(k) for k in layer.kernel_size)
    strides = tuple(int(s) for s in layer.strides)
    out_hw = tuple(int(d) for d in layer.output.shape[1:3])
    new_stride, new_offset = [], []
    for axis in range(2):
        pad_before = 0
        if layer.padding == "same":
            total = max((out_hw[axis] - 1) * strides[axis] + kernel[axis] - in_hw[axis], 0)
            pad_before = total // 2
        centre = (kernel[axis] - 1) / 2 - pad_before  # of cell 0, in the layer's input cells
        new_offset.append(offset[axis] + stride[axis] * centre)
        new_stride.append(stride[axis] * strides[axis])
    return ConvGeometry(kernel, strides, layer.padding, in_hw, out_hw,
                        tuple(new_stride), tuple(new_offset))


def _wants_polyphase_grad(layer: Any, geometry: ConvGeometry, first_conv: bool) -> bool:
    """The first conv layer, if square-kernelled, strided (same stride both ways) and VALID:
    its input gradient reaches the image's few channels, where the polyphase form is faster."""
    rows, columns = geometry.strides
    return (first_conv and rows == columns > 1 and geometry.kernel[0] == geometry.kernel[1]
            and geometry.padding == "valid" and int(layer.kernel.shape[2]) <= 4)


class Network:
    """A chain-structured Keras model, runnable with TensorFlow ops.

    Attributes: ``layer_names`` (in order), ``conv_layers`` (names of the Conv2D layers, in
    order), ``geometry`` (conv name -> ``ConvGeometry``), ``output_shapes`` (name -> shape
    without batch), ``input_hw`` (rows, columns of the input).
    """

    def __init__(self, model: Any) -> None:
        import keras

        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(f"model {model.name!r}: the attention engine needs one input "
                             "and one output")
        self.input_hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
        self._ops: list[_Op] = []
        self.geometry: dict[str, ConvGeometry] = {}
        self.output_shapes: dict[str, tuple[int, ...]] = {}
        previous = model.inputs[0]
        hw, stride, offset = self.input_hw, (1.0, 1.0), (0.0, 0.0)
        first_conv = True
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer.input is not previous:
                raise ModelError(f"layer {layer.name!r}: the attention engine needs a model "
                                 "that is a single chain of layers")
            previous = layer.output
            if isinstance(layer, keras.layers.Rescaling):
                op = _Op(layer.name, "rescale", layer=layer)
            elif isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
                geometry = _conv_geometry(layer, hw, stride, offset)
                self.geometry[layer.name] = geometry
                hw, stride, offset = geometry.out_hw, geometry.stride, geometry.offset
                op = _Op(layer.name, "conv", _activation_name(layer), layer, geometry,
                         polyphase_grad=_wants_polyphase_grad(layer, geometry, first_conv))
                first_conv = False
            elif isinstance(layer, keras.layers.Dense):
                if len(layer.input.shape) != 2:
                    raise ModelError(f"layer {layer.name!r}: Dense on a {len(layer.input.shape)}"
                                     "-D tensor is not supported by the attention engine")
                op = _Op(layer.name, "dense", _activation_name(layer), layer)
            elif isinstance(layer, keras.layers.Flatten):
                op = _Op(layer.name, "flatten")
            elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
                if layer.data_format != "channels_last" or layer.keepdims:
                    raise ModelError(f"layer {layer.name!r}: only channels_last "
                                     "GlobalAveragePooling2D without keepdims is supported")
                op = _Op(layer.name, "gap")
            elif isinstance(layer, keras.layers.Activation):
                op = _Op(layer.name, "activation", _activation_name(layer))
            elif isinstance(layer, keras.layers.BatchNormalization):
                if layer.axis not in (-1, len(layer.input.shape) - 1):
                    raise ModelError(f"layer {layer.name!r}: only BatchNormalization over the "
                                     "last (channel) axis is supported")
                op = _Op(layer.name, "batchnorm", layer=layer)
            elif isinstance(layer, keras.layers.Dropout):
                op = _Op(layer.name, "identity")
            else:
                raise ModelError(f"layer {layer.name!r} ({type(layer).__name__}) is not "
                                 "supported by the attention engine")
            self._ops.append(op)
            self.output_shapes[layer.name] = tuple(int(d) for d in layer.output.shape[1:])
        self.layer_names = tuple(op.name for op in self._ops)
        self.conv_layers = tuple(op.name for op in self._ops if op.kind == "conv")

    def forward(self, x: tf.Tensor, guided: bool = False) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Run the network on ``x`` (N, H, W, C) float32.

        Returns the output (N,) and every layer's output by layer name. A Conv2D or Dense
        layer's entry is its block's output: the layer followed by any BatchNormalization,
        Activation and Dropout layers, i.e. its post-activation features. ``guided`` uses
        guided backprop's backward rule at the rectifiers.
        """
        outputs: dict[str, tf.Tensor] = {}
        block = None
        for op in self._ops:
            x = op.apply(x, guided)
            outputs[op.name] = x
            if op.kind in ("conv", "dense"):
                block = op.name
            elif op.kind in ("activation", "batchnorm", "identity") and block is not None:
                outputs[block] = x
            else:
                block = None
        return tf.reshape(x, (-1,)), outputs
