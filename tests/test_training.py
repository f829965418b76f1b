"""Training pipeline: shared preprocessing, label-consistent augmentation, time-block split,
a tiny training run, the model card, and one-line errors for bad input."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from drive_viz.cli import main
from drive_viz.errors import DriveVizError, FrameError, RecordingError
from drive_viz.model.augment import (
    Augmentation,
    SteeringGeometry,
    flip_horizontal,
    shift_correction,
    shift_horizontal,
    side_camera_correction,
)
from drive_viz.model.contract import InputContract, OutputSpec
from drive_viz.model.dataset import (
    FrameStore,
    Samples,
    rebalance_weights,
    split_by_time_blocks,
    training_dataset,
    validation_dataset,
)
from drive_viz.model.preprocess import preprocess_frame
from drive_viz.recording.format import CameraSpec, RecordingMeta
from drive_viz.recording.reader import open_recording
from drive_viz.recording.writer import RecordingWriter

GEOMETRY = SteeringGeometry(wheelbase=2.7, max_steer=30.0, recovery=8.0)
CAMERA_Y = {"left": -0.6, "center": 0.0, "right": 0.6}


def bar_frame(steer: float, width: int = 160, height: int = 80) -> np.ndarray:
    """A frame whose steering is readable from it: a yellow bar right of centre = steer right."""
    frame = np.full((height, width, 3), 90, np.uint8)
    column = int(round(width / 2 + steer * 0.45 * width))
    frame[:, max(column - 4, 0):column + 4] = (240, 220, 60)
    frame[: height // 3] = (120, 160, 220)  # sky, cropped away by the preprocessing
    return frame


def write_recording(path: Path, frames: int, seed: int,
                    cameras: tuple[str, ...] = ("center",)) -> Path:
    specs = tuple(CameraSpec(name, 160, 80, fov=90.0, y=CAMERA_Y[name]) for name in cameras)
    phase = np.random.default_rng(seed).uniform(0, 2 * math.pi)
    with RecordingWriter(path, RecordingMeta("test", 10.0, specs, extra={"seed": seed})) as out:
        for i in range(frames):
            steer = 0.8 * math.sin(0.3 * i + phase)
            out.append(steer=steer, images={name: bar_frame(steer) for name in cameras})
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recordings")
    return {"train": write_recording(root / "train", 300, 1),
            "heldout": write_recording(root / "heldout", 80, 2),
            "rig": write_recording(root / "rig", 40, 3, ("left", "center", "right"))}


# -- steering corrections: signs and geometry ------------------------------------------------

def test_left_camera_label_is_more_to_the_right() -> None:
    left = side_camera_correction(CameraSpec("left", 64, 64, y=-0.6), GEOMETRY)
    right = side_camera_correction(CameraSpec("right", 64, 64, y=0.6), GEOMETRY)
    centre = side_camera_correction(CameraSpec("center", 64, 64), GEOMETRY)
    assert left > 0 > right
    assert centre == 0.0
    assert left == pytest.approx(-right)
    # A camera turned left sees the road ahead to its right: it too needs a right correction.
    assert side_camera_correction(CameraSpec("c", 64, 64, yaw=-10.0), GEOMETRY) > 0


def test_side_camera_correction_drives_an_arc_back_onto_the_path() -> None:
    # Independent check of the geometry: a bicycle with wheelbase L and wheel angle delta turns
    # on radius R = L / tan(delta). From the side camera's position (0, y), heading along x,
    # that circle (centre (0, y + R)) must pass through the path point (x, 0) at distance D.
    y = -0.6
    correction = side_camera_correction(CameraSpec("left", 64, 64, y=y), GEOMETRY)
    radius = GEOMETRY.wheelbase / math.tan(math.radians(correction * GEOMETRY.max_steer))
    ahead = math.sqrt(GEOMETRY.recovery ** 2 - y ** 2)
    assert math.hypot(ahead, 0 - (y + radius)) == pytest.approx(radius, rel=1e-9)


def test_shift_correction_sign_and_pinhole_geometry() -> None:
    assert shift_correction(5, 90.0, GEOMETRY) > 0 > shift_correction(-5, 90.0, GEOMETRY)
    assert shift_correction(0, 90.0, GEOMETRY) == 0
    # With a 90 degree field of view, the edge column (100 input pixels off centre) lies 45
    # degrees off the axis: shifting by 100 pixels means a path point 45 degrees to the right.
    assert shift_correction(100, 90.0, GEOMETRY) == pytest.approx(
        GEOMETRY.steer_for_angle(math.pi / 4))


def test_shift_moves_content_right_and_repeats_the_edge() -> None:
    frames = np.zeros((1, 2, 10, 3), np.float32)
    frames[0, :, 3] = 255
    frames[0, :, 0] = 7
    shifted = shift_horizontal(frames, np.array([2]))
    assert np.flatnonzero(shifted[0, 0, :, 0] == 255).tolist() == [5]
    assert shifted[0, 0, :3, 0].tolist() == [7, 7, 7]


def test_flip_negates_steering_and_mirrors_the_frame() -> None:
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (4, 66, 200, 3)).astype(np.float32)
    steer = np.array([0.3, -0.2, 0.0, 0.9])
    mirror_only = Augmentation(flip=1.0, brightness=(1.0, 1.0), shadow=0.0, max_shift=0)
    out, labels = mirror_only.apply(frames, steer, np.full(4, 90.0), GEOMETRY, rng)
    np.testing.assert_array_equal(out, frames[:, :, ::-1])
    np.testing.assert_allclose(labels, -steer, atol=1e-7)
    np.testing.assert_array_equal(flip_horizontal(flip_horizontal(frames)), frames)


def test_augmented_labels_follow_the_bar() -> None:
    # In bar frames the bar's column encodes the steering; after shift and flip the bar's new
    # column must still agree in sign with the new label (flip mirrors it, a right shift
    # moves it right and adds a right correction).
    steer = np.full(64, 0.5)
    frames = np.stack([preprocess_frame(bar_frame(0.5))] * 64)
    out, labels = Augmentation(shadow=0.0).apply(frames, steer, np.full(64, 90.0), GEOMETRY,
                                                np.random.default_rng(1))
    bar_column = np.argmax(out[:, 40, :, 0], axis=1)
    assert np.all(np.sign(bar_column - 99.5) == np.sign(labels))


def test_brightness_and_shadow_touch_only_luma() -> None:
    frames = np.full((8, 66, 200, 3), 128.0, np.float32)
    out, labels = Augmentation(flip=0.0, shadow=1.0, max_shift=0).apply(
        frames, np.zeros(8), np.full(8, 90.0), GEOMETRY, np.random.default_rng(2))
    np.testing.assert_array_equal(out[..., 1:], frames[..., 1:])
    assert out[..., 0].min() >= 0.6 * 0.5 * 128 - 1e-3 and out[..., 0].max() <= 1.3 * 128 + 1e-3
    assert np.all(labels == 0)


# -- split and rebalancing ---------------------------------------------------------------

@pytest.mark.parametrize(("count", "fps", "fraction", "block", "gap", "seed"),
                         [(300, 10.0, 0.2, 4.0, 1.0, 0), (1000, 20.0, 0.3, 3.0, 0.5, 5),
                          (120, 30.0, 0.5, 1.0, 0.2, 9)])
def test_split_blocks_do_not_overlap_and_keep_the_gap(count, fps, fraction, block, gap,
                                                      seed) -> None:
    times = np.arange(count) / fps
    train, val = split_by_time_blocks(times, fraction, block, gap, seed)
    assert not np.any(train & val)
    assert val.any() and train.any()
    distances = np.abs(times[train][:, None] - times[val][None, :])
    assert distances.min() >= gap - 1e-9
    val_blocks = np.unique(np.floor(times[val] / block))
    for b in val_blocks:  # whole blocks validate: no block is shared with training
        in_block = np.floor(times / block) == b
        assert val[in_block].all() and not train[in_block].any()
    assert abs(len(val_blocks) / len(np.unique(np.floor(times / block))) - fraction) < 0.15


def test_rebalance_weighs_rare_steering_more() -> None:
    steer = np.concatenate([np.zeros(900), np.full(100, 0.7)])
    weights = rebalance_weights(steer)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[-1] / weights[0] == pytest.approx(math.sqrt(900 / 100))


# -- the input pipeline ---------------------------------------------------------------

def _store_and_samples(path: Path, ram_budget: int | None = None
                       ) -> tuple[FrameStore, Samples, list[np.ndarray]]:
    recording = open_recording(path)
    rows = list(range(0, len(recording), 3))
    store = FrameStore([recording], [(0, r, "center") for r in rows], InputContract(),
                       ram_budget=ram_budget)
    expected = [preprocess_frame(recording.image(r, "center")) for r in rows]
    samples = Samples(np.arange(len(rows)), recording.steering()[rows].astype(np.float32),
                      np.full(len(rows), 90.0, np.float32), np.ones(len(rows), np.float32))
    return store, samples, expected


@pytest.mark.parametrize("ram_budget", [None, 0], ids=["ram", "disk"])
def test_pipeline_frames_equal_preprocess_frame(recordings, ram_budget) -> None:
    store, samples, expected = _store_and_samples(recordings["train"], ram_budget)
    assert store.in_ram == (ram_budget is None)
    x = np.concatenate([x for x, _ in validation_dataset(store, samples, 16).as_numpy_iterator()])
    np.testing.assert_array_equal(x, np.stack(expected))
    stream, steps = training_dataset(store, samples, batch_size=10, epochs=1, seed=0,
                                     augmentation=None, geometry=GEOMETRY)
    for x, y in stream.as_numpy_iterator():
        for frame, label in zip(x, y[:, 0], strict=True):
            match = int(np.flatnonzero(np.isclose(samples.steer, label))[0])
            np.testing.assert_array_equal(frame, expected[match])
    store.close()


def test_same_seed_same_stream_other_seed_other_order(recordings) -> None:
    store, samples, _ = _store_and_samples(recordings["train"])

    def labels(seed: int) -> np.ndarray:
        stream, _ = training_dataset(store, samples, batch_size=8, epochs=2, seed=seed,
                                     augmentation=Augmentation(), geometry=GEOMETRY)
        return np.concatenate([y[:, 0] for _, y in stream.as_numpy_iterator()])

    first, again, other = labels(3), labels(3), labels(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    half = len(first) // 2
    assert not np.array_equal(first[:half], first[half:])  # each epoch is reshuffled


# -- training end to end -----------------------------------------------------------------

def _config(paths: dict[str, Path], out: Path, **overrides):
    from drive_viz.model.train import TrainConfig

    settings = dict(recordings=[paths["train"]], out=out, epochs=6, batch_size=32,
                    seed=0, block_seconds=2.0, gap_seconds=0.5, patience=3,
                    heldout=[paths["heldout"]])
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(recordings, tmp_path_factory) -> tuple[Path, dict]:
    from drive_viz.model.train import train

    out = tmp_path_factory.mktemp("model") / "tiny.keras"
    card = train(_config(recordings, out), verbose=0, deterministic=False)
    return out, card


def test_tiny_training_lowers_validation_loss_and_beats_the_mean(trained) -> None:
    _, card = trained
    losses = card["history"]["val_loss"]
    assert card["best"]["val_loss"] < 0.5 * losses[0]
    heldout = card["heldout"]
    assert heldout["frames"] == 80 and heldout["seed"] == 2
    assert heldout["mae"] < 0.5 * heldout["baseline_mae"]


def test_outputs_are_complete_and_loadable(trained) -> None:
    from drive_viz.model.dave2 import load_steering_model, model_contract, read_card

    out, card = trained
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "tiny.card.json", "tiny.curves.png", "tiny.keras"]
    assert out.stat().st_size < 1_500_000  # weights only, no optimizer state
    assert load_steering_model(out).count_params() == 252_219
    assert model_contract(out) == InputContract(steering=OutputSpec("steer"))
    assert read_card(out) == json.loads(json.dumps(card))
    import cv2

    curves = cv2.imread(str(out.with_name("tiny.curves.png")))
    assert curves is not None and curves.shape == (360, 900, 3)


def test_card_holds_every_field_with_sensible_values(trained, recordings) -> None:
    _, card = trained
    for key in ("recordings", "hyperparameters", "contract", "activation", "head",
                "epochs_run", "final", "best", "seed", "versions", "command", "heldout",
                "geometry", "augmentation", "history", "output_bias_refit"):
        assert key in card
    assert math.isfinite(card["output_bias_refit"])
    assert card["recordings"][0]["frames"] == 300
    used = card["recordings"][0]["train_frames"] + card["recordings"][0]["val_frames"]
    assert 0.6 * 300 < used < 300
    assert card["activation"] == "elu" and card["head"] == "flatten" and card["seed"] == 0
    assert 1 <= card["epochs_run"] <= 6 == card["hyperparameters"]["max_epochs"]
    assert len(card["history"]["loss"]) == card["epochs_run"]
    for entry in (card["final"], card["best"]):
        assert set(entry) == {"loss", "mae", "val_loss", "val_mae"}
        assert all(math.isfinite(v) and v >= 0 for v in entry.values())
    assert card["best"]["val_loss"] == min(card["history"]["val_loss"])
    assert set(card["versions"]) >= {"tensorflow", "keras", "numpy", "drive-viz"}
    command = card["command"].split()
    assert command[:3] == ["drive-viz", "train", str(recordings["train"])]
    assert "--seed" in command and "--heldout" in command


def test_side_cameras_add_corrected_samples(recordings) -> None:
    from drive_viz.model.train import collect_samples

    config = _config(recordings, Path("unused.keras"), recordings=[recordings["rig"]],
                     val_fraction=0.0)
    data = collect_samples([open_recording(recordings["rig"])], config, GEOMETRY)
    steer = open_recording(recordings["rig"]).steering()
    assert len(data.train) == 3 * len(steer)
    by_camera = {camera: [] for camera in ("left", "center", "right")}
    for frame_id, label in zip(data.train.frame, data.train.steer, strict=True):
        by_camera[data.store.frames[frame_id][2]].append(label)
    left, centre, right = (np.array(by_camera[c]) for c in ("left", "center", "right"))
    np.testing.assert_allclose(centre, steer, atol=1e-6)
    assert np.all(left[np.abs(centre) < 0.9] > centre[np.abs(centre) < 0.9])
    assert np.all(right[np.abs(centre) < 0.9] < centre[np.abs(centre) < 0.9])


# -- bad input -----------------------------------------------------------------------------

def test_unreadable_recording_is_one_line_error(tmp_path, capsys) -> None:
    (tmp_path / "junk").mkdir()
    code = main(["train", str(tmp_path / "junk"), "--out", str(tmp_path / "m.keras")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("drive-viz: error: ") and "junk" in error
    assert "\n" not in error and not (tmp_path / "m.keras").exists()


def test_recording_without_frames_is_refused(tmp_path, recordings) -> None:
    from drive_viz.model.train import train

    empty = tmp_path / "empty"
    RecordingWriter(empty, RecordingMeta("test", 10.0, (CameraSpec("center", 160, 80),))).close()
    with pytest.raises(RecordingError, match="no usable frames"):
        train(_config(recordings, tmp_path / "m.keras", recordings=[empty]), verbose=0,
              deterministic=False)
    with pytest.raises(RecordingError, match=r"train: no camera 'front' \(it has center\)"):
        train(_config(recordings, tmp_path / "m.keras", camera="front"), verbose=0,
              deterministic=False)
    assert not list(tmp_path.glob("m.*"))


def test_corrupt_frame_is_a_one_line_frame_error(tmp_path) -> None:
    from drive_viz.model.train import train

    path = write_recording(tmp_path / "rec", 60, 4)
    (path / "images" / "center" / "000007.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    config = _config({"train": path, "heldout": path}, tmp_path / "m.keras", heldout=[],
                     epochs=1)
    with pytest.raises(FrameError, match=r"000007\.jpg") as info:
        train(config, verbose=0, deterministic=False)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("m.*"))


def test_bad_settings_are_refused(tmp_path, recordings) -> None:
    with pytest.raises(DriveVizError, match="must end in .keras"):
        _config(recordings, tmp_path / "model.h5")
    with pytest.raises(DriveVizError, match="--val-fraction"):
        _config(recordings, tmp_path / "m.keras", val_fraction=1.5)


def test_same_seed_trains_the_same_weights(recordings, tmp_path) -> None:
    from drive_viz.model.dave2 import load_steering_model
    from drive_viz.model.train import train

    def weights(name: str, seed: int) -> list[np.ndarray]:
        config = _config(recordings, tmp_path / f"{name}.keras", epochs=1, heldout=[], seed=seed)
        train(config, verbose=0, deterministic=False)
        return load_steering_model(tmp_path / f"{name}.keras").get_weights()

    first, again, other = weights("a", 5), weights("b", 5), weights("c", 6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_ctrl_c_during_fit_stops_at_a_batch_end_and_a_second_one_interrupts() -> None:
    import os
    import signal
    import time

    import keras

    from drive_viz.model.train import _sigint_stops_training

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    handler_before = signal.getsignal(signal.SIGINT)
    with _sigint_stops_training() as interrupt:
        history = model.fit(x, x[:, :1], batch_size=4, epochs=50, verbose=0,
                            callbacks=[CtrlC(), interrupt]).history
        assert interrupt.requested
        assert len(history["loss"]) == 1  # stopped within the first epoch, not after 50
        with pytest.raises(KeyboardInterrupt):  # the first press restored the old handler
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_held_out_no_better_than_the_mean_is_warned_about() -> None:
    from drive_viz.model.train import baseline_warning

    entry = {"recording": "rec", "mae": 0.03, "baseline_mae": 0.06, "baseline_steer": 0.01}
    assert baseline_warning(entry) is None
    worse = {**entry, "mae": 0.07}
    text = baseline_warning(worse)
    assert text is not None and "no better than always predicting" in text
    assert "0.0700" in text and "0.0600" in text
    assert baseline_warning({**entry, "mae": 0.06}) is not None  # equal: no better


def test_training_progress_is_one_line_per_epoch_unless_on_a_terminal(tmp_path) -> None:
    from drive_viz.model.train import keras_verbosity

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with open(tmp_path / "train.log", "w") as log:
        assert keras_verbosity(True, log) == 2
    assert keras_verbosity(True, Terminal()) == 1
    assert keras_verbosity(False, Terminal()) == 2


@pytest.mark.parametrize(("flip", "weighted"), [(0.0, False), (0.5, False), (0.5, True)])
def test_refit_output_bias_is_the_training_loss_minimum(recordings, flip, weighted) -> None:
    """For the MSE over the training distribution (frames, and with probability ``flip`` their
    mirrors with negated labels, sample-weighted), the loss as a function of the output bias is
    a parabola; the refitted bias must sit at its vertex, found here from three evaluations."""
    from drive_viz.model.dave2 import build_dave2
    from drive_viz.model.train import refit_output_bias

    store, samples, _ = _store_and_samples(recordings["train"])
    if weighted:
        samples.weight = np.linspace(0.2, 1.8, len(samples)).astype(np.float32)
    model = build_dave2(seed=3)
    x = store.get(samples.frame).astype(np.float32)
    y, w = samples.steer.astype(np.float64), samples.weight.astype(np.float64)

    def loss() -> float:
        plain = (model.predict(x, verbose=0)[:, 0] - y) ** 2
        mirrored = (model.predict(x[:, :, ::-1], verbose=0)[:, 0] + y) ** 2
        return float(np.sum(w * ((1 - flip) * plain + flip * mirrored)) / np.sum(w))

    layer = model.get_layer("steer")
    kernel, bias = layer.get_weights()
    values = []
    for shift in (-0.1, 0.0, 0.1):
        layer.set_weights([kernel, bias + np.float32(shift)])
        values.append(loss())
    vertex = 0.1 * (values[0] - values[2]) / (2 * (values[0] - 2 * values[1] + values[2]))
    layer.set_weights([kernel, bias])
    change = refit_output_bias(model, store, samples, flip)
    assert change == pytest.approx(vertex, abs=1e-4)
    assert layer.get_weights()[1][0] == pytest.approx(bias[0] + change, abs=1e-6)
    assert loss() <= min(values) + 1e-9
    store.close()
