"""Layer-wise relevance propagation (LRP, Bach et al. 2015) on the engine's ``Network``.

Why drive-viz has its own: no maintained LRP package supports Keras 3. iNNvestigate pins
TensorFlow below 2.15 (Keras 2), and Zennit, Captum and the other maintained ones are
PyTorch-only. The rules below are a few TensorFlow ops per layer, run over the ``Network``'s
own op list (the same ops, weights and geometry the engine's other methods use), so a weight
change is seen and any conv/dense chain the engine accepts works, adopted models included.

Relevance starts at the target's layer as ``R = a * dS/da`` (``a`` that layer's output, S the
target score, see ``targets``): ``steer`` starts with R = y, ``left`` with -y, ``maintain``
with -y^2 (= y dS/dy), a unit target with the unit's activation (divided by the number of
cells for a spatially averaged filter). It then goes down the ops; the rule per op kind is the
``RULES`` table:

==============  ===============================================================================
op kind          rule
==============  ===============================================================================
conv, dense      ``lrp_epsilon``: epsilon rule R_i = a_i sum_j w_ij R_j / (z_j + eps sign z_j)
                 (sign 0 = +1), z_j = sum_i a_i w_ij + b_j: the bias b_j and the stabilizer
                 absorb R_j (b_j + eps sign z_j) / (z_j + eps sign z_j).
                 ``lrp_zplus``: z+ rule R_i = a_i+ sum_j w_ij+ R_j / sum_k a_k+ w_kj+ (positive
                 weights, biases ignored, 0/0 = 0): conserves relevance exactly, and keeps its
                 sign, on ReLU networks (a >= 0). On an ELU network a_i+ = max(a_i, 0): the
                 ELU's negative part (-1 < a < 0) is treated as 0, as VisualBackProp does.
batchnorm        folded into the conv/dense right before it when that layer has no activation
                 of its own (W' = W g / sqrt(v + e), b' = (b - m) g / sqrt(v + e) + beta);
                 otherwise an elementwise affine layer under the epsilon rule (both methods).
activation       relevance passes through unchanged (R at the output = R at the input). For
                 ReLU this is the standard rule. For ELU it is the same rule; the consequence
                 is that a negative ELU output enters the next layer's epsilon rule as a_i < 0,
                 so relevance can change sign there (z+ clamps it, above).
identity         (Dropout) passes through unchanged.
rescale          passes through unchanged (an elementwise re-scaling of the input is part of
                 how the pixels are encoded, not evidence).
flatten          routed back: the relevance is reshaped to the layer's input.
gap              GlobalAveragePooling2D as a linear layer of positive weights 1/(h w), epsilon
                 rule without a bias (both methods).
==============  ===============================================================================

The first conv/dense layer (the one that sees the pixels) uses the z^B rule (Montavon et al.
2017) in both methods: R_i = sum_j (a_i w_ij - l_i w_ij+ - h_i w_ij-) R_j / z^B_j with the
pixel bounds l = min(0, x), h = max(255, x) (the input view's YUV range, passed through the
rescale in front), so the map does not depend on where the encoding puts its zero, and
conserves exactly (no bias, 0/0 = 0). ``input_rule="same"`` uses the layer's own rule there.

Pooling layers the engine may learn to run slot into ``RULES`` the same way: average pooling
and resizing are linear (``_epsilon_rule`` with the op as ``f``), max pooling and cropping
route relevance (``_route``: max pooling sends it all to the winner).

Every rule is the gradient-times-input form: R_in = a * VJP(f, a)(R_out / z), one forward
and one backward op per layer, traced once by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from drive_viz.attention.network import Network, conv_polyphase_grad
from drive_viz.attention.targets import Target, UnitTarget, target_score
from drive_viz.errors import ModelError

#: LRP method name -> rule at the conv/dense layers.
LRP_RULES = {"lrp_epsilon": "epsilon", "lrp_zplus": "zplus"}
#: Default epsilon of the epsilon rule, in the units of each layer's pre-activation z.
DEFAULT_EPSILON = 1e-3
#: The pixel range of the network's input view (YUV levels).
INPUT_BOUNDS = (0.0, 255.0)

_PASS_KINDS = ("activation", "identity", "rescale")
_BLOCK_KINDS = ("activation", "batchnorm", "identity")


@dataclass(frozen=True)
class Step:
    """One unit of the relevance pass: ops ``first``..``last`` of the network (a conv or
    dense with its folded BatchNorm is two ops), the rule kind from ``RULES``, and for a
    linear layer its (folded) ``kernel`` and ``bias``."""

    first: int
    last: int
    kind: str
    kernel: tf.Tensor | None = None
    bias: tf.Tensor | None = None


def _ops(network: Network) -> list[Any]:
    return network._ops


def _batchnorm_affine(op: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """A batchnorm op (inference) as x * factor + shift: (factor, shift), (C,) each, read off
    the op itself at 0 and 1."""
    shift = op.apply(tf.zeros(op.layer.moving_mean.shape), False)
    return op.apply(tf.ones(op.layer.moving_mean.shape), False) - shift, shift


def steps(network: Network) -> list[Step]:
    """The network's ops grouped into relevance steps, BatchNorm folded where it can be.
    Read the weights at call time (inside the engine's traced pass), so weight changes show."""
    ops = _ops(network)
    out: list[Step] = []
    index = 0
    while index < len(ops):
        op = ops[index]
        if op.kind in ("conv", "dense"):
            kernel = op.layer.kernel.value
            bias = op.layer.bias.value if op.layer.use_bias else None
            nxt = ops[index + 1] if index + 1 < len(ops) else None
            if op.activation == "linear" and nxt is not None and nxt.kind == "batchnorm":
                factor, shift = _batchnorm_affine(nxt)
                kernel = kernel * factor
                bias = shift if bias is None else bias * factor + shift
                out.append(Step(index, index + 1, "linear", kernel, bias))
                index += 2
                continue
            out.append(Step(index, index, "linear", kernel, bias))
        elif op.kind == "batchnorm":
            factor, shift = _batchnorm_affine(op)
            out.append(Step(index, index, "affine", factor, shift))
        elif op.kind in RULES:
            out.append(Step(index, index, op.kind))
        else:
            raise ModelError(f"layer {op.name!r}: LRP has no rule for this layer type "
                             f"(op kind {op.kind!r})")
        index += 1
    return out


def _linear(op: Any, a: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The conv/dense op's linear map of ``a`` with ``kernel`` (no bias); the first strided
    conv takes the engine's faster polyphase input gradient, as in the forward pass."""
    if op.kind == "conv" and op.polyphase_grad:
        return conv_polyphase_grad(a, kernel, op.geometry.strides[0])
    if op.kind == "conv":
        return tf.nn.conv2d(a, kernel, strides=op.geometry.strides,
                            padding=op.geometry.padding.upper())
    return tf.matmul(a, kernel)


def _vjp(f: Callable[[tf.Tensor], tf.Tensor], a: tf.Tensor,
         weights: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """sum_j w_j df_j/da with w = ``weights(f(a))``: the gradient of sum(f(a) * w) with
    respect to ``a``, w held constant (f is evaluated once)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(a)
        z = f(a)
    return tape.gradient(z, a, output_gradients=weights(z))


def _stabilized(z: tf.Tensor, eps: float) -> tf.Tensor:
    return z + eps * tf.where(z >= 0, 1.0, -1.0)


def _epsilon_rule(f: Callable[[tf.Tensor], tf.Tensor], bias: tf.Tensor | None, a: tf.Tensor,
                  relevance: tf.Tensor, eps: float) -> tf.Tensor:
    """R_i = a_i sum_j df_j/da_i R_j / (f_j(a) + b_j + eps sign): f linear without bias."""
    return a * _vjp(f, a, lambda z: relevance / _stabilized(z if bias is None else z + bias,
                                                            eps))


def _zplus_rule(f: Callable[[tf.Tensor], tf.Tensor], a: tf.Tensor,
                relevance: tf.Tensor) -> tf.Tensor:
    """z+ rule with f already using the positive weights: R_i = a_i+ (VJP of R / f(a+))."""
    positive = tf.nn.relu(a)
    return positive * _vjp(f, positive, lambda z: tf.math.divide_no_nan(relevance, z))


def _zbox_rule(op: Any, kernel: tf.Tensor, a: tf.Tensor, low: tf.Tensor, high: tf.Tensor,
               relevance: tf.Tensor) -> tf.Tensor:
    """z^B rule: z = a W - l W+ - h W- (>= 0 for l <= a <= h), R_i = a_i c_i - l_i c+_i -
    h_i c-_i with c the VJPs of R / z through W, W+ and W-."""
    plus, minus = tf.nn.relu(kernel), -tf.nn.relu(-kernel)
    with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
        tape.watch([a, low, high])
        z = _linear(op, a, kernel) - _linear(op, low, plus) - _linear(op, high, minus)
    ga, gl, gh = tape.gradient(z, [a, low, high],
                               output_gradients=tf.math.divide_no_nan(relevance, z))
    return a * ga + low * gl + high * gh


def _route(op: Any, a: tf.Tensor, relevance: tf.Tensor) -> tf.Tensor:
    """A re-indexing op (flatten; cropping; max pooling: to the winner) sends each output's
    relevance back to the input element it came from."""
    return _vjp(lambda t: op.apply(t, False), a, lambda z: relevance)


def _apply_step(step: Step, ops: list[Any], rule: str, a: tf.Tensor, relevance: tf.Tensor,
                eps: float) -> tf.Tensor:
    op = ops[step.first]
    if step.kind == "linear":
        if rule == "zplus":
            plus = tf.nn.relu(step.kernel)
            return _zplus_rule(lambda t: _linear(op, t, plus), a, relevance)
        return _epsilon_rule(lambda t: _linear(op, t, step.kernel), step.bias, a, relevance, eps)
    if step.kind == "affine":
        return _epsilon_rule(lambda t: t * step.kernel, step.bias, a, relevance, eps)
    return RULES[step.kind](op, a, relevance, eps)


#: Op kind -> rule for the ops that are not conv/dense/batchnorm (those are ``Step`` kinds
#: "linear" and "affine"): (op, input a, relevance at the output, eps) -> relevance at a.
RULES: dict[str, Callable[[Any, tf.Tensor, tf.Tensor, float], tf.Tensor]] = {
    **{kind: (lambda op, a, r, eps: r) for kind in _PASS_KINDS},
    "flatten": lambda op, a, r, eps: _route(op, a, r),
    "gap": lambda op, a, r, eps: _epsilon_rule(lambda t: op.apply(t, False), None, a, r, eps),
}


def _start_index(network: Network, target: Target) -> int:
    """Index of the op whose output the target reads (a conv/dense layer's block ends after
    its BatchNorm, Activation and Dropout ops, as in ``Network.forward``)."""
    ops = _ops(network)
    if not isinstance(target, UnitTarget):
        return len(ops) - 1
    index = next(i for i, op in enumerate(ops) if op.name == target.layer)
    if ops[index].kind in ("conv", "dense"):
        while index + 1 < len(ops) and ops[index + 1].kind in _BLOCK_KINDS:
            index += 1
    return index


def relevance(network: Network, x: tf.Tensor, target: Target = "steer",
              rules: Sequence[str] = ("epsilon",), *, eps: float = DEFAULT_EPSILON,
              bounds: tuple[float, float] = INPUT_BOUNDS, input_rule: str = "zB",
              ) -> dict[str, list[tuple[int, tf.Tensor]]]:
    """LRP relevance of ``x`` (N, H, W, C) float32 for each rule in ``rules`` ("epsilon",
    "zplus"), from one forward pass.

    Returns rule -> [(op index, relevance at that op's input)] from the target's layer down
    to op 0 (whose input is ``x``), each relevance the shape of that input; the first entry
    is (start + 1, relevance at the target layer's output) with start the target's op.
    ``input_rule``: "zB" (the first conv/dense uses z^B with pixel ``bounds``) or "same".
    """
    ops = _ops(network)
    inputs = [x]
    for op in ops:
        inputs.append(op.apply(inputs[-1], False))
    start = _start_index(network, target)
    top = inputs[start + 1]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(top)
        output = tf.reshape(top, (-1,)) if start == len(ops) - 1 else None
        score = target_score(target, output, {getattr(target, "layer", ""): top})
    top_relevance = top * tape.gradient(score, top)
    plan = [s for s in steps(network) if s.last <= start]
    first_linear = next((s for s in plan if s.kind == "linear"), None)
    low = high = None
    if input_rule == "zB" and first_linear is not None:
        low = tf.minimum(tf.cast(bounds[0], x.dtype), x)
        high = tf.maximum(tf.cast(bounds[1], x.dtype), x)
        for op in ops[:first_linear.first]:
            a, b = op.apply(low, False), op.apply(high, False)
            low, high = tf.minimum(a, b), tf.maximum(a, b)
    elif input_rule not in ("zB", "same"):
        raise ValueError(f"input_rule must be 'zB' or 'same', not {input_rule!r}")
    result: dict[str, list[tuple[int, tf.Tensor]]] = {}
    for rule in rules:
        if rule not in ("epsilon", "zplus"):
            raise ValueError(f"LRP rule must be 'epsilon' or 'zplus', not {rule!r}")
        current = top_relevance
        trail = [(start + 1, current)]
        for step in reversed(plan):
            a = inputs[step.first]
            if step is first_linear and low is not None:
                current = _zbox_rule(ops[step.first], step.kernel, a, low, high, current)
            else:
                current = _apply_step(step, ops, rule, a, current, eps)
            trail.append((step.first, current))
        result[rule] = trail
    return result


def lrp_maps(network: Network, x: tf.Tensor, target: Target, methods: Sequence[str], *,
             eps: float = DEFAULT_EPSILON) -> dict[str, tf.Tensor]:
    """The LRP ``methods`` (names in ``LRP_RULES``) for ``x`` (N, H, W, C): method -> (N, H, W)
    relevance per pixel, summed over the channels, in score units."""
    rules = {LRP_RULES[name]: name for name in methods}
    trails = relevance(network, x, target, tuple(rules), eps=eps)
    return {name: tf.reduce_sum(trails[rule][-1][1], axis=-1) for rule, name in rules.items()}
