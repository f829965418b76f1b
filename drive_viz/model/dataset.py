"""The training input pipeline: which frames train and validate, and a tf.data stream of them.

Frames are read only through ``open_recording`` and preprocessed only by ``preprocess_frame``.
Each frame is decoded once, on first use, into a :class:`FrameStore` of preprocessed uint8
inputs (39,600 bytes a frame): in RAM when that fits the budget, otherwise in a memory-mapped
temp file on disk, so recordings larger than memory train too. Later epochs read the store.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.errors import FrameError
from drive_viz.model.augment import Augmentation, SteeringGeometry
from drive_viz.model.contract import InputContract
from drive_viz.model.preprocess import INPUT_SHAPE, preprocess_frame
from drive_viz.recording.reader import Recording

FRAME_BYTES = math.prod(INPUT_SHAPE)
#: At most this share of the memory available at start is used to keep frames in RAM.
RAM_SHARE = 0.25


def available_memory() -> int:
    """Bytes of physical memory available now (a conservative 1 GiB where unknown)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 30


class FrameStore:
    """Preprocessed network inputs for a fixed list of (recording, row, camera) frames.

    ``get(ids)`` returns (len(ids), 66, 200, 3) uint8 YUV, exactly ``preprocess_frame`` of
    each frame (its values are whole numbers, so uint8 stores them losslessly). A frame is
    decoded the first time it is asked for. Safe to call from several threads: two threads
    decoding the same frame write the same bytes.
    """

    def __init__(self, recordings: Sequence[Recording], frames: Sequence[tuple[int, int, str]],
                 prep: InputContract, ram_budget: int | None = None) -> None:
        self.recordings = list(recordings)
        self.frames = list(frames)
        self.prep = prep
        budget = int(available_memory() * RAM_SHARE) if ram_budget is None else ram_budget
        shape = (len(self.frames), *INPUT_SHAPE)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if len(self.frames) * FRAME_BYTES <= budget:
            self.data: np.ndarray = np.empty(shape, np.uint8)
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="drive-viz-frames-")
            self.data = np.memmap(Path(self._tempdir.name) / "frames.u8", np.uint8, "w+",
                                  shape=shape)
        self.ready = np.zeros(len(self.frames), bool)

    @property
    def in_ram(self) -> bool:
        return self._tempdir is None

    def __len__(self) -> int:
        return len(self.frames)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), 66, 200, 3) uint8 preprocessed frames; FrameError names a bad image."""
        ids = np.asarray(ids, np.int64)
        for frame_id in ids[~self.ready[ids]]:
            recording, row, camera = self.frames[frame_id]
            rgb = self.recordings[recording].image(row, camera)
            self.data[frame_id] = preprocess_frame(rgb, self.prep).astype(np.uint8)
            self.ready[frame_id] = True
        return np.asarray(self.data[ids])

    def close(self) -> None:
        """Release the disk store, if any."""
        if self._tempdir is not None:
            del self.data
            self._tempdir.cleanup()
            self._tempdir = None


@dataclass
class Samples:
    """Training or validation samples: ``frame`` ids into a FrameStore, ``steer`` labels (N,)
    (side-camera corrections included), ``fov`` (N,) degrees of each frame's camera and
    ``weight`` (N,) sample weights (all ones unless rebalanced)."""

    frame: np.ndarray
    steer: np.ndarray
    fov: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


def split_by_time_blocks(times: np.ndarray, val_fraction: float, block_seconds: float,
                         gap_seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split one recording's frames (times (N,) in seconds) into train and validation masks.

    Time is cut into blocks of ``block_seconds``; ``round(val_fraction * blocks)`` blocks
    (at least one when there are two or more blocks), spread evenly with a seeded offset,
    validate. Training frames are the others that lie at least ``gap_seconds`` away from
    every validation frame, so neighbouring, nearly identical frames never straddle the split.
    Returns (train, val), two (N,) bool masks that never overlap.
    """
    times = np.asarray(times, np.float64)
    block = np.floor((times - times.min()) / block_seconds).astype(np.int64)
    blocks = np.unique(block)
    val = np.zeros(len(times), bool)
    if val_fraction > 0 and len(blocks) >= 2:
        count = min(len(blocks) - 1, max(1, round(val_fraction * len(blocks))))
        offset = np.random.default_rng(seed).uniform(0, 1)
        chosen = blocks[np.floor((np.arange(count) + offset) * len(blocks) / count)
                        .astype(np.int64)]
        val = np.isin(block, chosen)
    if not val.any():
        return np.ones(len(times), bool), val
    val_times = np.sort(times[val])
    position = np.searchsorted(val_times, times)
    before = np.abs(times - val_times[np.clip(position - 1, 0, len(val_times) - 1)])
    after = np.abs(val_times[np.clip(position, 0, len(val_times) - 1)] - times)
    train = ~val & (np.minimum(before, after) >= gap_seconds)
    return train, val


def rebalance_weights(steer: np.ndarray, bins: int = 21) -> np.ndarray:
    """Sample weights (N,) that reduce the dominance of common (near-zero) steering: each
    sample weighs 1 / sqrt(count of its histogram bin over [-1, 1]), normalized to mean 1."""
    edges = np.linspace(-1.0, 1.0, bins + 1)
    which = np.clip(np.digitize(steer, edges) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    weights = 1.0 / np.sqrt(counts[which])
    return (weights / weights.mean()).astype(np.float32)


def _frame_error(exc: Exception) -> FrameError:
    return exc if isinstance(exc, FrameError) else FrameError(f"{type(exc).__name__}: {exc}")


def training_dataset(store: FrameStore, samples: Samples, *, batch_size: int, epochs: int,
                     seed: int, augmentation: Augmentation | None,
                     geometry: SteeringGeometry) -> tuple[Any, int]:
    """A tf.data stream of ``epochs`` shuffled epochs of (x, y[, w]) batches and its steps per
    epoch. x (B, 66, 200, 3) float32, y (B, 1) float32, w (B,) float32 (only with weights that
    are not all ones). Epoch ``e`` is shuffled by, and batch ``b`` augmented from, random
    generators seeded by (seed, e[, b]): the same seed gives the same stream."""
    import tensorflow as tf

    batch_size = min(batch_size, len(samples))
    steps = len(samples) // batch_size
    order = np.stack([np.random.default_rng([seed, epoch]).permutation(len(samples))
                      [: steps * batch_size].reshape(steps, batch_size) for epoch in range(epochs)])
    epoch_of = np.repeat(np.arange(epochs), steps)
    step_of = np.tile(np.arange(steps), epochs)
    weighted = not np.all(samples.weight == 1.0)

    def load(epoch: np.int64, step: np.int64, positions: np.ndarray) -> tuple[np.ndarray, ...]:
        try:
            frames = store.get(samples.frame[positions])
        except Exception as exc:  # noqa: BLE001 - surfaced as a one-line FrameError by train
            raise _frame_error(exc) from None
        steer = samples.steer[positions]
        if augmentation is not None:
            rng = np.random.default_rng([seed, int(epoch), int(step)])
            x, y = augmentation.apply(frames, steer, samples.fov[positions], geometry, rng)
        else:
            x, y = frames.astype(np.float32), steer.astype(np.float32)
        return x, y[:, None], samples.weight[positions]

    def load_tf(epoch: Any, step: Any, positions: Any) -> tuple[Any, ...]:
        x, y, w = tf.numpy_function(load, [epoch, step, positions],
                                    (tf.float32, tf.float32, tf.float32), stateful=False)
        x = tf.ensure_shape(x, (batch_size, *INPUT_SHAPE))
        y = tf.ensure_shape(y, (batch_size, 1))
        w = tf.ensure_shape(w, (batch_size,))
        return (x, y, w) if weighted else (x, y)

    dataset = tf.data.Dataset.from_tensor_slices(
        (epoch_of, step_of, order.reshape(epochs * steps, batch_size)))
    dataset = dataset.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def validation_dataset(store: FrameStore, samples: Samples, batch_size: int) -> Any:
    """A tf.data stream of (x, y) validation batches in time order, no augmentation."""
    import tensorflow as tf

    def load(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            frames = store.get(samples.frame[positions])
        except Exception as exc:  # noqa: BLE001 - surfaced as a one-line FrameError by train
            raise _frame_error(exc) from None
        return frames.astype(np.float32), samples.steer[positions].astype(np.float32)[:, None]

    def load_tf(positions: Any) -> tuple[Any, Any]:
        x, y = tf.numpy_function(load, [positions], (tf.float32, tf.float32), stateful=False)
        return tf.ensure_shape(x, (None, *INPUT_SHAPE)), tf.ensure_shape(y, (None, 1))

    dataset = tf.data.Dataset.range(len(samples)).batch(batch_size)
    dataset = dataset.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
