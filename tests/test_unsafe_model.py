"""Model files are untrusted: safe_mode refuses Lambda layers unless ``--unsafe-model`` is given,
every command that loads a model has that flag and passes it on, and broken files give one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from drive_viz.cli import build_parser, main
from drive_viz.errors import ModelError
from drive_viz.recording.format import CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter

MODEL_COMMANDS = ("replay", "demo", "evaluate", "features", "inspect", "live")


def _lambda_model(path: Path) -> Path:
    """A model that fits drive-viz's shapes but carries a Lambda layer (arbitrary Python)."""
    import keras

    inputs = keras.Input((66, 200, 3), name="yuv")
    x = keras.layers.Lambda(lambda t: t * 0.5, name="halve")(inputs)
    x = keras.layers.Conv2D(2, 5, strides=4, name="conv1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    keras.Model(inputs, keras.layers.Dense(1, name="steer")(x)).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from drive_viz.model.dave2 import build_dave2

    root = tmp_path_factory.mktemp("unsafe")
    good = root / "good.keras"
    build_dave2(seed=0).save(good)
    data = good.read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    (root / "garbage.keras").write_bytes(np.random.default_rng(0).bytes(4096))
    import keras

    inputs = keras.Input((64, 64, 3))
    wrong = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    wrong.save(root / "wrong_shape.keras")
    recording = root / "rec"
    meta = RecordingMeta(source="unsafe-model test", fps=10.0,
                         cameras=(CameraSpec("center", 64, 48),))
    with RecordingWriter(recording, meta) as writer:
        for i in range(3):
            writer.append(steer=0.1 * i, images={"center": np.full((48, 64, 3), 40 * i,
                                                                     np.uint8)})
    return {"root": root, "lambda": _lambda_model(root / "lambda.keras"), "good": good,
            "recording": recording}


def test_safe_mode_refuses_a_lambda_layer_with_the_reason(files) -> None:
    from drive_viz.model.dave2 import load_steering_model

    with pytest.raises(ModelError) as caught:
        load_steering_model(files["lambda"])
    message = str(caught.value)
    assert "\n" not in message and str(files["lambda"]) in message
    assert "unsafe deserialization" in message and "Lambda" in message
    assert "--unsafe-model" in message


def test_unsafe_flag_loads_the_lambda_model(files) -> None:
    from drive_viz.model.dave2 import load_steering_model

    model = load_steering_model(files["lambda"], unsafe=True)
    assert [layer.name for layer in model.layers][1] == "halve"
    out = model(np.ones((2, 66, 200, 3), np.float32))
    assert tuple(out.shape) == (2, 1)


def test_replay_refuses_the_lambda_model_with_exit_2(files, capsys) -> None:
    run = files["root"] / "run_refused"
    code = main(["replay", str(files["recording"]), "--model", str(files["lambda"]),
                 "--out", str(run), "--no-video", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("drive-viz: error: ") and err.count("\n") == 1
    assert "unsafe deserialization" in err and "Traceback" not in err
    assert not run.exists() or not any(run.iterdir())


def test_replay_with_unsafe_flag_gets_past_the_loader(files, capsys) -> None:
    run = files["root"] / "run_unsafe"
    code = main(["replay", str(files["recording"]), "--model", str(files["lambda"]),
                 "--out", str(run), "--no-video", "--quiet", "--methods", "saliency",
                 "--unsafe-model"])
    err = capsys.readouterr().err
    # The loader let it through; the engine may still refuse an unsupported layer, in one line.
    assert "unsafe deserialization" not in err and "Traceback" not in err
    assert code == 0 or (code == 2 and err.count("\n") == 1)
    if code == 0:
        assert (run / "frames.parquet").is_file()


def test_every_command_with_a_model_option_has_the_documented_flag() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with_model = set()
    for name, command in subparsers.choices.items():
        options = {flag: action for action in command._actions for flag in action.option_strings}
        if "--model" in options:
            with_model.add(name)
            assert "--unsafe-model" in options, f"drive-viz {name} lacks --unsafe-model"
            help_text = options["--unsafe-model"].help
            assert "RISK" in help_text and "run any code" in help_text
    assert set(MODEL_COMMANDS) <= with_model


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_passes_the_flag_to_the_loader(command, files, monkeypatch,
                                                           capsys) -> None:
    import drive_viz.model.dave2 as dave2

    seen: list[bool] = []

    def spy(path, *, unsafe=False):
        seen.append(unsafe)
        raise ModelError(f"{path}: stopped by the test")

    monkeypatch.setattr(dave2, "load_steering_model", spy)
    rec, model, out = str(files["recording"]), str(files["good"]), str(files["root"] / command)
    argv = {"replay": ["replay", rec, "--model", model, "--out", out, "--quiet"],
            "demo": ["demo", "--recording", rec, "--model", model, "--out", out, "--quiet"],
            "evaluate": ["evaluate", rec, "--model", model, "--out", out],
            "features": ["features", "--model", model, "--layer", "conv1", "--out",
                         out + ".png"],
            "inspect": ["inspect", rec, "--frame", "0", "--model", model, "--out", out + ".png"],
            "live": ["live", "--model", model, "--frames", "2", "--out", out]}[command]
    for flag in (False, True):
        assert main(argv + (["--unsafe-model"] if flag else [])) == 2
        assert "stopped by the test" in capsys.readouterr().err
    assert seen == [False, True]


@pytest.mark.parametrize("name, words", [("truncated", "truncated or corrupt"),
                                         ("garbage", "truncated or corrupt"),
                                         ("wrong_shape", "input shape")])
def test_broken_model_files_give_one_line_and_exit_2(name, words, files, capsys) -> None:
    path = files["root"] / f"{name}.keras"
    run = files["root"] / f"run_{name}"
    code = main(["replay", str(files["recording"]), "--model", str(path), "--out", str(run),
                 "--no-video", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"drive-viz: error: {path}") and err.count("\n") == 1
    assert words in err and "Traceback" not in err
    assert not run.exists() or not any(run.iterdir())


def test_train_compare_with_a_lambda_model_needs_the_flag(files, capsys) -> None:
    out = files["root"] / "trained.keras"
    base = ["train", str(files["recording"]), "--out", str(out), "--epochs", "1",
            "--compare-with", str(files["lambda"])]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--unsafe-model" in err
    # With the flag the comparison model loads; it is then refused for having the same
    # (flatten) head as the model to train, before any training: the load itself passed.
    assert main([*base, "--unsafe-model"]) == 2
    err = capsys.readouterr().err
    assert "same head" in err and "unsafe deserialization" not in err
    assert not out.exists()
