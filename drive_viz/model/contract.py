"""A model's input contract: which pixels of the camera frame it sees, how they are scaled,
and which of its outputs is steering (and throttle) and how they are decoded.

The contract lives in the model's card (``MODEL.card.json``) under ``"contract"``::

    "contract": {
      "input_size": [H, W],
      "crop": {"top": T, "bottom": B, "left": L, "right": R},
      "interpolation": "linear" | "area" | "nearest",
      "colour": "rgb" | "bgr" | "yuv",
      "scale": S, "offset": O,
      "steering": {"output": NAME_OR_INDEX_OR_NULL, "decode": "linear" | "bins:N:LO:HI"},
      "throttle": null | {"output": NAME_OR_INDEX, "decode": ...}
    }

Order of operations (``drive_viz.model.preprocess.preprocess_frame``): crop the camera frame
(a crop value < 1 is a fraction of the frame's height or width, >= 1 a number of pixels),
resize the uint8 crop to ``input_size`` with ``cv2.resize`` and ``interpolation``, convert
the colour order, then network input = colour(frame) * scale + offset in float32.

A steering output decoded ``bins:N:LO:HI`` holds probabilities (or logits) over N bins whose
centres are ``linspace(LO, HI, N)``; the steering value is the expectation sum_i p_i c_i
(donkeycar's ``linear_unbin`` takes the argmax; the expectation is its differentiable form).
``output`` null means "the model's only output".

Old cards (``"preprocessing": {"crop_top", "crop_bottom"}``) and models without a card map to
DAVE-2's contract: input 66x200, those crop fractions, area interpolation, YUV, scale 1,
offset 0, steering the only output, linear.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from drive_viz.errors import ModelError

INTERPOLATIONS = ("linear", "area", "nearest")
COLOURS = ("rgb", "bgr", "yuv")
_BINS = re.compile(r"^bins:(?P<n>\d+):(?P<lo>[-+0-9.eE]+):(?P<hi>[-+0-9.eE]+)$")


class ContractError(ModelError, ValueError):
    """An input contract (or card entry) that cannot be used; one-line message."""


@dataclass(frozen=True)
class OutputSpec:
    """Which model output a quantity comes from and how it is decoded.

    ``output``: an output name (the name of the layer that produces it), an index into
    ``model.outputs``, or None for the model's only output. ``decode``: ``"linear"`` (the
    output is the value, shape (1,)) or ``"bins:N:LO:HI"`` (shape (N,), value = expectation
    over bin centres ``linspace(LO, HI, N)``).
    """

    output: str | int | None = None
    decode: str = "linear"

    def __post_init__(self) -> None:
        if self.output is not None and not isinstance(self.output, str | int):
            raise ContractError(f"output must be a name or an index, not {self.output!r}")
        if isinstance(self.output, bool) or (isinstance(self.output, int) and self.output < 0):
            raise ContractError(f"output index must be >= 0, not {self.output!r}")
        if self.decode != "linear":
            match = _BINS.match(self.decode)
            if match is None:
                raise ContractError(f"decode must be 'linear' or 'bins:N:LO:HI', "
                                    f"not {self.decode!r}")
            try:
                lo, hi = float(match["lo"]), float(match["hi"])
            except ValueError:
                raise ContractError(f"decode {self.decode!r}: LO and HI must be numbers") from None
            if int(match["n"]) < 2 or not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise ContractError(f"decode {self.decode!r}: needs N >= 2 and finite LO < HI")

    @property
    def bins(self) -> tuple[int, float, float] | None:
        """(N, LO, HI) for a ``bins`` decode, None for ``linear``."""
        match = _BINS.match(self.decode)
        return None if match is None else (int(match["n"]), float(match["lo"]),
                                            float(match["hi"]))

    @property
    def width(self) -> int:
        """How many values the output has per frame: 1 (linear) or N (bins)."""
        bins = self.bins
        return 1 if bins is None else bins[0]

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "decode": self.decode}

    @classmethod
    def from_json(cls, data: Any, key: str) -> OutputSpec:
        if not isinstance(data, dict) or set(data) - {"output", "decode"}:
            raise ContractError(f"{key}: expected {{\"output\": NAME_OR_INDEX, "
                                f"\"decode\": ...}}, got {data!r}")
        return cls(data.get("output"), data.get("decode", "linear"))


@dataclass(frozen=True)
class InputContract:
    """How a camera frame becomes the network's input, and how its outputs are read.

    ``input_size`` (rows, columns) of the model's input; ``crop`` (top, bottom, left, right)
    removed from each side of the camera frame (values < 1: fractions of the frame's height
    or width; >= 1: pixels); ``interpolation`` of ``cv2.resize`` on the uint8 crop;
    ``colour`` order fed to the network; ``scale`` and ``offset``: network input =
    colour(frame) * scale + offset, float32; ``steering`` and ``throttle`` (or None): the
    outputs they are read from.
    """

    input_size: tuple[int, int] = (66, 200)
    crop: tuple[float, float, float, float] = (0.40, 0.10, 0.0, 0.0)
    interpolation: str = "area"
    colour: str = "yuv"
    scale: float = 1.0
    offset: float = 0.0
    steering: OutputSpec = field(default_factory=OutputSpec)
    throttle: OutputSpec | None = None

    def __post_init__(self) -> None:
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                     for d in size):
            raise ContractError(f"input_size must be [rows, columns] of positive integers, "
                                f"not {self.input_size!r}")
        object.__setattr__(self, "input_size", size)
        crop = tuple(self.crop)
        if len(crop) != 4 or not all(isinstance(c, int | float) and not isinstance(c, bool)
                                     and math.isfinite(c) and c >= 0 for c in crop):
            raise ContractError(f"crop must be four numbers >= 0 (top, bottom, left, right), "
                                f"not {self.crop!r}")
        object.__setattr__(self, "crop", tuple(float(c) for c in crop))
        for a, b, what in ((0, 1, "top + bottom"), (2, 3, "left + right")):
            if crop[a] < 1 and crop[b] < 1 and crop[a] + crop[b] >= 0.95:
                raise ContractError(f"crop {what} = {crop[a] + crop[b]:g} of the frame leaves "
                                    "no image")
        if self.interpolation not in INTERPOLATIONS:
            raise ContractError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                f"not {self.interpolation!r}")
        if self.colour not in COLOURS:
            raise ContractError(f"colour must be one of {', '.join(COLOURS)}, "
                                f"not {self.colour!r}")
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if (not isinstance(value, int | float) or isinstance(value, bool)
                    or not math.isfinite(value)):
                raise ContractError(f"{name} must be a finite number, not {value!r}")
            object.__setattr__(self, name, float(value))
        if self.scale == 0:
            raise ContractError("scale must not be 0")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network input's shape without the batch axis: (rows, columns, 3)."""
        return (*self.input_size, 3)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The part of a ``height`` x ``width`` camera frame the network sees, in pixels:
        (top, bottom, left, right) with rows ``top:bottom`` and columns ``left:right`` kept.
        ContractError if the crop leaves fewer than 2 rows or columns."""
        top, bottom, left, right = (
            int(round(size * value)) if value < 1 else int(round(value))
            for size, value in zip((height, height, width, width), self.crop, strict=True))
        box = (top, height - bottom, left, width - right)
        if box[1] - box[0] < 2 or box[3] - box[2] < 2:
            raise ContractError(f"crop {self.crop} leaves no image of a {width}x{height} frame")
        return box

    def same_input(self, other: InputContract) -> bool:
        """Whether ``other`` turns every camera frame into the same network input (all but
        the output fields equal)."""
        fields = ("input_size", "crop", "interpolation", "colour", "scale", "offset")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    def to_json(self) -> dict[str, Any]:
        """The card's ``"contract"`` entry."""
        top, bottom, left, right = self.crop
        return {"input_size": list(self.input_size),
                "crop": {"top": top, "bottom": bottom, "left": left, "right": right},
                "interpolation": self.interpolation, "colour": self.colour,
                "scale": self.scale, "offset": self.offset,
                "steering": self.steering.to_json(),
                "throttle": None if self.throttle is None else self.throttle.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> InputContract:
        """A card's ``"contract"`` entry -> InputContract; ContractError naming the field."""
        if not isinstance(data, dict):
            raise ContractError(f"contract: expected a JSON object, got {data!r}")
        known = {"input_size", "crop", "interpolation", "colour", "scale", "offset",
                 "steering", "throttle"}
        if set(data) - known:
            raise ContractError(f"contract: unknown field(s) {sorted(set(data) - known)}")
        missing = sorted({"input_size", "steering"} - set(data))
        if missing:
            raise ContractError(f"contract: missing field(s) {missing}")
        crop = data.get("crop", {})
        sides = ("top", "bottom", "left", "right")
        if not isinstance(crop, dict) or set(crop) - set(sides):
            raise ContractError(f"contract.crop: expected {{\"top\", \"bottom\", \"left\", "
                                f"\"right\"}}, got {crop!r}")
        size = data["input_size"]
        if not isinstance(size, list | tuple):
            raise ContractError(f"contract.input_size: expected [rows, columns], got {size!r}")
        throttle = data.get("throttle")
        return cls(input_size=tuple(size),
                   crop=tuple(crop.get(side, 0) for side in sides),
                   interpolation=data.get("interpolation", "linear"),
                   colour=data.get("colour", "rgb"),
                   scale=data.get("scale", 1.0), offset=data.get("offset", 0.0),
                   steering=OutputSpec.from_json(data["steering"], "contract.steering"),
                   throttle=None if throttle is None
                   else OutputSpec.from_json(throttle, "contract.throttle"))

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> InputContract:
        """The contract a card describes: its ``"contract"``, else DAVE-2's with an old card's
        ``"preprocessing"`` crop fractions, else DAVE-2's (``DAVE2_CONTRACT``)."""
        if "contract" in card:
            return cls.from_json(card["contract"])
        legacy = card.get("preprocessing")
        if legacy is None:
            return DAVE2_CONTRACT
        if not isinstance(legacy, dict) or set(legacy) - {"crop_top", "crop_bottom"}:
            raise ContractError(f"preprocessing: expected {{\"crop_top\", \"crop_bottom\"}}, "
                                f"got {legacy!r}")
        top = legacy.get("crop_top", DAVE2_CONTRACT.crop[0])
        bottom = legacy.get("crop_bottom", DAVE2_CONTRACT.crop[1])
        if not all(isinstance(v, int | float) and 0 <= v < 1 for v in (top, bottom)):
            raise ContractError(f"preprocessing: crop fractions must be in [0, 1), got {legacy!r}")
        return cls(crop=(top, bottom, 0.0, 0.0))

    def output_index(self, model: Any, spec: OutputSpec) -> int:
        """The index in ``model.outputs`` that ``spec`` names; ContractError otherwise."""
        names = output_names(model)
        if spec.output is None:
            if len(names) != 1:
                raise ContractError(f"the model has {len(names)} outputs ({', '.join(names)}); "
                                    "its card must name the steering output")
            return 0
        if isinstance(spec.output, int):
            if spec.output >= len(names):
                raise ContractError(f"output index {spec.output} is out of range: the model "
                                    f"has {len(names)} output(s) ({', '.join(names)})")
            return spec.output
        if spec.output not in names:
            raise ContractError(f"output {spec.output!r} is not in the model (outputs: "
                                f"{', '.join(names)})")
        return names.index(spec.output)

    def check_model(self, model: Any) -> None:
        """ContractError unless ``model`` takes one (N, rows, columns, 3) input equal to
        ``input_size`` and has the outputs ``steering`` and ``throttle`` name, each of the
        width their decode needs ((1,) linear, (N,) for N bins)."""
        shapes = [tuple(i.shape[1:]) for i in model.inputs]
        if len(shapes) != 1 or shapes[0] != self.input_shape:
            raise ContractError(f"input shape {shapes} does not fit the contract's input "
                                f"{self.input_shape}")
        for what, spec in (("steering", self.steering), ("throttle", self.throttle)):
            if spec is None:
                continue
            index = self.output_index(model, spec)
            shape = tuple(model.outputs[index].shape[1:])
            if shape != (spec.width,):
                raise ContractError(f"{what} output {output_names(model)[index]!r} has shape "
                                    f"{shape}; decode {spec.decode!r} needs ({spec.width},)")


def output_names(model: Any) -> list[str]:
    """The names of a Keras model's outputs (the layers that produce them), in order."""
    return [output._keras_history[0].name for output in model.outputs]


#: DAVE-2 as drive-viz trains it (and every model without a card).
DAVE2_CONTRACT = InputContract()
