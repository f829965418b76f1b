"""What an attention map explains: a scalar score per frame, chosen from the network's outputs.

A steering output has no class, so the score is a function of the decoded steering y (N,)
(the model's contract says which output is steering and how it is decoded, e.g. the
expectation over softmax bins):

- ``"steer"``: S = y. The map shows what pushes the steering to the right (positive).
- ``"left"``: S = -y. What pushes the steering to the left; every gradient is -1 times steer's.
- ``"maintain"``: S = -y**2 / 2, so dS/dx = -y * dy/dx: what pulls the output back towards
  straight ahead (0), i.e. evidence against the current turn, weighted by how hard it turns
  (maps fade to zero as y -> 0).
- ``"throttle"``: S = the decoded throttle output (only for a model whose contract names
  one).
- ``UnitTarget(layer, unit)``: an internal unit: channel ``unit`` of layer ``layer``'s
  output (post-activation), averaged over rows and columns for a conv layer;
  ``UnitTarget(layer, unit, (row, col))``: that conv filter's activation at one cell of its
  feature map.

Text forms (``parse_target``, every CLI ``--target``): ``steer``, ``left``, ``maintain``,
``throttle``,
``LAYER:UNIT`` (``conv3:17``: filter 17 of conv3, spatial mean; ``dense1:4``: unit 4 of
dense1) and ``LAYER:UNIT@ROW,COL`` (``conv3:17@2,10``: filter 17 at feature-map row 2,
column 10; rows and columns count from 0 at the top left of the layer's output grid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drive_viz.errors import DriveVizError

OUTPUT_TARGETS = ("steer", "left", "maintain", "throttle")
_UNIT_PATTERN = re.compile(r"^(?P<layer>[A-Za-z_][\w.\-]*):(?P<unit>\d+)"
                           r"(?:@(?P<row>\d+),(?P<col>\d+))?$")


class TargetError(DriveVizError, ValueError):
    """A target that cannot be parsed or does not exist in the model (one-line message)."""


@dataclass(frozen=True)
class UnitTarget:
    """One unit of a named layer: a conv filter (spatially averaged, or at ``position``
    (row, col) of its feature map) or a dense unit."""

    layer: str
    unit: int
    position: tuple[int, int] | None = None

    def __str__(self) -> str:
        text = f"{self.layer}:{self.unit}"
        return text if self.position is None else f"{text}@{self.position[0]},{self.position[1]}"


Target = str | UnitTarget


def parse_target(text: str, layer_shapes: dict[str, tuple[int, ...]] | None = None) -> Target:
    """``"steer"`` | ``"left"`` | ``"maintain"`` | ``"throttle"`` | ``"conv3:17"`` |
    ``"conv3:17@2,10"`` | ``"dense1:4"`` -> a ``Target``. With ``layer_shapes`` (layer name
    -> output shape without the batch axis, e.g. ``Network.output_shapes``) the layer, unit
    and position are checked too (``check_target``). TargetError (one line) for anything else."""
    cleaned = text.strip()
    if cleaned in OUTPUT_TARGETS:
        target: Target = cleaned
    else:
        match = _UNIT_PATTERN.match(cleaned)
        if match is None:
            raise TargetError(f"--target {text!r}: expected one of {', '.join(OUTPUT_TARGETS)}, "
                              "LAYER:UNIT (conv3:17, dense1:4) or LAYER:UNIT@ROW,COL "
                              "(conv3:17@2,10)")
        position = None
        if match["row"] is not None:
            position = (int(match["row"]), int(match["col"]))
        target = UnitTarget(match["layer"], int(match["unit"]), position)
    if layer_shapes is not None:
        check_target(target, layer_shapes)
    return target


def check_target(target: Target, layer_shapes: dict[str, tuple[int, ...]]) -> None:
    """TargetError unless ``target`` names an output target or a unit (and position) of an
    existing layer."""
    if isinstance(target, UnitTarget):
        if target.layer not in layer_shapes:
            raise TargetError(f"target {target}: layer {target.layer!r} is not in the model "
                              f"(layers: {', '.join(layer_shapes)})")
        shape = layer_shapes[target.layer]
        channels = shape[-1]
        if not 0 <= target.unit < channels:
            raise TargetError(f"target {target}: unit {target.unit} is out of range for layer "
                              f"{target.layer!r} ({channels} units, 0..{channels - 1})")
        if target.position is not None:
            if len(shape) != 3:
                raise TargetError(f"target {target}: layer {target.layer!r} has no rows and "
                                  "columns (only a conv layer's filter takes @ROW,COL)")
            row, col = target.position
            if not (0 <= row < shape[0] and 0 <= col < shape[1]):
                raise TargetError(f"target {target}: position ({row}, {col}) is outside "
                                  f"{target.layer!r}'s {shape[0]}x{shape[1]} feature map")
    elif target not in OUTPUT_TARGETS:
        raise TargetError(f"target must be one of {OUTPUT_TARGETS} or a UnitTarget, "
                          f"not {target!r}")


def target_score(target: Target, heads: dict[str, Any], layers: dict[str, Any]) -> Any:
    """The score S (N,) tf.Tensor for ``target`` from the decoded outputs ``heads``
    (``"steering"`` (N,), ``"throttle"`` (N,) if the model has one; ``Network.forward``) and
    the layer outputs by name."""
    import tensorflow as tf

    if isinstance(target, UnitTarget):
        values = layers[target.layer][..., target.unit]
        if target.position is not None:
            return values[:, target.position[0], target.position[1]]
        if len(values.shape) > 1:
            values = tf.reduce_mean(values, axis=list(range(1, len(values.shape))))
        return values
    if target == "throttle":
        return heads["throttle"]
    output = heads["steering"]
    if target == "steer":
        return output
    if target == "left":
        return -output
    return -0.5 * tf.square(output)
