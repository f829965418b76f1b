"""The input contract: preprocessing checked against independent numpy/cv2 computations, the
card entry (new, old and none), and the model check on load."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from drive_viz.errors import ModelError
from drive_viz.model.contract import DAVE2_CONTRACT, ContractError, InputContract, OutputSpec
from drive_viz.model.preprocess import (
    input_to_rgb,
    preprocess_batch,
    preprocess_frame,
    preprocess_mask,
)


def camera_frame(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def yuv_by_hand(rgb: np.ndarray) -> np.ndarray:
    """BT.601 YUV as OpenCV defines COLOR_RGB2YUV (Y = .299 R + .587 G + .114 B,
    U = .492 (B - Y) + 128, V = .877 (R - Y) + 128), float64."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, 0.492 * (b - y) + 128, 0.877 * (r - y) + 128], axis=-1)


@pytest.mark.parametrize(("colour", "crop", "scale", "offset"), [
    ("rgb", (0.25, 0.1, 0, 0), 1 / 255, 0.0),
    ("rgb", (30, 10, 8, 12), 1 / 127.5, -1.0),
    ("bgr", (0, 0, 0, 0), 1.0, 0.0),
    ("bgr", (0.5, 0.0, 0.1, 0.1), 1 / 255, -0.5),
    ("yuv", (0.4, 0.1, 0, 0), 1.0, 0.0),
    ("yuv", (12, 0, 0, 0.25), 2.0, 3.0),
])
def test_preprocessing_matches_an_independent_computation(colour, crop, scale, offset) -> None:
    frame = camera_frame()
    contract = InputContract(input_size=(32, 48), crop=crop, interpolation="linear",
                             colour=colour, scale=scale, offset=offset)
    top, bottom, left, right = (int(round(s * v)) if v < 1 else int(v)
                                for s, v in zip((120, 120, 160, 160), crop, strict=True))
    region = frame[top:120 - bottom, left:160 - right]
    resized = cv2.resize(region, (48, 32), interpolation=cv2.INTER_LINEAR)
    if colour == "rgb":
        expected = resized.astype(np.float64)
    elif colour == "bgr":
        expected = resized[..., ::-1].astype(np.float64)
    else:
        expected = yuv_by_hand(resized)
    expected = expected * scale + offset
    got = preprocess_frame(frame, contract)
    assert got.dtype == np.float32 and got.shape == (32, 48, 3)
    # OpenCV's YUV is fixed-point, rounded to whole levels: one level of tolerance
    tolerance = (1.0 if colour == "yuv" else 1e-6) * abs(scale) + 1e-5
    np.testing.assert_allclose(got, expected, atol=tolerance)
    assert contract.crop_box(120, 160) == (top, 120 - bottom, left, 160 - right)
    # display undoes scale/offset and colour: back to the resized crop (YUV round trip +-2)
    np.testing.assert_allclose(input_to_rgb(got, contract).astype(int), resized.astype(int),
                               atol=0 if colour != "yuv" else 3)


@pytest.mark.parametrize(("interpolation", "flag"), [
    ("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA), ("nearest", cv2.INTER_NEAREST)])
def test_interpolation_is_cv2_resize_on_the_uint8_crop(interpolation, flag) -> None:
    frame = camera_frame(seed=1)
    contract = InputContract(input_size=(40, 50), crop=(0, 0, 0, 0), interpolation=interpolation,
                             colour="rgb")
    expected = cv2.resize(frame, (50, 40), interpolation=flag).astype(np.float32)
    np.testing.assert_array_equal(preprocess_frame(frame, contract), expected)


def todays_dave2_input(rgb: np.ndarray, crop_top: float = 0.4,
                       crop_bottom: float = 0.1) -> np.ndarray:
    """drive-viz's DAVE-2 preprocessing as it was before contracts: crop rows by fraction,
    area-resize to 200x66, RGB -> YUV, float32 0..255."""
    height = rgb.shape[0]
    top, bottom = int(round(height * crop_top)), height - int(round(height * crop_bottom))
    resized = cv2.resize(rgb[top:bottom], (200, 66), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_RGB2YUV).astype(np.float32)


def test_old_cards_and_no_card_give_todays_dave2_inputs(tmp_path) -> None:
    from drive_viz.model.dave2 import SHIPPED_MODEL, model_contract, read_card

    frames = [camera_frame(120, 160, 2), camera_frame(600, 800, 3)]
    shipped = model_contract(SHIPPED_MODEL)
    assert read_card(SHIPPED_MODEL)["contract"]["colour"] == "yuv"  # written by today's train
    nocard = model_contract(tmp_path / "elsewhere.keras")
    legacy = tmp_path / "legacy.keras"  # a card from before contracts (the old shipped card's)
    legacy.with_name("legacy.card.json").write_text(json.dumps(
        {"preprocessing": {"crop_top": 0.4, "crop_bottom": 0.1}}))
    old = tmp_path / "old.keras"
    old.with_name("old.card.json").write_text(json.dumps(
        {"preprocessing": {"crop_top": 0.3, "crop_bottom": 0.2}}))
    for frame in frames:
        for contract in (shipped, model_contract(legacy), nocard, DAVE2_CONTRACT):
            np.testing.assert_array_equal(preprocess_frame(frame, contract),
                                          todays_dave2_input(frame))
        np.testing.assert_array_equal(preprocess_frame(frame, model_contract(old)),
                                      todays_dave2_input(frame, 0.3, 0.2))
    np.testing.assert_array_equal(preprocess_batch(frames, shipped),
                                  np.stack([todays_dave2_input(f) for f in frames]))
    assert shipped.input_size == (66, 200) and shipped.steering == OutputSpec("steer", "linear")
    assert model_contract(legacy).steering == OutputSpec(None, "linear")


def test_mask_is_nearest_and_aligned_with_the_frame() -> None:
    mask = np.zeros((120, 160), np.uint8)
    mask[:, 80:] = 3
    contract = InputContract(input_size=(20, 40), crop=(10, 10, 0.25, 0), colour="rgb")
    view = preprocess_mask(mask, contract)
    assert view.shape == (20, 40) and set(np.unique(view)) == {0, 3}
    # the crop keeps columns 40..160: the boundary at column 80 lands a third of the way in
    assert (view[:, :13] == 0).all() and (view[:, 14:] == 3).all()


def test_card_round_trip_and_new_key_wins(tmp_path) -> None:
    from drive_viz.model.dave2 import model_contract

    contract = InputContract(input_size=(120, 160), crop=(0.1, 0, 5, 5), interpolation="nearest",
                             colour="bgr", scale=1 / 255, offset=-0.5,
                             steering=OutputSpec("angle", "bins:15:-1:1"),
                             throttle=OutputSpec(1))
    assert InputContract.from_json(json.loads(json.dumps(contract.to_json()))) == contract
    path = tmp_path / "m.keras"
    path.with_name("m.card.json").write_text(json.dumps(
        {"contract": contract.to_json(), "preprocessing": {"crop_top": 0.2, "crop_bottom": 0}}))
    assert model_contract(path) == contract
    assert contract.steering.bins == (15, -1.0, 1.0) and contract.steering.width == 15
    assert contract.same_input(InputContract(**{**contract.__dict__, "throttle": None}))
    assert not contract.same_input(DAVE2_CONTRACT)


@pytest.mark.parametrize(("entry", "words"), [
    ({"input_size": [66], "steering": {"output": 0}}, "input_size"),
    ({"input_size": [66, 200], "steering": {"output": 0}, "colour": "hsv"}, "colour"),
    ({"input_size": [66, 200], "steering": {"output": 0}, "interpolation": "cubic"},
     "interpolation"),
    ({"input_size": [66, 200], "steering": {"output": 0, "decode": "bins:1:0:1"}}, "bins"),
    ({"input_size": [66, 200], "steering": {"output": 0, "decode": "softmax"}}, "decode"),
    ({"input_size": [66, 200], "steering": {"output": 0}, "scale": 0}, "scale"),
    ({"input_size": [66, 200], "steering": {"output": 0}, "crop": {"top": 0.6, "bottom": 0.5}},
     "leaves no image"),
    ({"input_size": [66, 200], "steering": {"output": 0}, "gamma": 2}, "unknown field"),
    ({"input_size": [66, 200]}, "missing"),
])
def test_bad_card_entries_are_refused_in_one_line(tmp_path, entry, words) -> None:
    from drive_viz.model.dave2 import model_contract

    path = tmp_path / "m.keras"
    path.with_name("m.card.json").write_text(json.dumps({"contract": entry}))
    with pytest.raises(ModelError) as info:
        model_contract(path)
    message = str(info.value)
    assert "\n" not in message and "m.card.json" in message and words in message


def test_pixel_crop_larger_than_the_frame_is_refused() -> None:
    contract = InputContract(crop=(100, 30, 0, 0))
    with pytest.raises(ContractError, match="leaves no image"):
        contract.crop_box(120, 160)
    assert contract.crop_box(600, 800) == (100, 570, 0, 800)


def two_head_model(size=(24, 32), bins: int = 15):
    import keras

    inputs = keras.Input((*size, 3))
    x = keras.layers.Flatten()(inputs)
    angle = keras.layers.Dense(bins, activation="softmax", name="angle")(x)
    throttle = keras.layers.Dense(1, name="throttle")(x)
    return keras.Model(inputs, [angle, throttle])


def test_load_checks_the_model_against_its_contract(tmp_path) -> None:
    from drive_viz.model.dave2 import load_steering_model

    path = tmp_path / "pilot.keras"
    two_head_model().save(path)
    card = path.with_name("pilot.card.json")

    def write(**fields):
        contract = InputContract(input_size=(24, 32), colour="rgb",
                                 steering=OutputSpec("angle", "bins:15:-1:1"),
                                 throttle=OutputSpec("throttle"))
        card.write_text(json.dumps({"contract": {**contract.to_json(), **fields}}))

    write()
    assert len(load_steering_model(path).outputs) == 2
    for fields, words in (({"input_size": [66, 200]}, "input shape"),
                          ({"steering": {"output": "steer", "decode": "linear"}}, "'steer'"),
                          ({"steering": {"output": "angle", "decode": "linear"}}, "shape"),
                          ({"throttle": {"output": 5, "decode": "linear"}}, "out of range"),
                          ({"steering": {"output": None, "decode": "linear"}}, "2 outputs")):
        write(**fields)
        with pytest.raises(ModelError) as info:
            load_steering_model(path)
        assert "\n" not in str(info.value) and words in str(info.value)
        assert str(path) in str(info.value)
    card.unlink()  # no card: DAVE-2's contract, which this model does not fit
    with pytest.raises(ModelError, match="does not fit"):
        load_steering_model(path)
