"""Layer-wise relevance propagation (LRP, Bach et al. 2015) on the engine's ``Network``.

Why drive-viz has its own: no maintained LRP package supports Keras 3. iNNvestigate pins
TensorFlow below 2.15 (Keras 2), and Zennit, Captum and the other maintained ones are
PyTorch-only. The rules below are a few TensorFlow ops per layer, run over the ``Network``'s
own graph (the same ops, weights and geometry the engine's other methods use), so a weight
change is seen and any model the engine runs works, adopted models included.

Relevance starts at the target's tensor as ``R = a * dS/da`` (``a`` that tensor, S the
target score, see ``targets``): ``steer`` starts at the steering output with R = y, ``left``
with -y, ``maintain`` with -y^2 (= y dS/dy), ``throttle`` at the throttle output with its
value, a unit target at its layer's block output (after BatchNorm/activation/dropout, as in
``Network.forward``) with the unit's activation (divided by the number of cells for a
spatially averaged filter). An output decoded ``bins:N:LO:HI`` (the expectation over a
softmax) is refused with ``ModelError``: the softmax expectation is not a sum of the
contributions of its inputs, so there is no relevance to conserve from it (a unit target
inside such a model works).

Relevance then flows backwards through the graph: the nodes are visited in reverse
topological order, each node's rule (the ``RULES`` table, by op kind) splits the relevance
at its output among its inputs, and a tensor read by several nodes (fan-out) gets the sum of
what each sends back. Nodes the target does not depend on (another output head) get none.

==================  ===========================================================================
op kind             rule
==================  ===========================================================================
conv, dense         ``lrp_epsilon``: epsilon rule R_i = a_i sum_j w_ij R_j / (z_j + eps sign z_j)
                    (sign 0 = +1; with eps = 0, 0/0 = 0), z_j = sum_i a_i w_ij + b_j: the
                    bias b_j and the stabilizer absorb
                    R_j (b_j + eps sign z_j) / (z_j + eps sign z_j).
                    ``lrp_zplus``: z+ rule R_i = a_i+ sum_j w_ij+ R_j / sum_k a_k+ w_kj+
                    (positive weights, biases ignored, 0/0 = 0): conserves relevance exactly,
                    and keeps its sign, on ReLU networks (a >= 0). On an ELU network
                    a_i+ = max(a_i, 0): the ELU's negative part (-1 < a < 0) is treated as 0,
                    as VisualBackProp does.
batchnorm           folded into the conv/dense feeding it when that layer has no activation of
                    its own and no other reader (W' = W g / sqrt(v + e),
                    b' = (b - m) g / sqrt(v + e) + beta); otherwise an elementwise affine layer
                    under the epsilon rule (both methods).
activation          relevance passes through unchanged (R at the output = R at the input). For
                    ReLU this is the standard rule. For ELU it is the same rule; the
                    consequence is that a negative ELU output enters the next layer's epsilon
                    rule as a_i < 0, so relevance can change sign there (z+ clamps it, above).
identity, rescale   (Dropout and the like; Rescaling) pass through unchanged (an elementwise
                    re-scaling of the input is part of how the pixels are encoded, not
                    evidence).
flatten, crop       routed back: each output's relevance goes to the input element it copies.
maxpool, gmp        winner takes all: a window's relevance goes to the element that won the max
                    (MaxPooling2D, GlobalMaxPooling2D).
avgpool, gap,       linear layers with non-negative weights (AveragePooling2D,
resize              GlobalAveragePooling2D, Resizing bilinear or nearest): the epsilon rule
                    without a bias (``lrp_epsilon``), the z+ rule (``lrp_zplus``, exact on
                    a >= 0). In front of the first conv/dense (on the pixels, whose encoding
                    may be negative) both methods use the epsilon form.
add                 proportional to each input's contribution: R_i = x_i R / (sum_k x_k + eps
                    sign) (``lrp_epsilon``), R_i = x_i+ R / sum_k x_k+ (``lrp_zplus``).
concat              split: each input gets the relevance of its own channels.
==================  ===========================================================================

A conv/dense layer that sees the pixels (its input is the network input, possibly through
Rescaling, Dropout-like, Flatten, Cropping2D and Resizing layers) uses the z^B rule (Montavon
et al. 2017) in both methods: R_i = sum_j (a_i w_ij - l_i w_ij+ - h_i w_ij-) R_j / z^B_j with the
pixel bounds l = min(0, x), h = max(255, x) (the input view's YUV range, passed through the
layers in front), so the map does not depend on where the encoding puts its zero, and
conserves exactly (no bias, 0/0 = 0). ``input_rule="same"`` uses the layer's own rule there.

Every rule is the gradient-times-input form: R_in = a * VJP(f, a)(R_out / z), one forward
and one backward op per node, traced once by the engine.
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
#: Op kinds that keep their output a view of the pixels (z^B bounds pass through them).
_PIXEL_KINDS = ("rescale", "identity", "flatten", "crop", "resize")


@dataclass(frozen=True)
class Step:
    """One node of the relevance pass: the relevance at tensor ``out`` goes to the inputs of
    ``op`` (``out`` is ``op``'s own output, or the output of the BatchNorm folded into a
    conv/dense ``op``), by ``RULES[op.kind]``; a conv/dense carries its (folded) ``kernel``
    and ``bias``, an unfolded BatchNorm its ``kernel`` (factor) and ``bias`` (shift)."""

    op: Any
    out: str
    kernel: tf.Tensor | None = None
    bias: tf.Tensor | None = None


def _ops(network: Network) -> list[Any]:
    return network._ops


def _batchnorm_affine(op: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """A batchnorm op (inference) as x * factor + shift: (factor, shift), (C,) each, read off
    the op itself at 0 and 1."""
    shift = op.apply([tf.zeros(op.layer.moving_mean.shape)], False)
    return op.apply([tf.ones(op.layer.moving_mean.shape)], False) - shift, shift


def steps(network: Network, keep: Sequence[str] = ()) -> list[Step]:
    """The network's nodes as relevance steps in topological order, BatchNorm folded where it
    can be (not into a layer named in ``keep``, whose own output relevance is wanted).
    ModelError naming the layer for a node without a rule. Reads the weights at call time
    (inside the engine's traced pass), so weight changes show."""
    ops = _ops(network)
    readers: dict[str, list[Any]] = {}
    for op in ops:
        for name in op.inputs:
            readers.setdefault(name, []).append(op)
    out: list[Step] = []
    folded: set[str] = set()
    for op in ops:
        if op.kind not in RULES:
            raise ModelError(f"layer {op.name!r}: LRP has no rule for this layer type "
                             f"(op kind {op.kind!r})")
        if op.name in folded:
            continue
        if op.kind in ("conv", "dense"):
            kernel = op.layer.kernel.value
            bias = op.layer.bias.value if op.layer.use_bias else None
            after = readers.get(op.name, [])
            if (op.activation[0] == "linear" and len(after) == 1
                    and after[0].kind == "batchnorm" and op.name not in keep):
                factor, shift = _batchnorm_affine(after[0])
                folded.add(after[0].name)
                out.append(Step(op, after[0].name, kernel * factor,
                                shift if bias is None else bias * factor + shift))
                continue
            out.append(Step(op, op.name, kernel, bias))
        elif op.kind == "batchnorm":
            out.append(Step(op, op.name, *_batchnorm_affine(op)))
        else:
            out.append(Step(op, op.name))
    return out


def start_tensor(network: Network, target: Target) -> str:
    """The name of the layer output relevance starts from for ``target``: the steering or
    throttle output, or a unit target's block output. ModelError for a bins-decoded output."""
    if isinstance(target, UnitTarget):
        return network._blocks.get(target.layer, target.layer)
    what = "throttle" if target == "throttle" else "steering"
    layer = network.throttle_layer if what == "throttle" else network.steering_layer
    spec = network.contract.throttle if what == "throttle" else network.contract.steering
    if spec.bins is not None:
        raise ModelError(f"LRP cannot explain the {what} output {layer!r}: it is decoded "
                         f"{spec.decode!r}, an expectation over a softmax, which does not "
                         "split into contributions of its inputs (use a LAYER:UNIT target "
                         "or a gradient method)")
    return layer


def check_lrp(network: Network, target: Target) -> None:
    """ModelError unless LRP can run on ``network`` for ``target`` (every node has a rule,
    the target's output is not bins-decoded); the engine calls it before any frame."""
    steps(network)
    start_tensor(network, target)


def _linear(op: Any, a: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The conv/dense op's linear map of ``a`` with ``kernel`` (no bias); the first strided
    conv takes the engine's faster polyphase input gradient, as in the forward pass."""
    if op.kind == "conv" and op.polyphase_grad:
        return conv_polyphase_grad(a, kernel, op.geometry.strides[0])
    if op.kind == "conv":
        return tf.nn.conv2d(a, kernel, strides=op.geometry.strides,
                            padding=op.geometry.padding.upper())
    if len(a.shape) == 2:
        return tf.matmul(a, kernel)
    return tf.tensordot(a, kernel, axes=[[len(a.shape) - 1], [0]])


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
    return a * _vjp(f, a, lambda z: tf.math.divide_no_nan(
        relevance, _stabilized(z if bias is None else z + bias, eps)))


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


#: A rule: (step, the node's inputs, relevance at its output, "epsilon" | "zplus", eps) ->
#: relevance at each input, in the order of ``step.op.inputs``.
Rule = Callable[[Step, list[tf.Tensor], tf.Tensor, str, float], list[tf.Tensor]]


def _linear_rule(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
                 eps: float) -> list[tf.Tensor]:
    if rule == "zplus":
        plus = tf.nn.relu(step.kernel)
        return [_zplus_rule(lambda t: _linear(step.op, t, plus), xs[0], r)]
    return [_epsilon_rule(lambda t: _linear(step.op, t, step.kernel), step.bias, xs[0], r, eps)]


def _affine_rule(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
                 eps: float) -> list[tf.Tensor]:
    return [_epsilon_rule(lambda t: t * step.kernel, step.bias, xs[0], r, eps)]


def _pass(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
          eps: float) -> list[tf.Tensor]:
    return [r]


def _route(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
           eps: float) -> list[tf.Tensor]:
    """Each output's relevance to the input element it came from (a copy, or a max's
    winner): the op's VJP of R."""
    return [_vjp(lambda t: step.op.apply([t], False), xs[0], lambda z: r)]


def _pool_rule(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
               eps: float) -> list[tf.Tensor]:
    """A linear op with non-negative weights (the op itself as ``f``)."""
    def f(t: tf.Tensor) -> tf.Tensor:
        return step.op.apply([t], False)

    if rule == "zplus":
        return [_zplus_rule(f, xs[0], r)]
    return [_epsilon_rule(f, None, xs[0], r, eps)]


def _add_rule(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
              eps: float) -> list[tf.Tensor]:
    if rule == "zplus":
        positive = [tf.nn.relu(x) for x in xs]
        share = tf.math.divide_no_nan(r, tf.add_n(positive))
        return [p * share for p in positive]
    share = tf.math.divide_no_nan(r, _stabilized(tf.add_n(xs), eps))
    return [x * share for x in xs]


def _concat_rule(step: Step, xs: list[tf.Tensor], r: tf.Tensor, rule: str,
                 eps: float) -> list[tf.Tensor]:
    return tf.split(r, [int(x.shape[-1]) for x in xs], axis=-1)


#: Op kind -> rule (see the module docstring's table).
RULES: dict[str, Rule] = {
    "conv": _linear_rule, "dense": _linear_rule, "batchnorm": _affine_rule,
    "activation": _pass, "identity": _pass, "rescale": _pass,
    "flatten": _route, "crop": _route, "maxpool": _route, "gmp": _route,
    "avgpool": _pool_rule, "gap": _pool_rule, "resize": _pool_rule,
    "add": _add_rule, "concat": _concat_rule,
}


def _ancestors(network: Network, start: str) -> set[str]:
    """``start`` and every layer output it depends on ("" is the network input)."""
    by_name = {op.name: op for op in _ops(network)}
    found, stack = {start}, [start]
    while stack:
        name = stack.pop()
        for source in by_name[name].inputs if name else ():
            if source not in found:
                found.add(source)
                stack.append(source)
    return found


def relevance(network: Network, x: tf.Tensor, target: Target = "steer",
              rules: Sequence[str] = ("epsilon",), *, eps: float = DEFAULT_EPSILON,
              bounds: tuple[float, float] = INPUT_BOUNDS, input_rule: str = "zB",
              ) -> dict[str, dict[str, tf.Tensor]]:
    """LRP relevance of ``x`` (N, H, W, C) float32 for each rule in ``rules`` ("epsilon",
    "zplus"), from one forward pass.

    Returns rule -> {tensor name: relevance at that tensor}, the same shape as the tensor,
    for the target's start tensor and every tensor below it that relevance reaches: layer
    names stand for their outputs ("" for ``x``, the pixels). A conv/dense layer with a
    folded BatchNorm has no entry of its own (its relevance is the BatchNorm's).
    ``input_rule``: "zB" (conv/dense layers on the pixels use z^B with pixel ``bounds``) or
    "same". ModelError for a bins-decoded output target (see the module docstring).
    """
    if input_rule not in ("zB", "same"):
        raise ValueError(f"input_rule must be 'zB' or 'same', not {input_rule!r}")
    for rule in rules:
        if rule not in ("epsilon", "zplus"):
            raise ValueError(f"LRP rule must be 'epsilon' or 'zplus', not {rule!r}")
    start = start_tensor(network, target)
    needed = _ancestors(network, start)
    ops = [op for op in _ops(network) if op.name in needed]
    values = {"": x}
    pixels = {"": (tf.minimum(tf.cast(bounds[0], x.dtype), x),
                   tf.maximum(tf.cast(bounds[1], x.dtype), x))}
    for op in ops:
        values[op.name] = op.apply([values[name] for name in op.inputs], False)
        if op.kind in _PIXEL_KINDS and op.inputs[0] in pixels:
            low, high = (op.apply([v], False) for v in pixels[op.inputs[0]])
            pixels[op.name] = (tf.minimum(low, high), tf.maximum(low, high))
    top = values[start]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(top)
        if isinstance(target, UnitTarget):
            score = target_score(target, {}, {target.layer: top})
        else:
            head = "throttle" if target == "throttle" else "steering"
            score = target_score(target, {head: network.decode(top, start)}, {})
    top_relevance = top * tape.gradient(score, top)
    plan = [step for step in steps(network, keep=(start,)) if step.out in needed]
    result: dict[str, dict[str, tf.Tensor]] = {}
    for rule in rules:
        trail = {start: top_relevance}
        for step in reversed(plan):
            xs = [values[name] for name in step.op.inputs]
            source = step.op.inputs[0]
            if step.op.kind in ("conv", "dense") and input_rule == "zB" and source in pixels:
                low, high = pixels[source]
                sent = [_zbox_rule(step.op, step.kernel, xs[0], low, high, trail[step.out])]
            else:
                here = rule if step.op.kind in ("conv", "dense") or source not in pixels \
                    else "epsilon"
                sent = RULES[step.op.kind](step, xs, trail[step.out], here, eps)
            for name, r in zip(step.op.inputs, sent, strict=True):
                trail[name] = trail[name] + r if name in trail else r
        result[rule] = trail
    return result


def lrp_maps(network: Network, x: tf.Tensor, target: Target, methods: Sequence[str], *,
             eps: float = DEFAULT_EPSILON) -> dict[str, tf.Tensor]:
    """The LRP ``methods`` (names in ``LRP_RULES``) for ``x`` (N, H, W, C): method -> (N, H, W)
    relevance per pixel, summed over the channels, in score units."""
    rules = {LRP_RULES[name]: name for name in methods}
    trails = relevance(network, x, target, tuple(rules), eps=eps)
    return {name: tf.reduce_sum(trails[rule][""], axis=-1) for rule, name in rules.items()}
