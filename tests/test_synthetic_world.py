"""The synthetic road world: determinism, masks vs pixels, steering sign, closed loop, recording."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from drive_viz.model.preprocess import preprocess_mask
from drive_viz.recording.format import MASK_CLASSES
from drive_viz.recording.reader import open_recording
from drive_viz.sim.synth import write_synthetic_recording
from drive_viz.sim.world import SyntheticWorld, SyntheticWorldConfig

ROAD, MARKING, DISTRACTOR = (MASK_CLASSES[k] for k in ("road", "lane_marking", "distractor"))


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(SyntheticWorldConfig(), seed=7)


def _drive(world: SyntheticWorld, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Expert drive with perturbations from reset: frames every 10 steps and all labels."""
    world.reset(render=False)
    frames, labels = [], []
    for i in range(steps):
        control = world.expert_control()
        labels.append(control.label)
        if i % 10 == 0:
            frames.append(world.render("center")[0])
        world.step(control.steer, control.throttle, control.brake, render=False)
    return frames, labels


def test_same_seed_same_drive_and_different_seed_differs() -> None:
    config = SyntheticWorldConfig()
    frames_a, labels_a = _drive(SyntheticWorld(config, seed=3), 40)
    frames_b, labels_b = _drive(SyntheticWorld(config, seed=3), 40)
    assert labels_a == labels_b
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))

    other = SyntheticWorld(config, seed=4)
    frames_c, _ = _drive(other, 40)
    assert not np.array_equal(frames_a[-1], frames_c[-1])
    length = 1500.0
    kappa_a = SyntheticWorld(config, seed=3).track.kappa[: int(length / 0.5)]
    assert not np.allclose(kappa_a, other.track.kappa[: int(length / 0.5)])


def test_reset_without_seed_replays_the_same_drive(world: SyntheticWorld) -> None:
    frames_a, labels_a = _drive(world, 30)
    frames_b, labels_b = _drive(world, 30)
    assert labels_a == labels_b
    assert np.array_equal(frames_a[-1], frames_b[-1])


def _masked_frames(world: SyntheticWorld, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    world.reset(render=False)
    out = []
    for i in range(count * 25):
        control = world.expert_control()
        if i % 25 == 0:
            out.append(world.render("center"))
        world.step(control.steer, control.throttle, control.brake, render=False)
    return out


def test_mask_labels_match_the_pixels(world: SyntheticWorld) -> None:
    pairs = _masked_frames(world, 12)
    frames = np.stack([f for f, _ in pairs])
    masks = np.stack([m for _, m in pairs])
    assert masks.shape == frames.shape[:3] and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= set(MASK_CLASSES.values())
    hsv = cv2.cvtColor(frames.reshape(-1, frames.shape[2], 3), cv2.COLOR_RGB2HSV)
    hsv = hsv.reshape(*frames.shape).astype(np.float64)
    value, saturation = hsv[..., 2], hsv[..., 1]
    marking, road, distractor = masks == MARKING, masks == ROAD, masks == DISTRACTOR
    assert marking.sum() > 500 and distractor.sum() > 200
    # Paint is bright and grey; asphalt is dark.
    assert np.median(value[marking]) > 160
    assert np.median(saturation[marking]) < 50
    assert value[marking].mean() > value[road].mean() + 60
    # Distractor pixels do not look like the road.
    road_colour = frames[road].astype(np.float64).mean(axis=0)
    distance = np.linalg.norm(frames[distractor].astype(np.float64) - road_colour, axis=1)
    assert np.mean(distance > 25) > 0.8


def _marking_runs(row: np.ndarray) -> list[float]:
    """Centres (column) of the runs of lane-marking pixels in one mask row."""
    on = np.concatenate([[0], (row == MARKING).astype(np.int8), [0]])
    starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
    return [(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("offset", [-1.0, 1.0])
def test_steering_sign_and_where_the_lane_appears(world: SyntheticWorld, offset: float) -> None:
    """Left of the lane centre (offset < 0) the expert steers right (positive) and the lane
    centre appears right of the image centre, where a pinhole camera puts it."""
    world.reset(render=False)
    world.place(10.0, lateral_offset=offset, heading_error=0.0)  # the road starts straight
    assert math.copysign(1, world.state.lateral_offset) == math.copysign(1, offset)
    steer = world.expert_steer()
    assert steer * -offset > 0.05
    _, mask = world.render("center")
    cfg, spec = world.config, world.cameras[0]
    f = spec.width / 2 / math.tan(math.radians(spec.fov) / 2)
    cx, cy = (spec.width - 1) / 2, cfg.horizon_fraction * spec.height - 0.5
    checked = 0
    for v in range(int(cy) + 12, spec.height - 10):
        runs = _marking_runs(mask[v])
        if len(runs) != 3:  # left edge line, centre dash, right edge line
            continue
        lane_centre_u = (runs[1] + runs[2]) / 2
        distance = f * spec.z / (v - cy)
        expected_u = cx + f * (-offset) / distance
        assert (lane_centre_u - cx) * -offset > 0
        assert abs(lane_centre_u - expected_u) < 3.0
        checked += 1
    assert checked >= 5


def test_road_and_lines_fill_the_network_view(world: SyntheticWorld) -> None:
    world.reset(render=False)
    world.place(10.0)
    _, mask = world.render("center")
    view = preprocess_mask(mask)
    assert (view[0] == ROAD).any(), "the road reaches the top of the network's view"
    three_lines = [v for v in range(view.shape[0]) if len(_marking_runs(view[v])) == 3]
    assert len(three_lines) >= 5, "both edge lines and the centre dash appear in the view"
    assert ((view == ROAD) | (view == MARKING)).mean() > 0.3


def test_expert_stays_in_lane_and_hard_steer_leaves_it(world: SyntheticWorld) -> None:
    world.reset(render=False)
    worst = 0.0
    for _ in range(500):
        world.step(world.expert_steer(), render=False)
        worst = max(worst, abs(world.state.lateral_offset))
        assert not world.off_lane
    assert worst < world.config.off_lane_offset
    assert world.state.distance > 200  # 500 steps of 0.05 s at about 10 m/s
    assert world.track.max_curvature(0.0, world.state.s) > 1 / 150, "the drive had bends"

    world.reset_to_lane_centre()
    assert abs(world.state.lateral_offset) < 1e-6 and not world.off_lane
    for _ in range(60):
        world.step(1.0, render=False)
        if world.off_lane:
            break
    assert world.off_lane and world.state.lateral_offset > world.config.off_lane_offset
    world.reset_to_lane_centre()
    assert not world.off_lane


def test_labels_vary_with_both_signs(world: SyntheticWorld) -> None:
    _, labels = _drive(world, 400)
    labels = np.array(labels)
    assert np.all(np.abs(labels) <= 1)
    assert labels.std() > 0.02
    assert labels.min() < -0.02 and labels.max() > 0.02


def test_written_recording_reads_back(tmp_path) -> None:
    out = write_synthetic_recording(tmp_path / "rec", frames=12, seed=5, width=160, height=80,
                                    side_cameras=True)
    rec = open_recording(out)
    assert len(rec) == 12 and rec.source == "synthetic" and rec.meta.finished
    assert rec.cameras == ("center", "left", "right")
    left, right = rec.meta.camera("left"), rec.meta.camera("right")
    assert left.y == -right.y < 0 and (left.width, left.height) == (160, 80)
    assert rec.meta.mask_classes == MASK_CLASSES
    for camera in rec.cameras:
        assert rec.has_masks(camera)
        assert rec.image(5, camera).shape == (80, 160, 3)
        mask = rec.mask(5, camera)
        assert mask.shape == (80, 160) and set(np.unique(mask)) <= set(MASK_CLASSES.values())
    # The left camera sits 0.8 m further from the right edge line than the right camera.
    assert not np.array_equal(rec.image(5, "left"), rec.image(5, "right"))
    steer = rec.steering()
    assert len(steer) == 12 and np.all(np.abs(steer) <= 1)


def test_bad_arguments_raise_one_line_errors(tmp_path) -> None:
    from drive_viz.errors import DriveVizError

    with pytest.raises(DriveVizError, match="frames"):
        write_synthetic_recording(tmp_path / "none", frames=0)
    with pytest.raises(DriveVizError):
        write_synthetic_recording(tmp_path / "tiny", frames=1, width=4, height=4)
