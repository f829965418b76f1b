"""What an attention map explains: a scalar score per frame, chosen from the network's outputs.

A steering output has no class, so the score is a function of the output y (N,):

- ``"steer"``: S = y. The map shows what pushes the steering to the right (positive).
- ``"left"``: S = -y. What pushes the steering to the left; every gradient is -1 times steer's.
- ``"maintain"``: S = -y**2 / 2, so dS/dx = -y * dy/dx: what pulls the output back towards
  straight ahead (0), i.e. evidence against the current turn, weighted by how hard it turns
  (maps fade to zero as y -> 0).
- ``UnitTarget(layer, unit)``: an internal unit: channel ``unit`` of layer ``layer``'s
  output (post-activation), averaged over rows and columns for a conv layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

OUTPUT_TARGETS = ("steer", "left", "maintain")


@dataclass(frozen=True)
class UnitTarget:
    """One unit of a named layer: a conv filter (spatially averaged) or a dense unit."""

    layer: str
    unit: int


Target = str | UnitTarget


def check_target(target: Target, layer_shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless ``target`` names an output target or a unit of an existing layer."""
    if isinstance(target, UnitTarget):
        if target.layer not in layer_shapes:
            raise ValueError(f"target layer {target.layer!r} is not in the model "
                             f"(layers: {', '.join(layer_shapes)})")
        channels = layer_shapes[target.layer][-1]
        if not 0 <= target.unit < channels:
            raise ValueError(f"target unit {target.unit} is out of range for layer "
                             f"{target.layer!r} ({channels} units)")
    elif target not in OUTPUT_TARGETS:
        raise ValueError(f"target must be one of {OUTPUT_TARGETS} or a UnitTarget, "
                         f"not {target!r}")


def target_score(target: Target, output: tf.Tensor, layers: dict[str, tf.Tensor]) -> tf.Tensor:
    """The score S (N,) for ``target`` from the output y (N,) and the layer outputs by name."""
    if isinstance(target, UnitTarget):
        values = layers[target.layer][..., target.unit]
        if len(values.shape) > 1:
            values = tf.reduce_mean(values, axis=list(range(1, len(values.shape))))
        return values
    if target == "steer":
        return output
    if target == "left":
        return -output
    return -0.5 * tf.square(output)
