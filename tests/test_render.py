"""The renderer, display normalization and the H.264 writer (no TensorFlow needed)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from drive_viz.model.contract import InputContract
from drive_viz.model.preprocess import preprocess_frame
from drive_viz.render.colormap import (
    HEAT_LUT,
    RunningScale,
    blend_heat,
    blend_levels,
    heat_levels,
)
from drive_viz.render.overlay import (
    PANEL_BACKGROUND,
    PREDICTED_COLOR,
    RECORDED_COLOR,
    OverlayRenderer,
    Timeline,
)
from drive_viz.render.video import H264Writer, mp4_top_level_boxes

METHODS = ("saliency", "gradcam", "visualbackprop")


def _camera_frame() -> np.ndarray:
    """A smooth 320x160 RGB frame (grey ramp)."""
    ramp = np.linspace(60, 180, 320, dtype=np.float32)
    return np.repeat(np.repeat(ramp[None, :, None], 160, 0), 3, 2).astype(np.uint8)


def _draw(renderer: OverlayRenderer, heat: np.ndarray, steer_true: float = 0.0,
          steer_pred: float = 0.0, position: int | None = None) -> np.ndarray:
    frame = _camera_frame()
    return renderer.draw(frame, preprocess_frame(frame), dict.fromkeys(METHODS, heat), None,
                         steer_true, steer_pred, frame=7, t=0.35, position=position)


def test_heat_lands_where_the_map_is_hot() -> None:
    renderer = OverlayRenderer("saliency", METHODS, contract=InputContract(crop=(0.4, 0.1, 0, 0)))
    cold = np.zeros((66, 200), np.float32)
    hot = cold.copy()
    hot[28:38, 145:160] = 1.0
    base, lit = _draw(renderer, cold), _draw(renderer, hot)
    assert base.shape == (720, 1280, 3) and base.dtype == np.uint8
    # Independent geometry: the 320x160 frame fills the 840-wide main panel at x=8, scale
    # 840/320 = 2.625 (420 px high, centred in the 472-px panel: top at 8 + 26 = 34). The
    # crop keeps rows 64..144 of the frame -> display rows 168..378; the map's 66x200 spans it.
    scale = 840 / 320

    def main_pixel(row: float, col: float) -> tuple[int, int]:
        y = 34 + 64 * scale + (row + 0.5) / 66 * (80 * scale)
        x = 8 + (col + 0.5) / 200 * 840
        return int(y), int(x)
    y, x = main_pixel(33, 152)
    assert np.abs(lit[y, x].astype(int) - base[y, x]).sum() > 100
    # The hot colour is the colormap's top end, blended at 60 %: it moved towards LUT[255].
    top = HEAT_LUT[255, 0].astype(int)
    assert np.abs(lit[y, x] - top).sum() < np.abs(base[y, x].astype(int) - top).sum()
    for row, col in ((5, 20), (60, 100), (33, 60)):
        y, x = main_pixel(row, col)
        assert (lit[y, x] == base[y, x]).all()
    # Above the crop box (sky, never seen by the network) nothing changes at all.
    assert (lit[34:34 + int(64 * scale) - 2, 8:848] == base[34:34 + int(64 * scale) - 2,
                                                             8:848]).all()
    # Input view panel: 200x66 shown at 2x in the 400x132 box at (864, 28).
    hot_y, hot_x, cold_y, cold_x = 28 + 2 * 33, 864 + 2 * 152, 28 + 2 * 10, 864 + 2 * 20
    assert np.abs(lit[hot_y, hot_x].astype(int) - base[hot_y, hot_x]).sum() > 100
    assert (lit[cold_y, cold_x] == base[cold_y, cold_x]).all()


def test_gauge_needle_follows_steering_sign() -> None:
    renderer = OverlayRenderer("saliency", METHODS)
    cold = np.zeros((66, 200), np.float32)
    cx, cy = renderer.gauge_center
    right = _draw(renderer, cold, steer_true=1.0, steer_pred=float("nan"))
    left = _draw(renderer, cold, steer_true=-1.0, steer_pred=float("nan"))
    probe = 60
    # steer +1 = full right: the recorded needle lies along the horizontal to the right.
    assert np.abs(right[cy, cx + probe].astype(int) - RECORDED_COLOR).sum() < 30
    assert np.abs(right[cy, cx - probe].astype(int) - RECORDED_COLOR).sum() > 100
    assert np.abs(left[cy, cx - probe].astype(int) - RECORDED_COLOR).sum() < 30
    # steer 0 points straight up.
    up = _draw(renderer, cold, steer_true=float("nan"), steer_pred=0.0)
    assert np.abs(up[cy - probe, cx].astype(int) - PREDICTED_COLOR).sum() < 30


def test_timeline_draws_predicted_curve_and_cursor() -> None:
    recorded = np.zeros(11)
    timeline = Timeline(recorded)
    renderer = OverlayRenderer("saliency", METHODS, timeline=timeline)
    cold = np.zeros((66, 200), np.float32)
    for position in range(6):
        picture = _draw(renderer, cold, steer_true=0.0, steer_pred=0.5, position=position)
    assert np.allclose(timeline.predicted[:6], 0.5) and np.isnan(timeline.predicted[6:]).all()
    # Positive steering plots above the centre line, at a quarter of the strip height.
    strip = renderer.strip
    x, y = renderer.strip_xy(2, 0.5)
    assert y < strip.y + strip.h / 2
    assert np.abs(picture[y, x].astype(int) - PREDICTED_COLOR).sum() < 150
    later_x, later_y = renderer.strip_xy(8, 0.5)
    assert np.abs(picture[later_y, later_x].astype(int) - PREDICTED_COLOR).sum() > 150
    # Cursor: a white vertical line at position 5.
    cursor_x, _ = renderer.strip_xy(5, 0.0)
    assert (picture[strip.y + 3, cursor_x] == 255).all()


def test_running_scale_is_not_per_frame_min_max() -> None:
    scale = RunningScale(window=8, percentile=99)
    strong = np.ones((1, 66, 200), np.float32)
    weak = 0.5 * strong
    assert scale.normalize(strong).max() == pytest.approx(1.0)
    # Window [1.0, 0.5] -> median scale 0.75: the weak frame shows at 0.5 / 0.75, not 1.
    assert scale.normalize(weak).max() == pytest.approx(0.5 / 0.75)
    assert scale.normalize(np.zeros((1, 66, 200), np.float32)).max() == 0.0


def test_blend_leaves_cold_pixels_untouched() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[5, 7] = 1.0
    out = blend_heat(picture, heat, opacity=0.6)
    changed = np.argwhere((out != picture).any(axis=2))
    assert changed.tolist() == [[5, 7]]
    expected = 0.4 * picture[5, 7] + 0.6 * HEAT_LUT[255, 0]
    assert np.abs(out[5, 7] - expected).max() <= 1


def test_h264_writer_is_browser_ready(tmp_path) -> None:
    path = tmp_path / "clip.mp4"
    with H264Writer(path, fps=12.5, size=(320, 240)) as writer:
        for k in range(9):
            frame = np.zeros((240, 320, 3), np.uint8)
            frame[:] = (200, 50, 50)
            frame[:, k * 30:k * 30 + 20] = 255
            writer.write(frame)
    boxes = mp4_top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == pytest.approx(12.5)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 9
    # Colour survives the round trip (BT.601 limited range both ways).
    assert np.abs(decoded[0][120, 300].astype(int) - (200, 50, 50)).max() <= 8
    # Each video frame shows its own bar: the writer reuses one conversion buffer, so a frame
    # encoded after the buffer was overwritten would show a later bar.
    for k, picture in enumerate(decoded):
        bright = np.flatnonzero(picture[120].min(axis=1) > 230)
        assert bright.min() >= k * 30 - 1 and bright.max() <= k * 30 + 20, k


def test_uint8_blend_is_within_rounding_of_the_float_blend() -> None:
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    levels = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    levels[:5] = 0
    out = blend_levels(picture, levels, opacity=0.6)
    # alpha = 0.6 * level / 255; colour = the inferno LUT entry of that level.
    alpha = (0.6 * levels / 255.0)[:, :, None]
    exact = (1 - alpha) * picture + alpha * HEAT_LUT[levels, 0]
    assert np.abs(out - exact).max() <= 1.5
    assert (out[:5] == picture[:5]).all()
    assert (heat_levels(np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]])) ==
            [[0, 128, 255, 255, 0, 0]]).all()


def test_large_frame_fills_the_main_panel_in_place() -> None:
    # 1800x1000 is more than twice the 840x472 panel: halved once by area, then bilinear.
    # Scale min(840/1800, 472/1000) = 0.4667 -> 840x467, centred: rows 10..477, columns 8..848.
    frame = np.zeros((1000, 1800, 3), np.uint8)
    frame[:, :900] = (200, 30, 30)
    frame[:, 900:] = (30, 30, 200)
    renderer = OverlayRenderer("saliency", METHODS)
    cold = np.zeros((66, 200), np.float32)
    picture = renderer.draw(frame, preprocess_frame(frame), dict.fromkeys(METHODS, cold), None,
                            0.0, 0.0, frame=0, t=0.0)
    assert (picture[240, 100] == (200, 30, 30)).all()
    assert (picture[240, 800] == (30, 30, 200)).all()
    assert (picture[8, 400] == PANEL_BACKGROUND).all()  # above the centred frame
    assert (picture[478, 400] == PANEL_BACKGROUND).all()  # below it


def test_activation_grid_is_pasted_pixel_for_pixel() -> None:
    # A 127x593 grid fits the 600x128 box at scale 1.008: shown 1:1 (no resampling), centred
    # at x = 8 + (600 - 593) // 2 = 11, y = 500 + (128 - 127) // 2 = 500.
    grid = np.zeros((127, 593), np.float32)
    grid[40, 300] = 1.0
    renderer = OverlayRenderer("saliency", METHODS)
    frame = _camera_frame()
    picture = renderer.draw(frame, preprocess_frame(frame),
                            dict.fromkeys(METHODS, np.zeros((66, 200), np.float32)), grid,
                            0.0, 0.0, frame=0, t=0.0)
    assert (picture[540, 311] == 255).all()
    assert (picture[540, 310] == 0).all() and (picture[541, 311] == 0).all()


def test_half_size_canvas_scales_the_layout() -> None:
    renderer = OverlayRenderer("saliency", METHODS, contract=InputContract(crop=(0.4, 0.1, 0, 0)),
                               size=(640, 360))
    cold = np.zeros((66, 200), np.float32)
    hot = cold.copy()
    hot[28:38, 145:160] = 1.0
    base, lit = _draw(renderer, cold), _draw(renderer, hot)
    assert base.shape == (360, 640, 3)
    # Input panel: 400x132 at (864, 28) halves to 200x66 at (432, 14): the map at scale 1.
    assert np.abs(lit[14 + 33, 432 + 152].astype(int) - base[14 + 33, 432 + 152]).sum() > 100
    assert (lit[14 + 10, 432 + 20] == base[14 + 10, 432 + 20]).all()
    # Main panel: 420x236 at (4, 4); the 320x160 frame at 420/320 = 1.3125 is 420x210,
    # top at 4 + 13 = 17. The map's hot block (rows 28..38 of 66 over frame rows 64..144).
    y = int(17 + (64 + 33.5 / 66 * 80) * 1.3125)
    x = int(4 + 152.5 / 200 * 420)
    assert np.abs(lit[y, x].astype(int) - base[y, x]).sum() > 100
    cx, cy = renderer.gauge_center
    right = _draw(renderer, cold, steer_true=1.0, steer_pred=float("nan"))
    assert np.abs(right[cy, cx + 30].astype(int) - RECORDED_COLOR).sum() < 30


def test_timeline_span_fits_the_recorded_drive() -> None:
    assert Timeline(np.array([0.02, -0.08, np.nan])).span == 0.1
    assert Timeline(np.array([0.3, -0.45])).span == 0.5
    assert Timeline(np.array([1.0, -1.0])).span == 1.0
    renderer = OverlayRenderer("saliency", METHODS, timeline=Timeline(np.array([0.0, 0.2])))
    strip = renderer.strip
    # +span sits 2 px below the strip's top edge, -span 2 px above its bottom, 0 in the middle.
    assert renderer.strip_xy(0, 0.2)[1] == strip.y + 2
    assert renderer.strip_xy(0, -0.2)[1] == strip.y + strip.h - 2
    assert renderer.strip_xy(0, 0.0)[1] == round(strip.y + strip.h / 2)
