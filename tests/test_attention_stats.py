"""Attention statistics and activation grids, checked on hand-built maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drive_viz.attention.grids import LayerScale, grid_layout, tile_activations
from drive_viz.attention.stats import MAP_STATISTICS, activation_summary, map_statistics
from drive_viz.recording.format import MASK_CLASSES

H, W = 66, 200


def hot_pixel(row: int, col: int, value: float = 3.0) -> np.ndarray:
    m = np.zeros((H, W), np.float32)
    m[row, col] = value
    return m


def test_single_hot_pixel() -> None:
    stats = map_statistics(np.stack([hot_pixel(10, 150), hot_pixel(0, 0, -2.0)]))
    assert list(stats) == list(MAP_STATISTICS)
    np.testing.assert_allclose(stats["entropy"], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(stats["top5_share"], [1.0, 1.0])
    np.testing.assert_allclose(stats["centroid_x"], [150 / 199, 0.0])
    np.testing.assert_allclose(stats["centroid_y"], [10 / 65, 0.0])
    np.testing.assert_allclose(stats["spread"], [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(stats["lr_balance"], [1.0, -1.0])
    assert np.isnan(stats["road_share"]).all()


def test_uniform_map() -> None:
    stats = map_statistics(np.full((1, H, W), 0.7, np.float32))
    np.testing.assert_allclose(stats["entropy"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(stats["centroid_x"], 0.5)
    np.testing.assert_allclose(stats["centroid_y"], 0.5)
    np.testing.assert_allclose(stats["lr_balance"], 0.0, atol=1e-12)
    # ceil(5% of 13,200 pixels) = 660 pixels hold 660 / 13,200 of a uniform mass.
    np.testing.assert_allclose(stats["top5_share"], 0.05)
    # Variance of a discrete uniform on 0..n-1 is (n^2 - 1) / 12.
    rms = math.sqrt((W**2 - 1) / 12 + (H**2 - 1) / 12)
    np.testing.assert_allclose(stats["spread"], rms / math.hypot(W - 1, H - 1))


def test_two_equal_pixels_entropy_and_corners_spread() -> None:
    m = hot_pixel(0, 0) + hot_pixel(H - 1, W - 1)
    stats = map_statistics(m[None])
    np.testing.assert_allclose(stats["entropy"], math.log(2) / math.log(H * W))
    np.testing.assert_allclose(stats["spread"], 0.5)  # half the diagonal
    np.testing.assert_allclose(stats["centroid_x"], 0.5)
    np.testing.assert_allclose(stats["lr_balance"], 0.0, atol=1e-12)


def test_left_and_right_half_maps() -> None:
    left = np.zeros((H, W), np.float32)
    left[:, : W // 2] = 1.0
    stats = map_statistics(np.stack([left, left[:, ::-1], -left]))
    np.testing.assert_allclose(stats["lr_balance"], [-1.0, 1.0, -1.0])
    np.testing.assert_allclose(stats["centroid_x"][0], 49.5 / 199)
    np.testing.assert_allclose(stats["entropy"], math.log(H * W / 2) / math.log(H * W))


def test_odd_width_centre_column_counts_zero() -> None:
    m = np.zeros((1, 5, 5), np.float32)
    m[0, :, 2] = 1.0
    np.testing.assert_allclose(map_statistics(m)["lr_balance"], [0.0])


def test_mask_shares_known_overlap() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[:, :50] = MASK_CLASSES["road"]
    mask[:, 50:60] = MASK_CLASSES["lane_marking"]
    mask[:, 60:80] = MASK_CLASSES["distractor"]
    uniform = np.ones((H, W), np.float32)
    focused = 3 * hot_pixel(5, 55, 1.0) + hot_pixel(5, 70, -1.0)  # 3/4 marking, 1/4 distractor
    stats = map_statistics(np.stack([uniform, focused]), np.stack([mask, mask]))
    np.testing.assert_allclose(stats["road_share"], [60 / 200, 0.75])
    np.testing.assert_allclose(stats["marking_share"], [10 / 200, 0.75])
    np.testing.assert_allclose(stats["distractor_share"], [20 / 200, 0.25])


def test_mask_sequence_with_missing_frame_gives_nan() -> None:
    mask = np.full((H, W), MASK_CLASSES["road"], np.uint8)
    maps = np.ones((2, H, W), np.float32)
    stats = map_statistics(maps, [None, mask])
    assert np.isnan(stats["road_share"][0])
    np.testing.assert_allclose(stats["road_share"][1], 1.0)


def test_temporal_correlation() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(H, W)).astype(np.float32)
    stats = map_statistics(np.stack([m, m, -m, 2 * (-m) + 5]))
    assert np.isnan(stats["temporal_corr"][0])
    np.testing.assert_allclose(stats["temporal_corr"][1:], [1.0, -1.0, 1.0], atol=1e-6)
    with_previous = map_statistics(m[None], previous_map=-m)
    np.testing.assert_allclose(with_previous["temporal_corr"], [-1.0], atol=1e-6)
    independent = map_statistics(rng.normal(size=(1, H, W)), previous_map=m)
    assert abs(independent["temporal_corr"][0]) < 0.05  # ~ N(0, 1/sqrt(13200)) = 0.009


def test_zero_map_gives_nan_not_error() -> None:
    maps = np.stack([np.zeros((H, W), np.float32), hot_pixel(1, 1)])
    with np.errstate(all="raise"):
        stats = map_statistics(maps, np.zeros((2, H, W), np.uint8))
    for name in MAP_STATISTICS:
        assert np.isnan(stats[name][0]), name
    assert stats["entropy"][1] == 0.0
    assert np.isnan(stats["temporal_corr"][1])  # correlation with a constant map is undefined


def test_activation_summary() -> None:
    acts = np.zeros((2, 3, 4, 5), np.float32)
    acts[0, 1, 2, 0] = 8.0  # frame 0: one live filter of five
    acts[0, ..., 1] = -0.5  # ELU-negative everywhere: dead
    acts[1] = 1.0  # frame 1: all live
    summary = activation_summary(acts)
    np.testing.assert_allclose(summary["act_max"], [8.0, 1.0])
    np.testing.assert_allclose(summary["act_mean"], [(8.0 - 0.5 * 12) / 60, 1.0])
    np.testing.assert_allclose(summary["dead_share"], [4 / 5, 0.0])
    np.testing.assert_allclose(activation_summary(acts, threshold=1.0)["dead_share"], [0.8, 1.0])


@pytest.mark.parametrize(("channels", "layout"),
                         [(24, (4, 6)), (36, (6, 6)), (48, (6, 8)), (64, (8, 8)), (7, (3, 3)),
                          (1, (1, 1))])
def test_grid_layout(channels: int, layout: tuple[int, int]) -> None:
    assert grid_layout(channels) == layout


def test_one_hot_channel_lights_exactly_its_tile() -> None:
    h, w, c = 31, 98, 24
    acts = np.zeros((c, h, w, c), np.float32)
    for k in range(c):
        acts[k, ..., k] = 2.0
    scale = LayerScale.fit(acts, per="layer", percentile=100.0)
    grids = tile_activations(acts, scale, separator=0.25)
    assert grids.shape == (c, 4 * h + 3, 6 * w + 5)
    assert grids.dtype == np.float32
    for k in range(c):
        top, left = (k // 6) * (h + 1), (k % 6) * (w + 1)
        lit = grids[k] == 1.0
        expected = np.zeros_like(lit)
        expected[top:top + h, left:left + w] = True
        np.testing.assert_array_equal(lit, expected)
    separators = np.ones((4 * h + 3, 6 * w + 5), bool)
    for k in range(c):
        top, left = (k // 6) * (h + 1), (k % 6) * (w + 1)
        separators[top:top + h, left:left + w] = False
    assert (grids[:, separators] == 0.25).all()
    assert (grids[:, ~separators] != 0.25).all()


def test_same_value_same_grey_across_frames() -> None:
    rng = np.random.default_rng(1)
    calibration = rng.gamma(2.0, 1.0, size=(16, 5, 22, 48)).astype(np.float32)
    scale = LayerScale.fit(calibration, per="channel")
    frames = rng.gamma(2.0, 1.0, size=(2, 5, 22, 48)).astype(np.float32)
    frames[1] *= 10  # a much brighter frame must not rescale the other
    frames[0, 2, 3, 7] = frames[1, 4, 0, 7] = 0.8 * scale.high[7]
    grids = tile_activations(frames, scale)
    rows, cols = grid_layout(48)
    top, left = (7 // cols) * 6, (7 % cols) * 23
    assert grids[0, top + 2, left + 3] == grids[1, top + 4, left + 0]
    np.testing.assert_allclose(grids[0, top + 2, left + 3], 0.8, rtol=1e-6)
    alone = tile_activations(frames[:1], scale)
    np.testing.assert_array_equal(alone[0], grids[0])
    assert grids.min() >= 0.0 and grids.max() <= 1.0


def test_frame_mode_is_min_max_per_frame() -> None:
    acts = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    grids = tile_activations(acts, mode="frame")
    assert grids.shape == (2, 2 * 2 + 1, 2 * 3 + 1)  # 4 channels: 2 x 2 tiles of 2 x 3
    tiles = np.concatenate([grids[:, r:r + 2, c:c + 3].reshape(2, -1)
                            for r in (0, 3) for c in (0, 4)], axis=1)
    np.testing.assert_allclose(tiles.min(axis=1), [0.0, 0.0])
    np.testing.assert_allclose(tiles.max(axis=1), [1.0, 1.0])
    with pytest.raises(ValueError, match="LayerScale"):
        tile_activations(acts)
