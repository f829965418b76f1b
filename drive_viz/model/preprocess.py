"""The one preprocessing step between a camera frame and a network's input.

Every caller (training, replay, live, evaluation, inspect, features) turns camera frames into
network inputs through these functions and the model's ``InputContract``
(``drive_viz.model.contract``): crop, resize on the uint8 frame, colour conversion, then scale
and offset in float32. Keeping it outside the model graph gives every caller the same input
view and the same crop box to place maps back on the camera frame, lets one model serve
cameras of any size, and runs in OpenCV (about 2,500 frames/s for DAVE-2). DAVE-2's own pixel
normalization (x / 127.5 - 1) is the model's first layer, so its contract has scale 1,
offset 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from drive_viz.model.contract import DAVE2_CONTRACT, InputContract

#: DAVE-2's input (rows, columns, channels); other models' come from their contract.
INPUT_SHAPE = DAVE2_CONTRACT.input_shape
INPUT_HEIGHT, INPUT_WIDTH = DAVE2_CONTRACT.input_size

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                  "nearest": cv2.INTER_NEAREST}
_TO_COLOUR = {"rgb": None, "bgr": cv2.COLOR_RGB2BGR, "yuv": cv2.COLOR_RGB2YUV}
_FROM_COLOUR = {"rgb": None, "bgr": cv2.COLOR_BGR2RGB, "yuv": cv2.COLOR_YUV2RGB}


def _crop_resize(image: np.ndarray, contract: InputContract, interpolation: int) -> np.ndarray:
    top, bottom, left, right = contract.crop_box(image.shape[0], image.shape[1])
    rows, columns = contract.input_size
    return cv2.resize(image[top:bottom, left:right], (columns, rows),
                      interpolation=interpolation)


def preprocess_frame(rgb: np.ndarray, contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """RGB uint8 (H, W, 3) camera frame -> network input float32 (rows, columns, 3) of the
    contract's ``input_size``: crop, resize (uint8), colour, then * scale + offset."""
    return convert_pixels(_crop_resize(rgb, contract, _INTERPOLATION[contract.interpolation]),
                          contract)


def convert_pixels(rgb: np.ndarray, contract: InputContract) -> np.ndarray:
    """The last two steps of ``preprocess_frame`` alone: RGB uint8 (h, w, 3) -> float32
    (h, w, 3) in the contract's colour order, * scale + offset."""
    code = _TO_COLOUR[contract.colour]
    coloured = rgb if code is None else cv2.cvtColor(rgb, code)
    out = coloured.astype(np.float32)
    if contract.scale != 1.0:
        out *= np.float32(contract.scale)
    if contract.offset != 0.0:
        out += np.float32(contract.offset)
    return out


def preprocess_mask(mask: np.ndarray, contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """A class mask uint8 (H, W) -> the network's view, uint8 (rows, columns), nearest-neighbour
    so labels stay labels. Pixel-aligned with ``preprocess_frame`` of the same camera frame."""
    return _crop_resize(mask, contract, cv2.INTER_NEAREST)


def preprocess_batch(frames: list[np.ndarray] | np.ndarray,
                     contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """A list of RGB frames -> (N, rows, columns, 3) float32 network inputs."""
    out = np.empty((len(frames), *contract.input_shape), np.float32)
    for i, frame in enumerate(frames):
        out[i] = preprocess_frame(frame, contract)
    return out


def input_to_rgb(x: np.ndarray, contract: InputContract = DAVE2_CONTRACT) -> np.ndarray:
    """A network input (rows, columns, 3) float32 back to RGB uint8, for display: undo the
    offset and scale, clip to 0..255, undo the colour conversion."""
    values = np.asarray(x, np.float32)
    if contract.offset != 0.0 or contract.scale != 1.0:
        values = np.rint((values - np.float32(contract.offset)) / np.float32(contract.scale))
    pixels = np.clip(values, 0, 255).astype(np.uint8)
    code = _FROM_COLOUR[contract.colour]
    return pixels if code is None else cv2.cvtColor(pixels, code)
