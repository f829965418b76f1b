"""Map agreement between models, checked on maps planted in camera-frame coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from drive_viz.attention.agreement import (
    CameraGrid,
    MapResampler,
    average_ranks,
    map_agreement,
)

FRAME_HW = (160, 320)
#: Two models that see different parts of the frame at different input sizes.
BOX_A, INPUT_A = (64, 144, 0, 320), (66, 200)
BOX_B, INPUT_B = (48, 128, 32, 304), (64, 64)


def _planted(box, input_hw, field) -> np.ndarray:
    """A model's (1, H, W) map whose input pixel (i, j) holds ``field`` at that pixel's centre
    on the camera frame (the inverse of the crop-and-resize)."""
    top, bottom, left, right = box
    rows, cols = input_hw
    y = top + (np.arange(rows) + 0.5) * (bottom - top) / rows
    x = left + (np.arange(cols) + 0.5) * (right - left) / cols
    return field(y[:, None], x[None, :])[None].astype(np.float32)


def _grid_field(grid, field) -> np.ndarray:
    y, x = grid.cell_centres()
    return field(y[:, None], x[None, :])


def _interior(resampler: MapResampler, margin_px: float) -> np.ndarray:
    top, bottom, left, right = resampler.box
    y, x = resampler.grid.cell_centres()
    return (((y > top + margin_px) & (y < bottom - margin_px))[:, None]
            & ((x > left + margin_px) & (x < right - margin_px))[None, :])


def test_resampling_reproduces_a_linear_field_inside_the_crop() -> None:
    grid = CameraGrid.for_frame(*FRAME_HW)
    def field(y, x):
        return 1.0 + 0.01 * x + 0.02 * y
    for box, input_hw in ((BOX_A, INPUT_A), (BOX_B, INPUT_B)):
        resampler = MapResampler.build(grid, box, input_hw)
        on_grid = resampler(_planted(box, input_hw, field))[0]
        # Bilinear sampling is exact for a linear field away from the box edges (one input
        # pixel of margin: beyond the last pixel centre the edge value is repeated).
        inner = _interior(resampler, 2 * (box[1] - box[0]) / input_hw[0])
        assert inner.sum() > 100
        np.testing.assert_allclose(on_grid[inner], _grid_field(grid, field)[inner], rtol=1e-5)
        assert not resampler.seen[~_interior(resampler, -1)].any()
        assert (on_grid[~resampler.seen] == 0).all()


def test_agreement_of_two_fields_matches_a_hand_computation() -> None:
    grid = CameraGrid.for_frame(*FRAME_HW)
    a_res = MapResampler.build(grid, BOX_A, INPUT_A)
    b_res = MapResampler.build(grid, BOX_B, INPUT_B)
    def fa(y, x):
        return 1.0 + 0.01 * x + 0.02 * y
    def fb(y, x):
        return 3.0 - 0.004 * x + 0.03 * y
    a = a_res(_planted(BOX_A, INPUT_A, fa))
    b = b_res(_planted(BOX_B, INPUT_B, fb))
    margin = 2 * 80 / 64
    shared = _interior(a_res, margin) & _interior(b_res, margin)
    got = map_agreement(a, b, shared, FRAME_HW)
    va, vb = _grid_field(grid, fa)[shared], _grid_field(grid, fb)[shared]
    assert got["pearson"][0] == pytest.approx(np.corrcoef(va, vb)[0, 1], abs=1e-6)
    stats = pytest.importorskip("scipy.stats")
    # Ranks of float32 samples of a linear field: compare with scipy on the same samples.
    assert got["spearman"][0] == pytest.approx(
        stats.spearmanr(a[0][shared], b[0][shared]).statistic, abs=1e-9)
    assert got["spearman"][0] == pytest.approx(stats.spearmanr(va, vb).statistic, abs=1e-3)
    ys, xs = np.nonzero(shared)
    y, x = (ys + 0.5) * 160 / grid.rows, (xs + 0.5) * 320 / grid.cols
    ca = np.array([(va * y).sum(), (va * x).sum()]) / va.sum()
    cb = np.array([(vb * y).sum(), (vb * x).sum()]) / vb.sum()
    assert got["centroid_distance"][0] == pytest.approx(
        np.linalg.norm(ca - cb) / np.hypot(160, 320), rel=1e-6)


def test_blobs_in_different_places_do_not_agree_and_the_same_blob_does() -> None:
    grid = CameraGrid.for_frame(*FRAME_HW)
    a_res = MapResampler.build(grid, BOX_A, INPUT_A)
    b_res = MapResampler.build(grid, BOX_B, INPUT_B)
    shared = a_res.seen & b_res.seen

    def blob(cy, cx):
        return lambda y, x: np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 6.0 ** 2))

    a = a_res(_planted(BOX_A, INPUT_A, blob(100, 100)))
    same = b_res(_planted(BOX_B, INPUT_B, blob(100, 100)))
    apart = b_res(_planted(BOX_B, INPUT_B, blob(100, 250)))
    together = map_agreement(a, same, shared, FRAME_HW)
    separate = map_agreement(a, apart, shared, FRAME_HW)
    assert together["pearson"][0] > 0.95 and together["top5_iou"][0] > 0.6
    assert together["centroid_distance"][0] < 2 / np.hypot(160, 320)
    assert separate["top5_iou"][0] == 0.0
    assert separate["pearson"][0] < 0.1
    assert separate["centroid_distance"][0] == pytest.approx(150 / np.hypot(160, 320), rel=0.02)


def test_identical_maps_agree_fully_and_an_empty_map_gives_nan() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((2, 20, 40)).astype(np.float32)
    shared = np.ones((20, 40), bool)
    same = map_agreement(maps, maps, shared, (20, 40))
    np.testing.assert_allclose(same["pearson"], 1.0)
    np.testing.assert_allclose(same["spearman"], 1.0)
    np.testing.assert_allclose(same["top5_iou"], 1.0)
    np.testing.assert_allclose(same["centroid_distance"], 0.0, atol=1e-12)
    empty = map_agreement(maps[:1], np.zeros((1, 20, 40), np.float32), shared, (20, 40))
    assert all(np.isnan(values[0]) for values in empty.values())


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(average_ranks(np.array([0.0, 2.0, 0.0, 1.0, 0.0])),
                                  [1.0, 4.0, 1.0, 3.0, 1.0])
    stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(1).integers(0, 5, 200).astype(float)
    np.testing.assert_allclose(average_ranks(values), stats.rankdata(values) - 1)
