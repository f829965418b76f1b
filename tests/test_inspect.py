"""``drive-viz inspect``: one PNG row per conv layer, each with real content; clean errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from drive_viz.cli import main
from drive_viz.model.dave2 import build_dave2
from drive_viz.render.layers import (
    HEADER_HEIGHT,
    ROW_HEIGHT,
    VIEW_HEIGHT,
    grid_box,
    layers_image_size,
    row_top,
    view_box,
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from drive_viz.sim.synth import write_synthetic_recording

    root = tmp_path_factory.mktemp("inspect")
    write_synthetic_recording(root / "rec", 6, seed=2, width=200, height=100)
    build_dave2(seed=1).save(root / "model.keras")
    return root


def _inspect(workspace, out, *extra):
    return main(["inspect", str(workspace / "rec"), "--frame", "3", "--model",
                 str(workspace / "model.keras"), "--out", str(out), *extra])


@pytest.mark.parametrize("target", ["steer", "conv2:3@5,20"])
def test_one_row_per_conv_layer(workspace, tmp_path, target):
    out = tmp_path / "layers.png"
    assert _inspect(workspace, out, "--target", target) == 0
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert image.shape[:2] == layers_image_size(5)
    assert image.shape[0] == HEADER_HEIGHT + 5 * ROW_HEIGHT
    background = image[-1, -1]
    for k in range(5):
        top = row_top(k) + 8
        for left, width in (grid_box(), view_box()):
            box = image[top:top + VIEW_HEIGHT, left:left + width].astype(np.float64)
            assert box.std() > 5, (k, left)  # the activation grid / the map over the view
        # Rows are separated by background only: no drawing spills between them.
        gap = image[row_top(k):row_top(k) + 4, grid_box()[0]:]
        assert np.all(gap == background)
    assert not list(tmp_path.glob("*.tmp"))


def test_grad_cam_heat_changes_the_view(workspace, tmp_path):
    """Each row's right-hand picture is the header's input view with heat blended on it:
    where the heat is zero the pixels equal the view's."""
    out = tmp_path / "layers.png"
    assert _inspect(workspace, out) == 0
    image = cv2.imread(str(out)).astype(np.int32)
    left, width = view_box()
    view = image[8:8 + VIEW_HEIGHT, 8:8 + width]
    differs = [np.abs(image[row_top(k) + 8:row_top(k) + 8 + VIEW_HEIGHT, left:left + width]
                      - view).max() for k in range(5)]
    assert max(differs) > 20


@pytest.mark.parametrize(("args", "message"), [
    (("--frame", "99"), "out of range"),
    (("--target", "conv9:1"), "conv9"),
    (("--out", "x.jpg"), ".png"),
])
def test_bad_input_is_a_one_line_error(workspace, tmp_path, capsys, args, message):
    options = {"--frame": "3", "--model": str(workspace / "model.keras"),
               "--out": str(tmp_path / "l.png"), **dict(zip(args[::2], args[1::2], strict=True))}
    assert main(["inspect", str(workspace / "rec"), *(w for o in options.items() for w in o)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "l.png").exists()
