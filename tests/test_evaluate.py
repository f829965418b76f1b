"""Trust checks: randomization sanity check, deletion/insertion, mask agreement, the command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from drive_viz.attention.evaluate import (
    MapMaker,
    deletion_insertion,
    mask_agreement,
    randomization_stages,
    sanity_check,
    spearman_rows,
)
from drive_viz.attention.network import steering_predictor
from drive_viz.cli import main
from drive_viz.model.dave2 import build_dave2
from drive_viz.recording.format import MASK_CLASSES, CameraSpec, RecordingMeta
from drive_viz.recording.writer import RecordingWriter

H, W = 66, 200
#: The hand-built model reads Y on two 20 x 40 blocks: +1 on the right one, -1 on the left.
RIGHT = (slice(20, 40), slice(130, 170))
LEFT = (slice(20, 40), slice(30, 70))
REGION_SHARE = 2 * 20 * 40 / (H * W)  # 0.1212: the only pixels the output depends on


@pytest.fixture(scope="module")
def region_model():
    """steer = mean Y(right block) - mean Y(left block), as a chain of DAVE-2-style layers."""
    import keras

    inputs = keras.Input(shape=(H, W, 3))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    x = keras.layers.Conv2D(1, 1, name="conv1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(1, name="steer")(x)
    model = keras.Model(inputs, outputs)
    weights = np.zeros((H, W), np.float32)
    weights[RIGHT] = 1.0 / 800
    weights[LEFT] = -1.0 / 800
    model.get_layer("conv1").set_weights([np.array([1, 0, 0], np.float32).reshape(1, 1, 3, 1),
                                          np.zeros(1, np.float32)])
    model.get_layer("steer").set_weights([weights.reshape(-1, 1), np.zeros(1, np.float32)])
    return model


@pytest.fixture(scope="module")
def textured_inputs() -> np.ndarray:
    """Textured frames with a bright right block and a dark left block: blurring either
    block (the deletion baseline) lowers the output, so deletions add up coherently."""
    rng = np.random.default_rng(0)
    x = np.empty((6, H, W, 3), np.float32)
    x[..., 0] = rng.uniform(60, 140, size=(6, H, W))
    x[:, RIGHT[0], RIGHT[1], 0] = rng.uniform(180, 235, size=(6, 20, 40))
    x[:, LEFT[0], LEFT[1], 0] = rng.uniform(5, 40, size=(6, 20, 40))
    x[..., 1:] = 128
    return x


def test_region_model_computes_what_it_says(region_model, textured_inputs) -> None:
    x = textured_inputs
    expected = (x[:, RIGHT[0], RIGHT[1], 0].mean(axis=(1, 2))
                - x[:, LEFT[0], LEFT[1], 0].mean(axis=(1, 2))) / 127.5
    np.testing.assert_allclose(steering_predictor(region_model)(x), expected, atol=1e-5)


def test_spearman_rows_known_values() -> None:
    a = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]] * 3)
    b = np.array([[1.0, 4.0, 9.0, 16.0, 25.0],  # monotone: 1
                  [5.0, 4.0, 3.0, 2.0, 1.0],  # reversed: -1
                  [1.0, 1.0, 2.0, 2.0, 3.0]])  # ties: ranks 1.5 1.5 3.5 3.5 5
    ranks_b = np.array([1.5, 1.5, 3.5, 3.5, 5.0])
    expected = np.corrcoef(np.arange(1.0, 6.0), ranks_b)[0, 1]
    np.testing.assert_allclose(spearman_rows(a, b), [1.0, -1.0, expected])
    assert np.isnan(spearman_rows(a[:1], np.zeros((1, 5))))[0]


def test_sanity_check_gradient_low_edge_detector_high(region_model, textured_inputs) -> None:
    check = sanity_check(region_model, textured_inputs, ("saliency", "sobel"), seed=1)
    assert check["stages"] == ["steer", "conv1"]
    saliency = check["spearman_mean"]["saliency"]
    sobel = check["spearman_mean"]["sobel"]
    # Randomized weights spread the gradient over the whole frame: it no longer ranks the
    # two blocks first. The input-only Sobel map cannot change at all.
    assert max(saliency) < 0.3
    np.testing.assert_allclose(sobel, [1.0, 1.0])
    # The model itself is untouched.
    np.testing.assert_allclose(region_model.get_layer("steer").get_weights()[0].max(), 1 / 800)


def test_sanity_check_cascade_covers_dave2() -> None:
    model = build_dave2(seed=0)
    assert randomization_stages(model) == ["steer", "dense3", "dense2", "dense1", "conv5",
                                           "conv4", "conv3", "conv2", "conv1"]


def test_deletion_of_salient_pixels_beats_random(region_model, textured_inputs) -> None:
    maps = MapMaker(region_model, ("saliency",))(textured_inputs)
    assert (maps["saliency"][:, 0:20].max() == 0) and (maps["saliency"][:, RIGHT[0], RIGHT[1]]
                                                       > 0).all()
    result = deletion_insertion(steering_predictor(region_model), textured_inputs, maps,
                                steps=16, seed=0)
    deletion, insertion = result["deletion"], result["insertion"]
    assert deletion["fractions"][2] == pytest.approx(0.125)
    salient = np.array(deletion["curves"]["saliency"])
    # Endpoints by definition: nothing deleted -> 0, everything deleted -> 1.
    assert salient[0] == 0.0 and salient[-1] == pytest.approx(1.0)
    # 12.5% >= the 12.1% of pixels the output depends on: from step 2 on, all are deleted.
    np.testing.assert_allclose(salient[2:], 1.0, rtol=1e-4)
    np.testing.assert_allclose(insertion["curves"]["saliency"][2:], 0.0, atol=1e-4)
    assert deletion["auc"]["saliency"] > 0.9 > deletion["auc"]["random"] + 0.3
    assert insertion["auc"]["saliency"] < 0.1 < insertion["auc"]["random"] - 0.3


def test_mask_agreement_hand_built() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[40:, :] = MASK_CLASSES["road"]
    mask[40:, 98:102] = MASK_CLASSES["lane_marking"]
    uniform = np.ones((H, W), np.float32)
    on_marking = np.zeros((H, W), np.float32)
    on_marking[50, 100] = 1.0
    near_road = np.zeros((H, W), np.float32)
    near_road[37, 10] = -5.0  # 3 rows above the road
    maps = {"uniform": np.stack([uniform] * 2), "marking": np.stack([on_marking] * 2),
            "near": np.stack([near_road] * 2)}
    result = mask_agreement(maps, [mask, mask], tolerance=2)
    assert result["marking_area_share"] == pytest.approx(26 * 4 / (H * W))
    assert result["road_area_share"] == pytest.approx(26 / 66)
    assert result["pointing_chance"] == pytest.approx(28 / 66)  # road dilated by 2 rows
    uniform_result = result["methods"]["uniform"]
    assert uniform_result["marking_ratio"] == pytest.approx(1.0)
    assert uniform_result["road_ratio"] == pytest.approx(1.0)
    assert result["methods"]["marking"]["marking_ratio"] == pytest.approx(H * W / 104)
    assert result["methods"]["marking"]["pointing_hit_rate"] == 1.0
    assert result["methods"]["near"]["pointing_hit_rate"] == 0.0
    relaxed = mask_agreement(maps, [mask, None], tolerance=3)
    assert relaxed["frames_with_masks"] == 1
    assert relaxed["methods"]["near"]["pointing_hit_rate"] == 1.0
    assert mask_agreement(maps, [None, None]) is None


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "drive"
    meta = RecordingMeta(source="test", fps=10.0, cameras=(CameraSpec("center", 160, 120),))
    rng = np.random.default_rng(3)
    with RecordingWriter(path, meta, with_masks=True) as writer:
        for i in range(5):
            image = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
            mask = np.zeros((120, 160), np.uint8)
            mask[70:, :] = MASK_CLASSES["road"]
            mask[70:, 78 + i:82 + i] = MASK_CLASSES["lane_marking"]
            writer.append(steer=0.1 * i, images={"center": image}, masks={"center": mask})
    return path


def test_command_writes_documented_json(recording: Path, region_model, tmp_path: Path,
                                        capsys) -> None:
    model_path = tmp_path / "region.keras"
    region_model.save(model_path)
    out = tmp_path / "eval"
    code = main(["evaluate", str(recording), "--model", str(model_path), "--out", str(out),
                 "--frames", "4", "--steps", "8", "--methods", "saliency,gradcam,sobel"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["deletion_insertion.png", "evaluation.html",
                                                     "evaluation.json", "sanity_check.png"]
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report) == {"recording", "model", "camera", "frames", "skipped", "methods",
                           "seed", "prediction_mae", "sanity_check", "deletion", "insertion",
                           "masks", "plots", "verdicts", "warnings"}
    assert report["frames"] == [0, 1, 3, 4]  # 4 evenly spaced rows of 5
    assert report["skipped"] == []
    assert report["methods"] == ["saliency", "gradcam", "sobel"]
    assert report["sanity_check"]["stages"] == ["steer", "conv1"]
    assert set(report["sanity_check"]["spearman_mean"]) == {"saliency", "gradcam", "sobel"}
    for kind in ("deletion", "insertion"):
        assert len(report[kind]["fractions"]) == 9
        assert set(report[kind]["auc"]) == {"saliency", "gradcam", "sobel", "random"}
    assert report["masks"]["frames_with_masks"] == 4
    assert set(report["masks"]["methods"]["saliency"]) == {
        "marking_attention_share", "marking_ratio", "road_attention_share", "road_ratio",
        "pointing_hit_rate"}
    for name in report["plots"].values():
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100
    # Verdicts, recomputed from the curves and correlations in the same JSON.
    page = (out / "evaluation.html").read_text()
    printed = capsys.readouterr().out
    for method in ("saliency", "gradcam", "sobel"):
        rho = report["sanity_check"]["spearman_mean"][method][-1]
        verdict = report["verdicts"][method]
        assert verdict["randomization"]["passes"] == (None if rho is None else rho < 0.5)
        deletion = report["deletion"]["auc"]
        insertion = report["insertion"]["auc"]
        assert verdict["deletion"]["better"] == (deletion[method] > deletion["random"])
        assert verdict["insertion"]["better"] == (insertion[method] < insertion["random"])
        said = "undecided (NaN)" if rho is None else "PASSES" if rho < 0.5 else "FAILS"
        sentence = (f"randomization check {said}: rho "
                    f"{float('nan') if rho is None else rho:+.2f} with every layer re-drawn "
                    "(passes below 0.5)")
        assert sentence in printed and sentence in page
        better = "BETTER" if deletion[method] > deletion["random"] else "WORSE"
        assert f"deletion curve {better} than random order" in printed
        assert f"deletion curve {better} than random order" in page
    assert report["verdicts"]["sobel"]["randomization"]["passes"] is False  # ignores the model


def test_command_unknown_method_one_line_error(recording: Path, tmp_path: Path,
                                               capsys) -> None:
    code = main(["evaluate", str(recording), "--model", str(tmp_path / "m.keras"),
                 "--out", str(tmp_path / "eval"), "--methods", "saliency,telepathy"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "telepathy" in err
    assert not (tmp_path / "eval").exists()


def test_command_skips_unreadable_frames(recording: Path, region_model, tmp_path: Path,
                                         capsys) -> None:
    import shutil

    copy = tmp_path / "drive"
    shutil.copytree(recording, copy)
    model_path = tmp_path / "region.keras"
    region_model.save(model_path)
    broken = copy / "images" / "center" / "000001.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated JPEG
    out = tmp_path / "eval"
    code = main(["evaluate", str(copy), "--model", str(model_path), "--out", str(out),
                 "--frames", "4", "--steps", "4", "--methods", "saliency"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["frames"] == [0, 3, 4]
    assert [entry["row"] for entry in report["skipped"]] == [1]
    assert "000001.jpg" in report["skipped"][0]["reason"]
    for image in (copy / "images" / "center").iterdir():
        image.write_bytes(b"not a jpeg")
    code = main(["evaluate", str(copy), "--model", str(model_path), "--out",
                 str(tmp_path / "eval2"), "--frames", "4", "--methods", "saliency"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "none of the 4 chosen frames" in err


@pytest.mark.parametrize("colour", ["rgb", "bgr", "yuv"])
def test_sobel_baseline_reads_luma_whatever_the_contract(colour) -> None:
    """The model-free baseline is an edge map of the picture, not of channel 0: for RGB, BGR
    and YUV inputs, scaled or not, its luma is OpenCV's Y of the frame (within its rounding)."""
    from drive_viz.attention.evaluate import input_luma, sobel_map
    from drive_viz.model.contract import InputContract
    from drive_viz.model.preprocess import preprocess_batch

    rng = np.random.default_rng(4)
    frame = np.zeros((160, 320, 3), np.uint8)
    frame[:, :160] = (200, 30, 30)  # a red half: bright in R, dark in B
    frame[:, 160:] = (30, 30, 200)
    frame = np.clip(frame + rng.integers(-10, 10, frame.shape), 0, 255).astype(np.uint8)
    contract = InputContract(input_size=(66, 200), crop=(0, 0, 0, 0), colour=colour,
                             scale=1 / 255 if colour != "yuv" else 1.0,
                             offset=-0.5 if colour != "yuv" else 0.0)
    inputs = preprocess_batch([frame], contract)
    view = preprocess_batch([frame], InputContract(input_size=(66, 200), crop=(0, 0, 0, 0),
                                                   colour="rgb"))[0].astype(np.uint8)
    expected = cv2.cvtColor(view, cv2.COLOR_RGB2YUV)[..., 0].astype(np.float32)
    np.testing.assert_allclose(input_luma(inputs, contract)[0], expected, atol=1.0)
    edges = sobel_map(inputs, contract)[0]
    reference = cv2.magnitude(cv2.Sobel(expected, cv2.CV_32F, 1, 0),
                              cv2.Sobel(expected, cv2.CV_32F, 0, 1))
    assert np.corrcoef(edges.ravel(), reference.ravel())[0, 1] > 0.99
    # the strongest edges lie on the colour boundary in the middle, as in the reference
    assert abs(int(np.argmax(edges.sum(axis=0))) - 100) <= 2
