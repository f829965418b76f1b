"""Counterfactual renders: exact re-rendering from a recording, element switches that touch only
their element's pixels, the above-crop control, and the evaluation's arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from drive_viz.attention.counterfactual import (
    ELEMENTS,
    NEUTRAL_FILL,
    Rerenderer,
    counterfactual_evaluation,
    fill_above_crop,
    input_coverage,
)
from drive_viz.attention.evaluate import sobel_map
from drive_viz.errors import RecordingError
from drive_viz.model.contract import DAVE2_CONTRACT
from drive_viz.model.preprocess import preprocess_batch, preprocess_frame
from drive_viz.recording.images import encode_jpeg
from drive_viz.recording.reader import open_recording
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.render_road import SCENE_ELEMENTS
from drive_viz.sim.synth import write_synthetic_recording
from drive_viz.sim.world import SyntheticWorld

FRAMES, SEED, SIZE = 60, 4, (200, 100)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("cf") / "rec"
    write_synthetic_recording(path, FRAMES, SEED, width=SIZE[0], height=SIZE[1], masks=False)
    return open_recording(path)


def _drive_frames(rows: set[int]) -> dict[int, np.ndarray]:
    """The frames before JPEG, from driving the world as synth does (independently)."""
    config = SyntheticWorldConfig(width=SIZE[0], height=SIZE[1])
    world = SyntheticWorld(config, SEED)
    world.reset(render=False)
    out = {}
    for i in range(max(rows) + 1):
        control = world.expert_control()
        if i in rows:
            out[i] = world.render("center")[0]
        world.step(control.steer, control.throttle, control.brake, render=False)
        if world.off_lane:
            world.reset_to_lane_centre()
    return out


def test_rerender_equals_the_recorded_frame(recording):
    rerenderer = Rerenderer(recording)
    originals = _drive_frames({0, 17, FRAMES - 1})
    for row, original in originals.items():
        again = rerenderer.render(row, "center")
        assert np.array_equal(again, original)  # exact, before JPEG
        recorded = recording.image(row, "center")
        assert np.abs(again.astype(int) - recorded.astype(int)).mean() < 4.0  # JPEG q92
        decoded = cv2.imdecode(np.frombuffer(encode_jpeg(again), np.uint8), cv2.IMREAD_COLOR_RGB)
        assert np.array_equal(decoded, recorded)  # the same JPEG bytes decode the same


def test_each_switch_changes_only_its_element(recording):
    rerenderer = Rerenderer(recording)
    changed_somewhere = dict.fromkeys(SCENE_ELEMENTS, False)
    for row in range(0, FRAMES, 6):
        frame = rerenderer.render(row, "center")
        masks = rerenderer.element_masks(row, "center")
        for element in SCENE_ELEMENTS:
            changed = (rerenderer.render(row, "center", (element,)) != frame).any(axis=2)
            assert not (changed & ~masks[element]).any(), (row, element)
            changed_somewhere[element] |= bool(changed.any())
    assert all(changed_somewhere.values()), changed_somewhere


def test_element_masks_lie_where_the_world_says():
    """Geometry, independently: on a straight road seen from the lane centre the centre line
    is left of the image centre and the right edge line right of it, near the bottom rows."""
    world = SyntheticWorld(SyntheticWorldConfig(width=SIZE[0], height=SIZE[1]), SEED)
    world.reset(render=False)
    masks = world.element_masks("center")
    bottom = slice(SIZE[1] - 10, SIZE[1])
    columns = np.arange(SIZE[0])
    centre_cols = columns[masks["centre_line"][bottom].any(axis=0)]
    edge_cols = columns[masks["edge_lines"][bottom].any(axis=0)]
    assert centre_cols.size and centre_cols.max() < SIZE[0] / 2
    assert edge_cols.size and (edge_cols > SIZE[0] / 2).any()
    assert not masks["road_edge"][bottom, SIZE[0] // 2].any()  # the car stands on asphalt


def test_above_crop_never_moves_the_steering(recording):
    from drive_viz.model.dave2 import build_dave2

    prep = DAVE2_CONTRACT
    model = build_dave2(seed=3)
    rerenderer = Rerenderer(recording)
    rows = [0, 20, 40]
    report = counterfactual_evaluation(model, rerenderer, rows, "center", prep, ["sobel"])
    assert report["elements"] == list(ELEMENTS)
    assert report["delta_steer"]["above_crop"] == [0.0, 0.0, 0.0]
    assert report["above_crop_max_delta"] == 0.0
    for row in rows:  # the filled rows are really different pixels, just never seen
        frame = rerenderer.render(row, "center")
        filled = fill_above_crop(frame, prep)
        top = prep.crop_box(*frame.shape[:2])[0]
        assert (filled[:top] == NEUTRAL_FILL).all() and (filled[:top] != frame[:top]).any()
        assert np.array_equal(preprocess_frame(filled, prep), preprocess_frame(frame, prep))
    # The road edge moves this untrained model's output (a real change is measured).
    assert max(report["delta_steer"]["road_edge"]) > 0


def test_attention_share_is_the_map_mass_on_the_element(recording):
    from drive_viz.model.dave2 import build_dave2

    prep = DAVE2_CONTRACT
    rerenderer = Rerenderer(recording)
    report = counterfactual_evaluation(build_dave2(seed=1), rerenderer, [30], "center", prep,
                                       ["sobel"])
    frame = rerenderer.render(30, "center")
    mass = np.abs(sobel_map(preprocess_batch([frame], prep))[0]).astype(np.float64)
    masks = rerenderer.element_masks(30, "center")
    for element in SCENE_ELEMENTS:
        coverage = input_coverage(masks[element], prep)
        expected = (mass * coverage).sum() / mass.sum()
        got = report["methods"]["sobel"]["attention_share"][element][0]
        assert got == pytest.approx(expected, rel=1e-6)
    # Element coverage is the share of each input pixel: a full-frame mask covers 1 everywhere.
    assert np.allclose(input_coverage(np.ones(frame.shape[:2], bool), prep), 1.0)


def test_refuses_recordings_it_cannot_draw(recording, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(recording.path, copy)
    table = (copy / "frames.csv").read_text().splitlines()
    header = table[0].split(",")
    keep = [i for i, name in enumerate(header) if not name.startswith("state_")]
    (copy / "frames.csv").write_text("\n".join(
        ",".join(line.split(",")[i] for i in keep) for line in table) + "\n")
    with pytest.raises(RecordingError, match="state_x"):
        Rerenderer(open_recording(copy))
    meta = json.loads((recording.path / "meta.json").read_text())
    meta["extra"]["world"]["distractor_spacing"] = 1e-9
    shutil.copy(recording.path / "frames.csv", copy / "frames.csv")
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match="distractor_spacing"):
        Rerenderer(open_recording(copy))
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, "-m", "drive_viz.cli", "evaluate", str(copy),
                           "--model", "unused.keras", "--out", str(out), "--counterfactuals"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("drive-viz: error:")
    assert "distractor_spacing" in done.stderr
