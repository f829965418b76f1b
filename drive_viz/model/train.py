"""``drive-viz train``: fit DAVE-2 to recordings; write the model, its card and its curves.

Outputs, all written through temp names and renamed at the end (an interrupted run leaves
no model that looks complete): ``MODEL.keras``, ``MODEL.card.json`` (see ``card_path``) and
``MODEL.curves.png`` (loss and MAE per epoch, drawn by ``drive_viz.render.charts``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from drive_viz import __version__
from drive_viz.atomic import write_atomic
from drive_viz.errors import DriveVizError, FrameError, RecordingError
from drive_viz.model.augment import Augmentation, SteeringGeometry, side_camera_correction
from drive_viz.model.contract import DAVE2_CONTRACT, InputContract, OutputSpec
from drive_viz.model.dataset import (
    FrameStore,
    Samples,
    rebalance_weights,
    split_by_time_blocks,
    training_dataset,
    validation_dataset,
)
from drive_viz.model.dave2 import (
    build_dave2,
    card_path,
    load_steering_model,
    model_contract,
)
from drive_viz.recording.format import CameraSpec, image_column
from drive_viz.recording.reader import Recording, open_recording
from drive_viz.render.charts import line_chart
from drive_viz.render.png import png_bytes

CARD_FORMAT = "drive-viz-model-card"
#: Other cameras count as side cameras only when they look forward (|yaw| below this, degrees).
SIDE_CAMERA_MAX_YAW = 45.0
#: Learning-rate schedules: Adam at a constant rate, or cosine decay from ``lr`` to 0 over all
#: ``epochs`` (the last weights then sit near a minimum instead of wherever the last
#: full-rate steps left them).
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that determines a training run (the card's ``command`` rebuilds it)."""

    recordings: list[Path]
    out: Path
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    activation: str = "elu"
    head: str = "flatten"
    side_cameras: bool = True
    augment: bool = True
    rebalance: bool = False
    val_fraction: float = 0.2
    patience: int = 5
    camera: str = "center"
    block_seconds: float = 4.0
    gap_seconds: float = 1.0
    recovery: float = SteeringGeometry.recovery
    heldout: list[Path] = field(default_factory=list)
    compare_with: Path | None = None
    unsafe_model: bool = False  # load --compare-with even if it needs unsafe deserialization
    contract: InputContract = field(
        default_factory=lambda: replace(DAVE2_CONTRACT, steering=OutputSpec("steer")))

    def __post_init__(self) -> None:
        checks = {
            "--epochs must be at least 1": self.epochs >= 1,
            "--batch-size must be at least 1": self.batch_size >= 1,
            "--lr must be positive": self.lr > 0,
            "--val-fraction must be in [0, 0.9]": 0 <= self.val_fraction <= 0.9,
            "--patience must be at least 1": self.patience >= 1,
            "--recovery-distance must be positive": self.recovery > 0,
            "--block-seconds must be positive": self.block_seconds > 0,
            "--gap-seconds must not be negative": self.gap_seconds >= 0,
            "--lr-schedule must be constant or cosine": self.lr_schedule in LR_SCHEDULES,
        }
        for message, ok in checks.items():
            if not ok:
                raise DriveVizError(message)
        if self.out.suffix != ".keras":
            raise DriveVizError(f"{self.out}: the model file name must end in .keras")

    def command(self) -> str:
        """The ``drive-viz train`` command line that repeats this run."""
        words = ["drive-viz", "train", *map(str, self.recordings), "--out", str(self.out),
                 "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                 "--lr", repr(self.lr), "--lr-schedule", self.lr_schedule,
                 "--seed", str(self.seed),
                 "--activation", self.activation, "--head", self.head,
                 "--side-cameras" if self.side_cameras else "--no-side-cameras",
                 "--val-fraction", repr(self.val_fraction), "--patience", str(self.patience),
                 "--camera", self.camera, "--block-seconds", repr(self.block_seconds),
                 "--gap-seconds", repr(self.gap_seconds),
                 "--recovery-distance", repr(self.recovery)]
        if not self.augment:
            words.append("--no-augment")
        if self.rebalance:
            words.append("--rebalance")
        for heldout in self.heldout:
            words += ["--heldout", str(heldout)]
        if self.compare_with is not None:
            words += ["--compare-with", str(self.compare_with)]
        if self.unsafe_model:
            words.append("--unsafe-model")
        return shlex.join(words)


def _open(path: Path) -> Recording:
    try:
        return open_recording(path)
    except DriveVizError:
        raise
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _geometry(recordings: list[Recording], recovery: float) -> SteeringGeometry:
    """Vehicle geometry from the first recording whose metadata ``extra`` states it
    (``wheelbase_m``, ``max_steer_deg``, as the synthetic world writes), else the defaults."""
    for recording in recordings:
        extra = recording.meta.extra
        if "wheelbase_m" in extra or "max_steer_deg" in extra:
            try:
                return SteeringGeometry(
                    wheelbase=float(extra.get("wheelbase_m", SteeringGeometry.wheelbase)),
                    max_steer=float(extra.get("max_steer_deg", SteeringGeometry.max_steer)),
                    recovery=recovery)
            except (TypeError, ValueError) as exc:
                raise RecordingError(f"{recording.path}: bad vehicle geometry in meta.json "
                                     f"extra ({exc})") from None
    return SteeringGeometry(recovery=recovery)


def relative_camera(side: CameraSpec, main: CameraSpec) -> CameraSpec:
    """``side``'s pose relative to the main camera (the car's labels belong to ``main``)."""
    return dataclasses.replace(side, y=side.y - main.y, yaw=side.yaw - main.yaw)


@dataclass
class TrainingData:
    """Frames to train and validate on, and what the card says about them."""

    store: FrameStore
    train: Samples
    val: Samples
    recordings: list[dict[str, Any]]
    side_cameras: list[dict[str, Any]]
    train_mean_steer: float


def collect_samples(recordings: list[Recording], config: TrainConfig,
                    geometry: SteeringGeometry, ram_budget: int | None = None) -> TrainingData:
    """Split every recording by time blocks and list training samples (main camera plus
    forward-looking side cameras with corrected labels) and validation samples (main camera).
    RecordingError when the camera is missing or no frame is usable."""
    frames: list[tuple[int, int, str]] = []
    train_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # frame ids, steer, fov
    val_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    described: list[dict[str, Any]] = []
    sides: dict[str, dict[str, Any]] = {}
    main_steer: list[np.ndarray] = []
    for number, recording in enumerate(recordings):
        if config.camera not in recording.cameras:
            raise RecordingError(f"{recording.path}: no camera {config.camera!r} (it has "
                                 f"{', '.join(recording.cameras)}); pick one with --camera")
        main = recording.meta.camera(config.camera)
        cameras = [(main, 0.0)]
        if config.side_cameras:
            for spec in recording.meta.cameras:
                relative = relative_camera(spec, main)
                if spec.name != main.name and abs(relative.yaw) < SIDE_CAMERA_MAX_YAW:
                    correction = side_camera_correction(relative, geometry)
                    cameras.append((spec, correction))
                    sides[spec.name] = {"name": spec.name, "y": relative.y,
                                        "yaw": relative.yaw, "correction": correction}
        table = recording.table
        steer = table["steer"].to_numpy(np.float64)
        usable = np.isfinite(steer) & np.isfinite(table["t"].to_numpy(np.float64))
        for spec, _ in cameras:
            usable &= table[image_column(spec.name)].notna().to_numpy()
        rows = np.flatnonzero(usable)
        described.append({"path": str(recording.path), "source": recording.source,
                          "fps": recording.fps, "frames": len(recording),
                          "usable_frames": int(len(rows))})
        if len(rows) == 0:
            continue
        train, val = split_by_time_blocks(table["t"].to_numpy(np.float64)[rows],
                                          config.val_fraction, config.block_seconds,
                                          config.gap_seconds, config.seed + number)
        described[-1].update(train_frames=int(train.sum()), val_frames=int(val.sum()))
        main_steer.append(steer[rows[train]])
        for spec, correction in cameras:
            first = len(frames)
            frames += [(number, int(row), spec.name) for row in rows[train]]
            train_parts.append((np.arange(first, len(frames)),
                                np.clip(steer[rows[train]] + correction, -1, 1),
                                np.full(int(train.sum()), spec.fov)))
        first = len(frames)
        frames += [(number, int(row), main.name) for row in rows[val]]
        val_parts.append((np.arange(first, len(frames)), steer[rows[val]],
                          np.full(int(val.sum()), main.fov)))
    names = ", ".join(str(r.path) for r in recordings)
    train, val = _samples(train_parts), _samples(val_parts)
    if len(train) == 0:
        raise RecordingError(f"{names}: no usable frames to train on (camera {config.camera!r})")
    if config.val_fraction > 0 and len(val) == 0:
        raise RecordingError(
            f"{names}: too short for a validation split in {config.block_seconds:g} s blocks "
            "(record longer, lower --block-seconds, or pass --val-fraction 0)")
    if config.rebalance:
        train.weight = rebalance_weights(train.steer)
    store = FrameStore(recordings, frames, config.contract, ram_budget=ram_budget)
    return TrainingData(store, train, val, described, list(sides.values()),
                        float(np.concatenate(main_steer).mean()))


def _samples(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Samples:
    if not parts:
        return Samples(np.zeros(0, np.int64), *(np.zeros(0, np.float32) for _ in range(3)))
    ids, steer, fov = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Samples(ids.astype(np.int64), steer.astype(np.float32), fov.astype(np.float32),
                   np.ones(len(ids), np.float32))


def software_versions() -> dict[str, str]:
    """Versions of drive-viz and the libraries that determine a model file, for its card."""
    import keras
    import tensorflow as tf

    return {"drive-viz": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__}


def evaluate_heldout(model: Any, path: Path, config: TrainConfig, baseline_steer: float
                     ) -> dict[str, Any]:
    """Steering MAE of ``model`` on every main-camera frame of a recording not trained on, and
    the MAE of always predicting ``baseline_steer`` (the training mean)."""
    recording = _open(path)
    recording.meta.camera(config.camera)
    steer = recording.steering()
    rows = np.flatnonzero(np.isfinite(steer)
                          & recording.table[image_column(config.camera)].notna().to_numpy())
    if len(rows) == 0:
        raise RecordingError(f"{path}: no usable frames to evaluate")
    store = FrameStore([recording], [(0, int(r), config.camera) for r in rows],
                       config.contract)
    samples = Samples(np.arange(len(rows)), steer[rows].astype(np.float32),
                      np.zeros(len(rows), np.float32), np.ones(len(rows), np.float32))
    try:
        predicted = model.predict(validation_dataset(store, samples, config.batch_size),
                                  verbose=0)[:, 0]
    finally:
        store.close()
    return {"recording": str(path), "source": recording.source,
            "seed": recording.meta.extra.get("seed"), "frames": int(len(rows)),
            "mae": float(np.mean(np.abs(predicted - steer[rows]))),
            "baseline_mae": float(np.mean(np.abs(baseline_steer - steer[rows]))),
            "baseline_steer": baseline_steer}


def model_head(model: Any) -> str:
    """``"gap"`` if the model pools its last conv layer globally, else ``"flatten"``."""
    import keras

    pooled = any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in model.layers)
    return "gap" if pooled else "flatten"


def _comparison_model(config: TrainConfig) -> Any:
    """The ``--compare-with`` model, refused early if it cannot be compared on this data."""
    path = config.compare_with
    other = load_steering_model(path, unsafe=config.unsafe_model)
    if model_head(other) == config.head:
        raise DriveVizError(f"--compare-with {path}: it has the same head ({config.head}) as "
                            "the model being trained; compare a flatten head with a gap head")
    if not model_contract(path).same_input(config.contract):
        raise DriveVizError(f"--compare-with {path}: it has another input contract, "
                            "so its inputs would differ")
    if config.val_fraction == 0:
        raise DriveVizError("--compare-with needs validation frames (--val-fraction > 0)")
    return other


def compare_heads(model: Any, other: Any, data: TrainingData, config: TrainConfig
                  ) -> dict[str, Any]:
    """Steering MAE of the trained ``model`` and of ``other`` on the same validation frames:
    ``{"<head>_val_mae": ..., "<other head>_val_mae": ..., "compared_model", "data"}``."""
    truth = data.val.steer.astype(np.float64)
    maes = {}
    for name, net in ((config.head, model), (model_head(other), other)):
        predicted = net.predict(validation_dataset(data.store, data.val, config.batch_size),
                                verbose=0)[:, 0]
        maes[f"{name}_val_mae"] = float(np.mean(np.abs(predicted - truth)))
    return {**maes, "compared_model": str(config.compare_with),
            "data": {"recordings": [entry["path"] for entry in data.recordings],
                     "camera": config.camera, "val_frames": len(data.val),
                     "split": f"time blocks of {config.block_seconds:g} s, val fraction "
                              f"{config.val_fraction:g}, seed {config.seed}"}}


def _tf_error_to_frame_error(exc: Exception) -> FrameError:
    """The one-line FrameError message inside a TensorFlow error raised by the input stream."""
    text = str(getattr(exc, "message", exc))
    for line in text.splitlines():
        if "FrameError:" in line:
            return FrameError(line.split("FrameError:", 1)[1].strip())
    return FrameError(f"reading frames failed ({text.splitlines()[0] if text else exc})")


def refit_output_bias(model: Any, store: FrameStore, samples: Samples, flip: float,
                      batch_size: int = 256) -> float:
    """Set the steering output's bias to the value that minimizes the training loss for the
    other, fixed weights, and return the change.

    Why: the output's mean is not pinned by stochastic training. Adam moves all 252k weights
    at once, and each step shifts the mean prediction; at a constant rate of 1e-3 the shipped
    model ended with a mean residual of -0.009 on its own training frames, and at 1e-4 the
    residual still swung between -0.009 and +0.003 from one epoch to the next. For the MSE the
    optimal bias is closed-form: the one that makes the sample-weighted mean residual over the
    training distribution 0. That distribution is the training frames (N,) and, with
    probability ``flip``, their mirror images with negated labels; the other augmentations
    (shifts with their corrections, luma) are symmetric about it and are left out.
    """
    layer = model.get_layer(name="steer")
    kernel, bias = layer.get_weights()
    total, weight = 0.0, 0.0
    for start in range(0, len(samples), batch_size):
        ids = np.arange(start, min(start + batch_size, len(samples)))
        frames = store.get(samples.frame[ids]).astype(np.float32)
        steer, w = samples.steer[ids].astype(np.float64), samples.weight[ids].astype(np.float64)
        residual = (1.0 - flip) * (model.predict_on_batch(frames)[:, 0] - steer)
        if flip > 0:
            residual += flip * (model.predict_on_batch(frames[:, :, ::-1])[:, 0] + steer)
        total += float(np.sum(w * residual))
        weight += float(np.sum(w))
    change = -total / weight
    layer.set_weights([kernel, bias + np.float32(change)])
    return change


def compile_for_training(model: Any, lr: float, steps_per_execution: int = 1,
                         decay_steps: int | None = None) -> Any:
    """Compile ``model`` as ``train`` fits it: Adam at learning rate ``lr`` (decaying to 0 on
    a cosine over ``decay_steps`` optimizer steps when given), MSE loss, MAE metric;
    ``steps_per_execution`` train steps per traced call. Returns the model."""
    import keras

    rate = lr if decay_steps is None else keras.optimizers.schedules.CosineDecay(lr, decay_steps)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
                  steps_per_execution=steps_per_execution)
    return model


def train(config: TrainConfig, verbose: int = 1, ram_budget: int | None = None,
          deterministic: bool = True) -> dict[str, Any]:
    """Train DAVE-2 as ``config`` says, write model + card + curves; return the card.

    ``deterministic`` turns on TensorFlow's op determinism, for the rest of the process (TF
    has no public way to turn it off again); the seed fixes initialization, data order and
    augmentation either way. ``ram_budget`` (bytes) overrides the frame store's RAM limit.
    """
    import keras
    import tensorflow as tf

    started = time.monotonic()
    try:  # an unwritable --out fails now, not after the training
        config.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DriveVizError(f"{config.out.parent}: cannot create ({exc.strerror or exc})") \
            from None
    other = _comparison_model(config) if config.compare_with is not None else None
    recordings = [_open(Path(p)) for p in config.recordings]
    geometry = _geometry(recordings, config.recovery)
    data = collect_samples(recordings, config, geometry, ram_budget)
    augmentation = Augmentation() if config.augment else None
    keras.utils.set_random_seed(config.seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        train_stream, steps = training_dataset(
            data.store, data.train, batch_size=config.batch_size, epochs=config.epochs,
            seed=config.seed, augmentation=augmentation, geometry=geometry)
        decay = steps * config.epochs if config.lr_schedule == "cosine" else None
        model = compile_for_training(build_dave2(config.activation, config.head,
                                                 seed=config.seed), config.lr,
                                     decay_steps=decay)
        validating = len(data.val) > 0
        monitor = "val_loss" if validating else "loss"
        stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience,
                                                restore_best_weights=True)
        try:
            with _sigint_stops_training() as interrupt:
                history = model.fit(
                    train_stream, epochs=config.epochs, steps_per_epoch=steps,
                    validation_data=(validation_dataset(data.store, data.val, config.batch_size)
                                     if validating else None),
                    callbacks=[stopper, interrupt], shuffle=False, verbose=verbose).history
            if interrupt.requested:
                raise KeyboardInterrupt
            bias_change = refit_output_bias(model, data.store, data.train,
                                            augmentation.flip if augmentation else 0.0)
            heldout = [evaluate_heldout(model, Path(p), config, data.train_mean_steer)
                       for p in config.heldout]
            comparison = compare_heads(model, other, data, config) if other is not None \
                else None
        except tf.errors.OpError as exc:
            raise _tf_error_to_frame_error(exc) from None
    finally:
        data.store.close()
    history = {k: [float(v) for v in values] for k, values in history.items()}
    best = int(np.argmin(history[monitor]))
    card = {
        "format": CARD_FORMAT,
        "version": 1,
        "model": config.out.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "architecture": "DAVE-2 (Bojarski et al. 2016)",
        "activation": config.activation,
        "head": config.head,
        "parameters": int(model.count_params()),
        "contract": config.contract.to_json(),
        "camera": config.camera,
        "recordings": data.recordings,
        "side_cameras": data.side_cameras,
        "samples": {"train": len(data.train), "val": len(data.val)},
        "train_mean_steer": data.train_mean_steer,
        "hyperparameters": {
            "max_epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
            "lr_schedule": config.lr_schedule,
            "optimizer": "adam", "loss": "mse", "patience": config.patience,
            "val_fraction": config.val_fraction, "block_seconds": config.block_seconds,
            "gap_seconds": config.gap_seconds, "side_cameras": config.side_cameras,
            "augment": config.augment, "rebalance": config.rebalance},
        "geometry": geometry.to_json(),
        "augmentation": augmentation.to_json() if augmentation else None,
        "seed": config.seed,
        "epochs_run": len(history["loss"]),
        "best_epoch": best + 1,
        "final": {k: v[-1] for k, v in history.items()},
        "best": {k: v[best] for k, v in history.items()},
        "output_bias_refit": bias_change,
        "history": history,
        "heldout": heldout[0] if len(heldout) == 1 else heldout or None,
        "comparison": comparison,
        "training_seconds": round(time.monotonic() - started, 1),
        "versions": software_versions(),
        "command": config.command(),
    }
    # Save an uncompiled copy: the optimizer state would triple the file for no use in replay.
    trained = build_dave2(config.activation, config.head)
    trained.set_weights(model.get_weights())
    write_outputs(trained, card, draw_curves(history, best), config.out)
    return card


@contextmanager
def _sigint_stops_training() -> Iterator[Any]:
    """A Keras callback that ends ``fit`` at the next batch once Ctrl-C (SIGINT) arrives
    (``drive_viz.interrupt.stop_requests``: a KeyboardInterrupt raised at an arbitrary point
    inside ``fit`` can surface from TensorFlow's internals as an unrelated error with a
    traceback). Its ``requested`` tells the caller, which then raises KeyboardInterrupt itself,
    before anything is written; a second Ctrl-C interrupts at once."""
    import keras

    from drive_viz.interrupt import stop_requests

    with stop_requests() as request:

        class StopOnInterrupt(keras.callbacks.Callback):
            @property
            def requested(self) -> bool:
                return request.requested

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                if request.requested:
                    self.model.stop_training = True

        yield StopOnInterrupt()


def curves_path(model_path: str | Path) -> Path:
    """Where a model's training curves live: ``MODEL.keras`` -> ``MODEL.curves.png``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".curves.png")


def write_outputs(model: Any, card: dict[str, Any], curves: np.ndarray, out: Path) -> None:
    """Save model, card and curves (RGB uint8 (H, W, 3)) through temp names; the model file
    appears last."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.keras")
    try:
        model.save(partial)
        png = png_bytes(curves, str(curves_path(out)))
        if out.exists():
            out.unlink()
        write_atomic(card_path(out), json.dumps(card, indent=2).encode("utf-8"))
        write_atomic(curves_path(out), png)
        os.replace(partial, out)
    except OSError as exc:
        raise DriveVizError(f"{out}: cannot write ({exc.strerror or exc})") from None
    finally:
        partial.unlink(missing_ok=True)


def draw_curves(history: dict[str, list[float]], best: int, size: tuple[int, int] = (900, 360)
                ) -> np.ndarray:
    """Training curves as an RGB uint8 image of ``size`` (width, height) pixels: one chart for
    the loss (MSE, log scale) and one for the MAE, train and validation per epoch, the best
    epoch marked (``drive_viz.render.charts``)."""
    width, height = size
    panels = []
    for key, title, log, panel_width in (("loss", "loss (MSE)", True, width - width // 2),
                                         ("mae", "MAE", False, width // 2)):
        series = {name: history[k] for name, k in (("train", key), ("validation", f"val_{key}"))
                  if k in history}
        epochs = np.arange(1, max(len(v) for v in series.values()) + 1)
        panels.append(line_chart(title, epochs, series, x_title="epoch",
                                 y_title=f"{title}{', log scale' if log else ''}", log_y=log,
                                 markers={best + 1: f"best {best + 1}"},
                                 size=(panel_width, height)))
    return np.concatenate(panels, axis=1)


def keras_verbosity(progress: bool, stream: TextIO) -> int:
    """Keras ``fit`` verbosity: 1 (a progress bar redrawn in place) only when ``progress`` is
    wanted and ``stream`` is a terminal; else 2, one plain line per epoch, which reads well in
    a log file."""
    return 1 if progress and stream.isatty() else 2


def baseline_warning(heldout: dict[str, Any]) -> str | None:
    """A warning when a held-out result (``evaluate_heldout``) has an MAE no better than
    always predicting the training mean steering; None when the model beats it."""
    if heldout["mae"] < heldout["baseline_mae"]:
        return None
    return (f"held-out {heldout['recording']}: the model's MAE {heldout['mae']:.4f} is no better "
            f"than always predicting the training mean steering "
            f"({heldout['baseline_steer']:+.3f}, MAE {heldout['baseline_mae']:.4f}); it has not "
            "learned to steer on this drive")


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz train`` command."""
    config = TrainConfig(
        recordings=[Path(p) for p in args.recordings], out=Path(args.out), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, seed=args.seed,
        activation=args.activation,
        head=args.head, side_cameras=args.side_cameras, augment=not args.no_augment,
        rebalance=args.rebalance, val_fraction=args.val_fraction, patience=args.patience,
        camera=args.camera, block_seconds=args.block_seconds, gap_seconds=args.gap_seconds,
        recovery=args.recovery_distance, heldout=[Path(p) for p in args.heldout or []],
        compare_with=Path(args.compare_with) if args.compare_with else None,
        unsafe_model=args.unsafe_model)
    card = train(config, verbose=0 if args.quiet else keras_verbosity(args.progress, sys.stdout))
    best = card["best"]
    summary = ", ".join(f"{k} {v:.4f}" for k, v in best.items())
    print(f"wrote {config.out} (+ card, curves): {card['epochs_run']} epochs, best epoch "
          f"{card['best_epoch']}: {summary}")
    heldout = card["heldout"]
    for entry in heldout if isinstance(heldout, list) else [heldout] if heldout else []:
        print(f"held-out {entry['recording']}: MAE {entry['mae']:.4f} vs. "
              f"{entry['baseline_mae']:.4f} for always predicting the training mean")
        warning = baseline_warning(entry)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    if card["comparison"]:
        maes = ", ".join(f"{k} {v:.4f}" for k, v in card["comparison"].items()
                         if k.endswith("_val_mae"))
        print(f"same validation frames: {maes}")
    return 0
