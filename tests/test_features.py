"""Feature visualization: optimized inputs excite their own filter; the command writes a grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from drive_viz.attention.features import (
    BACKGROUND,
    GAP,
    LABEL_HEIGHT,
    LayerProbe,
    maximize_activation,
    parse_units,
)
from drive_viz.cli import main
from drive_viz.errors import ModelError
from drive_viz.model.dave2 import build_dave2


@pytest.fixture(scope="module")
def model():
    return build_dave2(seed=0)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "dave2.keras"
    model.save(path)
    return path


def test_optimized_inputs_excite_their_own_filter(model) -> None:
    units = (0, 1, 2, 3, 4, 5)
    probe = LayerProbe(model, "conv3")
    features = maximize_activation(model, "conv3", units, steps=96, seed=3, probe=probe)
    assert features.images.shape == (6, 66, 200, 3) and features.images.dtype == np.uint8
    noise = 127.5 + 8.0 * np.random.default_rng(7).standard_normal((32, 66, 200, 3))
    noise_scores = probe.scores(noise.astype(np.float32))[:, list(units)]
    # Much more than noise: far above every one of 32 noise images, and above its own start.
    assert (features.final_score > 10 * np.abs(noise_scores).max(axis=0)).all()
    assert (features.final_score > features.start_score + 1.0).all()
    # More than the other filters' images excite it: column k peaks at image k.
    scores = probe.scores(features.inputs)[:, list(units)]
    np.testing.assert_allclose(np.diag(scores), features.final_score, rtol=1e-4)
    assert (scores.argmax(axis=0) == np.arange(len(units))).all()


def test_same_seed_same_images(model) -> None:
    a = maximize_activation(model, "dense3", (1,), steps=4, seed=5)
    b = maximize_activation(model, "dense3", (1,), steps=4, seed=5)
    np.testing.assert_array_equal(a.images, b.images)


@pytest.mark.parametrize(("layer", "message"), [("conv9", "no layer 'conv9'"),
                                                ("flatten", "no filters or units")])
def test_bad_layer_is_a_model_error(model, layer: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        LayerProbe(model, layer)


def test_parse_units() -> None:
    assert parse_units("0,3, 5-7") == (0, 3, 5, 6, 7)
    assert parse_units(None) is None


def test_command_writes_grid_png(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "features.png"
    code = main(["features", "--model", str(model_file), "--layer", "conv1",
                 "--filters", "0-4", "--steps", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    grid = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    # 5 tiles, 4 per row -> 2 rows; tiles are the 200x66 input zoomed 2x plus a label band.
    tile_h, tile_w = 2 * 66 + LABEL_HEIGHT, 2 * 200
    assert grid.shape == (2 * (tile_h + GAP) + GAP, 4 * (tile_w + GAP) + GAP, 3)
    filled = []
    for slot in range(8):
        top = GAP + (slot // 4) * (tile_h + GAP)
        left = GAP + (slot % 4) * (tile_w + GAP)
        tile = grid[top:top + tile_h, left:left + tile_w]
        filled.append(not (tile == BACKGROUND).all(axis=-1).all())
    assert filled == [True] * 5 + [False] * 3
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


def test_command_bad_layer_one_line_error(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "features.png"
    code = main(["features", "--model", str(model_file), "--layer", "conv9", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("drive-viz: error: ") and err.count("\n") == 1
    assert "conv9" in err and "conv1" in err
    assert not out.exists()


def test_position_probe_scores_are_that_cell_of_the_layer(model) -> None:
    import keras

    x = (127.5 + 20 * np.random.default_rng(1).standard_normal((2, 66, 200, 3))).astype(np.float32)
    conv3 = keras.Model(model.inputs[0], model.get_layer("conv3").output)(x).numpy()
    probe = LayerProbe(model, "conv3", position=(2, 10))
    np.testing.assert_allclose(probe.scores(x), conv3[:, 2, 10, :], rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="no feature-map cell"):
        LayerProbe(model, "conv3", position=(5, 0))  # conv3 is 5 rows high: rows 0..4


def test_position_target_excites_its_cell(model) -> None:
    probe = LayerProbe(model, "conv3", position=(2, 10))
    features = maximize_activation(model, "conv3", (7,), steps=48, seed=2, probe=probe)
    assert features.final_score[0] > features.start_score[0] + 1.0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--target", "conv3:7@2,10", "--layer", "conv3"], "drop --layer"),
    (["--target", "left"], "features maximizes one unit"),
    (["--target", "conv3:7@9,9"], "no feature-map cell"),
    ([], "give --layer"),
])
def test_command_target_errors(model_file: Path, tmp_path: Path, capsys, arguments: list[str],
                               message: str) -> None:
    out = tmp_path / "features.png"
    code = main(["features", "--model", str(model_file), *arguments, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_command_accepts_a_unit_target(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "features.png"
    code = main(["features", "--model", str(model_file), "--target", "dense1:4", "--steps", "3",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    grid = cv2.imread(str(out))
    tile_h, tile_w = 2 * 66 + LABEL_HEIGHT, 2 * 200
    assert grid.shape[:2] == (tile_h + 2 * GAP, tile_w + 2 * GAP)  # one tile
