"""DAVE-2 (Bojarski et al., NVIDIA 2016), and loading steering models safely.

Layer names are a contract with the attention engine: ``normalize``, ``conv1`` ... ``conv5``
(activation fused into the convolution), ``flatten`` or ``gap``, ``dense1`` ... ``dense3``,
and the linear output ``steer``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drive_viz.errors import ModelError
from drive_viz.model.contract import ContractError, InputContract
from drive_viz.model.preprocess import INPUT_SHAPE

#: The model the project ships (models/ in the checkout; the README installs it editable).
SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "dave2_synth.keras"
ACTIVATIONS = ("elu", "relu")
HEADS = ("flatten", "gap")
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
#: (filters, kernel, stride) per conv layer, as NVIDIA published them.
CONV_SPECS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))
DENSE_UNITS = (100, 50, 10)


def build_dave2(activation: str = "elu", head: str = "flatten", dropout: float = 0.0,
                seed: int | None = None) -> Any:
    """A fresh DAVE-2: input (N, 66, 200, 3) YUV in [0, 255], output (N, 1) steering.

    ``head="flatten"`` is NVIDIA's dense head (252,219 parameters); ``head="gap"`` replaces it
    with global average pooling of conv5 followed directly by the steering output, which makes
    class activation maps exact.
    """
    import keras

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    initializer = keras.initializers.HeUniform(seed=seed)
    inputs = keras.Input(shape=INPUT_SHAPE, name="yuv")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    for name, (filters, kernel, stride) in zip(CONV_LAYERS, CONV_SPECS, strict=True):
        x = keras.layers.Conv2D(filters, kernel, strides=stride, activation=activation,
                                kernel_initializer=initializer, name=name)(x)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate(DENSE_UNITS, start=1):
            x = keras.layers.Dense(units, activation=activation,
                                   kernel_initializer=initializer, name=f"dense{i}")(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout, seed=seed, name=f"dropout{i}")(x)
    outputs = keras.layers.Dense(1, name="steer",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name=f"dave2_{activation}_{head}")


def card_path(model_path: str | Path) -> Path:
    """Where a model's card lives: ``MODEL.keras`` -> ``MODEL.card.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".card.json")


def read_card(model_path: str | Path) -> dict[str, Any]:
    """The model's card, or {} if it has none (models trained elsewhere)."""
    path = card_path(model_path)
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return card


def model_contract(model_path: str | Path) -> InputContract:
    """The input contract of a model (from its card's ``"contract"``, or an old card's
    ``"preprocessing"``; DAVE-2's without a card). ModelError naming the card if it is bad."""
    try:
        return InputContract.from_card(read_card(model_path))
    except ContractError as exc:
        raise ModelError(f"{card_path(model_path)}: bad contract ({exc})") from None


def load_steering_model(path: str | Path, *, unsafe: bool = False,
                        contract: InputContract | None = None) -> Any:
    """Load a Keras steering model and check it against its input contract (``contract``, or
    the one its card gives): input (N, rows, columns, 3) of the contract's ``input_size``, the
    steering (and throttle) outputs it names present with the width their decode needs.

    Loads with ``safe_mode=True`` unless ``unsafe`` (a model with Lambda layers or other
    arbitrary Python can run code when loaded; only pass ``unsafe`` for files you trust).
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix != ".keras":
        raise ModelError(f"{path}: expected a .keras model file (turn a Keras 2 .h5 or another "
                         "model into one with drive-viz adopt)")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a Keras model archive (a .keras file is a zip; this one "
                         "is truncated or corrupt)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as exc:
        message = " ".join(str(exc).split())
        if "safe_mode" in message or "Lambda" in message or "unsafe" in message.lower():
            raise ModelError(
                f"{path}: refused: the model needs unsafe deserialization (for example a "
                "Lambda layer), which can run arbitrary code; pass --unsafe-model only if "
                "you trust this file") from None
        raise ModelError(f"{path}: cannot load model ({message[:300]})") from None
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for broken files
        message = " ".join(str(exc).split())
        raise ModelError(f"{path}: cannot load model ({type(exc).__name__}: "
                         f"{message[:300]})") from None
    check_model_fits(model, model_contract(path) if contract is None else contract,
                     where=str(path))
    return model


@dataclass(frozen=True)
class LoadedModel:
    """A steering model loaded once, to replay many recordings with: the Keras ``model``
    (fitting its ``contract``), the ``contract`` from its card, and the
    ``name`` that summaries give it (the file as the user gave it, even when it was loaded
    from a copy, as fleet workers do), and ``engines``: the attention engines traced for it
    so far (see ``FrameAnalyzer``)."""

    model: Any
    contract: InputContract
    name: str
    engines: dict = field(default_factory=dict, repr=False, compare=False)


def load_model(path: str | Path, *, unsafe: bool = False,
               named: str | Path | None = None) -> LoadedModel:
    """``load_steering_model`` and ``model_contract`` of ``path`` in one object, named
    ``named`` (default: ``path``)."""
    model = load_steering_model(path, unsafe=unsafe)
    return LoadedModel(model, model_contract(path), str(named or path))


def check_model_fits(model: Any, contract: InputContract, where: str = "model") -> None:
    """ModelError (naming ``where``) unless ``model`` fits ``contract``
    (``InputContract.check_model``)."""
    try:
        contract.check_model(model)
    except ContractError as exc:
        raise ModelError(f"{where}: {exc}") from None
