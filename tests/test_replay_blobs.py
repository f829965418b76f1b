"""``replay --causal-blobs``: the layout map's causal blobs per frame, in the tables, the
summary, the report and drawn on the video, on a hand-built model whose causal region is
known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drive_viz.cli import main
from drive_viz.model.contract import InputContract
from drive_viz.model.preprocess import preprocess_frame
from drive_viz.recording.format import CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter
from drive_viz.render.overlay import OverlayRenderer
from drive_viz.runs.replay import Batch, blob_batch

H, W = 66, 200
#: The camera frame is 200x132: the default crop (top 0.4, bottom 0.1) keeps rows 53..119,
#: exactly 66 rows of 200 columns, so network pixel (r, c) is camera pixel (r + 53, c).
CAMERA = (132, 200)
TOP = 53
PATCH = (slice(20, 40), slice(120, 160))  # steer = mean Y over it / 255 ...
DECOY = (slice(25, 45), slice(30, 60))  # ... + 0.001 x mean Y over it / 255
DECOY_WEIGHT = 0.001
FRAMES = 6


def _weights() -> np.ndarray:
    weights = np.zeros((H, W), np.float32)
    weights[PATCH] = 1.0 / (20 * 40)
    weights[DECOY] = DECOY_WEIGHT / (20 * 30)
    return weights


def _patch_model():
    """Rescaling, a 1x1 Conv2D picking Y, Flatten, Dense with ``_weights``: the model reads
    the patch, and the decoy so faintly that removing it moves steering at most
    DECOY_WEIGHT (Y in 0..255) < the 0.005 threshold."""
    import keras

    inputs = keras.Input(shape=(H, W, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(inputs)
    x = keras.layers.Conv2D(1, 1, name="conv1")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="steer")(
        keras.layers.Flatten(name="flatten")(x)))
    model.get_layer("conv1").set_weights([np.array([1, 0, 0], np.float32).reshape(1, 1, 3, 1),
                                          np.zeros(1, np.float32)])
    model.get_layer("steer").set_weights([_weights().reshape(-1, 1), np.zeros(1, np.float32)])
    return model


def _camera_frame(i: int) -> np.ndarray:
    """Grey (Y = the grey level) dark texture with a bright rectangle inside the patch and
    one inside the decoy, both surrounded by dark pixels, so imputing either region from its
    border darkens it."""
    rng = np.random.default_rng(i)
    grey = rng.uniform(30, 60, CAMERA)
    grey[TOP + 24:TOP + 36, 126:154] = 200 + 5 * i
    grey[TOP + 29:TOP + 41, 36:54] = 220
    return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blobs")
    recording = root / "rec"
    meta = RecordingMeta(source="unit test", fps=10.0,
                         cameras=(CameraSpec("center", CAMERA[1], CAMERA[0]),))
    with RecordingWriter(recording, meta) as writer:
        for i in range(FRAMES):
            writer.append(steer=0.3, images={"center": _camera_frame(i)})
    model = root / "patch.keras"
    _patch_model().save(model)
    out = root / "run"
    code = main(["replay", str(recording), "--model", str(model), "--out", str(out),
                 "--methods", "saliency", "--causal-blobs", "--blob-threshold", "0.004",
                 "--batch-size", "4", "--video-size", "640x360", "--quiet"])
    assert code == 0
    return out


def test_the_blob_over_the_read_patch_is_causal_and_the_decoy_is_not(run) -> None:
    table = pd.read_parquet(run / "frames.parquet")
    assert len(table) == FRAMES
    # Saliency of a linear model is |weight| / 255 (U and V have no weight): nonzero on the
    # patch (800 px) and the decoy (600 px) only, both within the top 20 % (2640 px), two
    # blobs; only the patch moves steering by more than the threshold.
    assert table["blobs"].tolist() == [2] * FRAMES
    assert table["causal_blobs"].tolist() == [1] * FRAMES
    assert table["blobs"].dtype.kind == table["causal_blobs"].dtype.kind == "i"
    assert (table["blobs_ms"] > 0).all()
    patch_mass, decoy_mass = 1.0, DECOY_WEIGHT
    np.testing.assert_allclose(table["causal_mass_share"], patch_mass / (patch_mass + decoy_mass),
                               rtol=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"]["causal_blobs"] is True
    assert summary["parameters"]["blob_threshold"] == 0.004  # the CLI flags reached the options
    causal = summary["causal_blobs"]
    assert causal["method"] == "saliency"
    assert causal["blobs_per_frame"] == 2.0 and causal["causal_blobs_per_frame"] == 1.0
    assert causal["causal_mass_share"] == pytest.approx(1 / 1.001, rel=1e-5)
    page = (run / "report.html").read_text()
    assert "causal blobs" in page and "causal mass share" in page


def test_blob_removals_are_seeded_by_row_whatever_the_batch() -> None:
    """A frame's imputation noise depends on its table row only, so a replay is
    reproducible however its frames fall into batches."""
    rng = np.random.default_rng(4)
    inputs = np.repeat(rng.uniform(0, 255, (1, H, W, 3)).astype(np.float32), 3, axis=0)
    saliency = np.zeros((3, H, W), np.float32)
    saliency[:, PATCH[0], PATCH[1]] = 1.0
    seen: list[np.ndarray] = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x[:, PATCH[0], PATCH[1], 0].mean(axis=(1, 2)) / 255

    def batch_of(rows: list[int]) -> Batch:
        reference = inputs[rows][:, PATCH[0], PATCH[1], 0].mean(axis=(1, 2)) / 255
        batch = Batch(positions=rows, rows=rows, inputs=inputs[rows],
                      table=pd.DataFrame({"row": rows, "steer_pred": reference}))
        batch.maps = {"saliency": saliency[rows]}
        return batch

    blob_batch(predict, "saliency", 0.005, batch_of([0, 1, 2]))
    together = seen[2]
    seen.clear()
    alone = blob_batch(predict, "saliency", 0.005, batch_of([2]))
    np.testing.assert_array_equal(seen[0], together)
    assert alone.table["blobs"].tolist() == [1] and len(alone.blobs[0]) == 1
    assert np.array_equal(alone.blobs[0][0][0], saliency[2] > 0)
    # The same frame at another row draws other noise.
    seen.clear()
    blob_batch(predict, "saliency", 0.005, batch_of([1]))
    assert not np.array_equal(seen[0][0], together[0])


def _is_causal_colour(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> bool: cyan-ish (the grey test frame never is)."""
    pixels = pixels.astype(int)
    return (pixels[..., 1] - pixels[..., 0] > 100) & (pixels[..., 2] - pixels[..., 0] > 100)


def test_blob_outlines_land_where_the_crop_box_puts_the_blob() -> None:
    contract = InputContract(crop=(0.4, 0.1, 0, 0))
    renderer = OverlayRenderer("saliency", ("saliency",), contract=contract)
    ramp = np.linspace(60, 180, 320, dtype=np.float32)
    frame = np.repeat(np.repeat(ramp[None, :, None], 160, 0), 3, 2).astype(np.uint8)
    causal = np.zeros((H, W), bool)
    causal[PATCH] = True
    other = np.zeros((H, W), bool)
    other[DECOY] = True

    def draw(blobs):
        return renderer.draw(frame, preprocess_frame(frame, contract),
                             {"saliency": np.zeros((H, W), np.float32)}, None, 0.0, 0.0,
                             frame=1, t=0.1, blobs=blobs)

    base, drawn = draw(None), draw([(causal, True), (other, False)])
    # Independent geometry: the 320x160 frame fills the 840-wide main panel at x=8 with
    # scale 840/320 (420 px high, top at 8 + 26 = 34); the crop keeps rows 64..144 of the
    # frame, display rows 168..378 below that top; the 66x200 input spans it.
    scale = 840 / 320

    def main_xy(row: float, col: float) -> tuple[float, float]:
        return 8 + col / W * 840, 34 + 64 * scale + row / H * (80 * scale)

    main = np.zeros(drawn.shape[:2], bool)
    main[8:480, 8:848] = True
    cyan = _is_causal_colour(drawn) & ~_is_causal_colour(base)
    left, top = main_xy(PATCH[0].start, PATCH[1].start)
    right, bottom = main_xy(PATCH[0].stop, PATCH[1].stop)
    ys, xs = np.nonzero(cyan & main)
    tolerance = 4
    assert len(ys) > 2 * ((right - left) + (bottom - top))  # a 2-px outline all round
    assert left - tolerance <= xs.min() <= left + tolerance
    assert right - tolerance <= xs.max() <= right + tolerance
    assert top - tolerance <= ys.min() <= top + tolerance
    assert bottom - tolerance <= ys.max() <= bottom + tolerance
    # An outline, not a fill: the blob's middle keeps its picture.
    cx, cy = (left + right) / 2, (top + bottom) / 2
    assert (drawn[int(cy), int(cx)] == base[int(cy), int(cx)]).all()
    # The non-causal decoy is outlined too, but never in the causal colour.
    d_left, d_top = main_xy(DECOY[0].start, DECOY[1].start)
    d_right, d_bottom = main_xy(DECOY[0].stop, DECOY[1].stop)
    decoy = np.zeros_like(main)
    decoy[int(d_top) - tolerance:int(d_bottom) + tolerance,
          int(d_left) - tolerance:int(d_right) + tolerance] = True
    assert (drawn[decoy] != base[decoy]).any()
    assert not (cyan & decoy).any()
    # Input view: 200x66 at 2x in the 400x132 box at (864, 28).
    view = np.zeros_like(main)
    view[28:160, 864:1264] = True
    ys, xs = np.nonzero(cyan & view)
    assert 864 + 2 * 120 - tolerance <= xs.min() and xs.max() <= 864 + 2 * 160 + tolerance
    assert 28 + 2 * 20 - tolerance <= ys.min() and ys.max() <= 28 + 2 * 40 + tolerance
    # Nowhere else but the legend above the input view.
    legend = np.zeros_like(main)
    legend[0:28, 864:1264] = True
    assert not (cyan & ~(main | view | legend)).any()
    assert (cyan & legend).any()
