"""``drive-viz adopt`` and ``drive-viz info-model``: bring a steering model from elsewhere.

``adopt`` reads a Keras model file as data (``drive_viz.model.legacy``: Keras 1.x/2.x and
tf.keras HDF5, Keras 3 ``.keras``), rebuilds it from built-in layers with its Lambda layers
replaced by their declarations, and writes ``DST.keras`` (loadable with ``safe_mode=True``)
plus ``DST.card.json`` holding its input contract and where it came from. The model file
appears last; a refused run writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.atomic import write_json_atomic
from drive_viz.errors import ModelError
from drive_viz.model.contract import InputContract, OutputSpec, output_names
from drive_viz.model.dave2 import card_path, load_steering_model, model_contract, read_card
from drive_viz.model.legacy import (
    LambdaDeclaration,
    StoredModel,
    parse_declarations,
    parse_number,
    read_model_file,
    rebuild,
    shape_text,
)


@dataclass
class Adopted:
    """The result of ``adopt``: the rebuilt model, its contract, the card (as written, or as
    it would be with ``dry_run``) and where it goes."""

    model: Any
    contract: InputContract
    card: dict[str, Any]
    out: Path
    written: bool


def parse_crop(text: str) -> tuple[float, float, float, float]:
    """``"TOP,BOTTOM"`` or ``"TOP,BOTTOM,LEFT,RIGHT"`` -> four numbers (fractions or pixels)."""
    try:
        values = [parse_number(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 4):
        raise ModelError(f"crop {text!r}: expected TOP,BOTTOM or TOP,BOTTOM,LEFT,RIGHT")
    top, bottom, left, right = (*values, 0.0, 0.0)[:4]
    return top, bottom, left, right


def parse_lambda_options(items: Sequence[str]) -> dict[str, str]:
    """``["NAME=DECLARATION", ...]`` -> {name: declaration}."""
    declarations: dict[str, str] = {}
    for item in items:
        name, equals, declaration = item.partition("=")
        if not equals or not name:
            raise ModelError(f"lambda {item!r}: expected NAME=rescale:SCALE:OFFSET, "
                             "NAME=resize:HEIGHT:WIDTH or NAME=identity")
        if name in declarations:
            raise ModelError(f"lambda {name!r} is declared twice")
        declarations[name] = declaration
    return declarations


def _output_spec(model: Any, output: str | int | None, decode: str, what: str) -> OutputSpec:
    """The output ``output`` names (a name, an index as int or digits, or None = the only
    one) as an OutputSpec holding the output's name."""
    names = output_names(model)
    if output is None:
        if len(names) != 1:
            raise ModelError(f"the model has {len(names)} outputs ({', '.join(names)}); "
                             f"name the {what} output")
        return OutputSpec(names[0], decode)
    if isinstance(output, str) and output not in names and output.isdigit():
        output = int(output)
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise ModelError(f"{what} output index {output} is out of range (outputs: "
                             f"{', '.join(names)})")
        return OutputSpec(names[output], decode)
    if output not in names:
        raise ModelError(f"{what} output {output!r} is not an output of the model (outputs: "
                         f"{', '.join(names)})")
    return OutputSpec(output, decode)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adopt(source: str | Path, out: str | Path, *,
          lambdas: Mapping[str, str] | None = None,
          crop: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
          interpolation: str = "linear", colour: str = "rgb",
          scale: float = 1.0, offset: float = 0.0,
          steering: str | int | None = None, decode: str = "linear",
          throttle: str | int | None = None, throttle_decode: str = "linear",
          dry_run: bool = False, overwrite: bool = False,
          command: str | None = None) -> Adopted:
    """Rebuild ``source`` from built-in layers and write ``out`` (.keras) with its card.

    ``lambdas``: Lambda layer name -> ``rescale:SCALE:OFFSET`` | ``resize:HEIGHT:WIDTH`` |
    ``identity``. ``crop`` (top, bottom, left, right), ``interpolation``, ``colour``,
    ``scale``, ``offset``: the input contract (network input = colour(frame) * scale +
    offset, of the model's own input size). ``steering`` / ``throttle``: output name or
    index (steering None: the only output) with their ``decode``. ``dry_run``: check and
    describe, write nothing. ModelError (one line) for anything refused; nothing is written.
    """
    import keras

    source, out = Path(source), Path(out)
    if out.suffix != ".keras":
        raise ModelError(f"{out}: the adopted model's file name must end in .keras")
    if not dry_run and not overwrite and (out.exists() or card_path(out).exists()):
        raise ModelError(f"{out}: exists (pass overwrite to replace it and its card)")
    declarations = parse_declarations(lambdas)
    stored = read_model_file(source)
    model = rebuild(stored, declarations)
    if len(model.inputs) != 1:
        raise ModelError(f"{source}: the model has {len(model.inputs)} inputs; a steering "
                         "model takes one camera image")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[2] != 3 or None in shape:
        raise ModelError(f"{source}: input shape {shape} is not a fixed-size colour image "
                         "(rows, columns, 3)")
    contract = InputContract(
        input_size=(int(shape[0]), int(shape[1])), crop=tuple(crop),
        interpolation=interpolation, colour=colour, scale=scale, offset=offset,
        steering=_output_spec(model, steering, decode, "steering"),
        throttle=None if throttle is None else _output_spec(model, throttle, throttle_decode,
                                                            "throttle"))
    contract.check_model(model)
    card = _card(stored, model, contract, declarations, out, command)
    if dry_run:
        return Adopted(model, contract, card, out, written=False)
    _write(model, card, out, keras)
    return Adopted(model, contract, card, out, written=True)


def _card(stored: StoredModel, model: Any, contract: InputContract,
          declarations: Mapping[str, LambdaDeclaration], out: Path,
          command: str | None) -> dict[str, Any]:
    from drive_viz.model.train import CARD_FORMAT, software_versions

    return {
        "format": CARD_FORMAT,
        "version": 1,
        "model": out.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "architecture": f"adopted {stored.format} model {stored.path.name}",
        "parameters": int(model.count_params()),
        "contract": contract.to_json(),
        "adopted_from": {
            "file": stored.path.name,
            "sha256": _sha256(stored.path),
            "format": stored.format,
            "keras_version": stored.keras_version,
            "lambdas": {name: d.text for name, d in declarations.items()},
            "stored_parameters": stored.stored_parameters,
        },
        "versions": software_versions(),
        "command": command,
    }


def _write(model: Any, card: dict[str, Any], out: Path, keras: Any) -> None:
    """Save through a temp name, check that the file loads in safe mode and computes the same
    outputs, write the card, then rename the model into place (it appears last)."""
    made = out.parent if not out.parent.exists() else None
    partial = out.with_name(f".{out.stem}.partial.keras")
    card_written = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(partial)
        reloaded = keras.saving.load_model(partial, compile=False, safe_mode=True)
        probe = np.random.default_rng(0).uniform(
            0, 1, (2, *model.inputs[0].shape[1:])).astype(np.float32)
        for a, b in zip(_as_list(model(probe)), _as_list(reloaded(probe)), strict=True):
            if not np.allclose(np.asarray(a), np.asarray(b), atol=1e-6):
                raise ModelError(f"{out}: the saved model does not reproduce the rebuilt one")
        write_json_atomic(card_path(out), card)
        card_written = True
        os.replace(partial, out)
    except BaseException as exc:
        if card_written:
            card_path(out).unlink(missing_ok=True)
        if made is not None:
            _remove_empty(made)
        if isinstance(exc, OSError):
            raise ModelError(f"{out}: cannot write ({exc.strerror or exc})") from None
        raise
    finally:
        partial.unlink(missing_ok=True)


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its parents that this run created empty."""
    try:
        while folder != folder.parent and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    except OSError:
        pass


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


# --------------------------------------------------------------------------------------------
# Describing a model


def describe(model: Any, contract: InputContract, card: Mapping[str, Any],
             where: str) -> str:
    """What ``adopt`` and ``info-model`` print: provenance, layers with output shapes and
    parameters, the parameter count, the outputs and the input contract."""
    lines = [f"model: {where}"]
    origin = card.get("adopted_from")
    if isinstance(origin, dict):
        lines.append(f"adopted from: {origin.get('file')} ({origin.get('format')}, "
                     f"keras_version {origin.get('keras_version')}, sha256 "
                     f"{str(origin.get('sha256'))[:16]}...)")
        for name, text in (origin.get("lambdas") or {}).items():
            lines.append(f"  Lambda {name} declared {text}")
    elif card.get("architecture"):
        lines.append(f"architecture: {card['architecture']}")
    lines.append(f"  {'layer':<28} {'type':<24} {'output shape':<18} {'parameters':>10}")
    for layer in model.layers:
        output = getattr(layer, "output", None)
        shapes = " + ".join(shape_text(o.shape) for o in _as_list(output)) if output is not None \
            else "?"
        lines.append(f"  {layer.name:<28} {type(layer).__name__:<24} {shapes:<18} "
                     f"{layer.count_params():>10,}")
    lines.append(f"parameters: {model.count_params():,}")
    names = output_names(model)
    lines.append("outputs: " + ", ".join(f"{name} {shape_text(o.shape)}"
                                         for name, o in zip(names, model.outputs, strict=True)))
    lines.append("input contract: " + contract_text(contract))
    return "\n".join(lines)


def contract_text(contract: InputContract) -> str:
    """The contract in words, in the order it is applied."""
    top, bottom, left, right = contract.crop

    def side(value: float) -> str:
        return f"{value:g}" if value >= 1 else f"{value:.0%}" if value else "0"

    rows, columns = contract.input_size
    parts = [f"crop top {side(top)} bottom {side(bottom)} left {side(left)} right "
             f"{side(right)} of the camera frame",
             f"resize to {columns}x{rows} ({contract.interpolation})",
             f"{contract.colour.upper()}",
             f"input = value x {contract.scale:.6g} + {contract.offset:.6g}",
             f"steering: {_spec_text(contract.steering)}",
             f"throttle: {_spec_text(contract.throttle) if contract.throttle else 'none'}"]
    return "; ".join(parts)


def _spec_text(spec: OutputSpec) -> str:
    bins = spec.bins
    output = "the only output" if spec.output is None else repr(spec.output)
    if bins is None:
        return f"{output}, linear"
    n, lo, hi = bins
    return (f"{output}, softmax over {n} bins from {lo:g} to {hi:g} (value = expectation "
            "over bin centres)")


# --------------------------------------------------------------------------------------------
# Commands


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz adopt`` command."""
    result = adopt(
        args.source, args.out, lambdas=parse_lambda_options(args.lambdas or []),
        crop=parse_crop(args.crop) if args.crop else (0.0, 0.0, 0.0, 0.0),
        interpolation=args.interpolation, colour=args.colour,
        scale=_number(args.scale, "scale"), offset=_number(args.offset, "offset"),
        steering=args.steering, decode=args.decode, throttle=args.throttle,
        throttle_decode=args.throttle_decode, dry_run=args.dry_run, overwrite=args.overwrite,
        command=_command(args))
    print(describe(result.model, result.contract, result.card, str(args.source)))
    if result.written:
        print(f"wrote {result.out} and its card {card_path(result.out)}")
    else:
        print(f"dry run: nothing written (the card would be {card_path(result.out)})")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The ``drive-viz adopt`` command line that repeats this adoption."""
    words = ["drive-viz", "adopt", str(args.source), "--out", str(args.out)]
    if args.crop:
        words += ["--crop", args.crop]
    words += ["--interpolation", args.interpolation, "--colour", args.colour,
              "--scale", args.scale, "--offset", args.offset]
    for flag, value in (("--steering", args.steering), ("--decode", args.decode),
                        ("--throttle", args.throttle),
                        ("--throttle-decode", args.throttle_decode)):
        if value is not None:
            words += [flag, str(value)]
    for item in args.lambdas or []:
        words += ["--lambda", item]
    return shlex.join(words)


def _number(text: str, what: str) -> float:
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise ModelError(f"{what} {text!r} is not a number (or a fraction such as 1/255)") \
            from None


def run_info(args: argparse.Namespace) -> int:
    """The ``drive-viz info-model`` command."""
    model = load_steering_model(args.model, unsafe=args.unsafe_model)
    print(describe(model, model_contract(args.model), read_card(args.model), str(args.model)))
    card = card_path(args.model)
    print(f"card: {card}" if card.is_file() else "card: none (DAVE-2's contract assumed)")
    return 0
