"""The one preprocessing step between a camera frame and the network's input.

Why it sits outside the model graph: attention maps are computed with respect to the
network's input, the 66x200 YUV view, and the renderer must map them back onto the camera
frame. Keeping crop + resize + RGB->YUV in this shared function (used identically by
training, replay, live and evaluation) gives every caller the same input view and the same
crop box to map maps back with, lets one model serve cameras of any size, and runs in OpenCV
at about 2,500 frames/s. The pixel normalization (x / 127.5 - 1) is the model's first layer,
as in NVIDIA's design, so the model file alone defines how its input is scaled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

INPUT_HEIGHT = 66
INPUT_WIDTH = 200
INPUT_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 3)


@dataclass(frozen=True)
class Preprocessing:
    """Crop ``crop_top`` of the frame's height (sky) and ``crop_bottom`` (hood), as fractions,
    then resize to 200x66 and convert RGB to YUV. Stored in each model's card."""

    crop_top: float = 0.40
    crop_bottom: float = 0.10

    def __post_init__(self) -> None:
        if not (0 <= self.crop_top < 1 and 0 <= self.crop_bottom < 1
                and self.crop_top + self.crop_bottom < 0.95):
            raise ValueError(f"crop fractions {self.crop_top}, {self.crop_bottom} leave no image")

    def crop_rows(self, height: int) -> tuple[int, int]:
        """First and one-past-last image row kept from a frame ``height`` pixels high."""
        top = int(round(height * self.crop_top))
        bottom = height - int(round(height * self.crop_bottom))
        return top, bottom

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, float] | None) -> Preprocessing:
        return cls(**data) if data else cls()


DEFAULT_PREPROCESSING = Preprocessing()


def preprocess_frame(rgb: np.ndarray, prep: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """RGB uint8 (H, W, 3) camera frame -> network input, YUV float32 (66, 200, 3) in [0, 255]."""
    top, bottom = prep.crop_rows(rgb.shape[0])
    cropped = rgb[top:bottom]
    resized = cv2.resize(cropped, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_RGB2YUV).astype(np.float32)


def preprocess_mask(mask: np.ndarray, prep: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """A class mask uint8 (H, W) -> the network's view, uint8 (66, 200), nearest-neighbour so
    labels stay labels. Pixel-aligned with ``preprocess_frame`` of the same camera frame."""
    top, bottom = prep.crop_rows(mask.shape[0])
    return cv2.resize(mask[top:bottom], (INPUT_WIDTH, INPUT_HEIGHT),
                      interpolation=cv2.INTER_NEAREST)


def preprocess_batch(frames: list[np.ndarray] | np.ndarray,
                     prep: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """A list of RGB frames -> (N, 66, 200, 3) float32 network inputs."""
    out = np.empty((len(frames), *INPUT_SHAPE), np.float32)
    for i, frame in enumerate(frames):
        out[i] = preprocess_frame(frame, prep)
    return out


def input_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """A network input (66, 200, 3) YUV float32 back to RGB uint8, for display."""
    return cv2.cvtColor(np.clip(yuv, 0, 255).astype(np.uint8), cv2.COLOR_YUV2RGB)
