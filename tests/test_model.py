"""DAVE-2's published shape, and load_steering_model refusing models that do not fit."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from drive_viz.errors import ModelError  # noqa: E402
from drive_viz.model.dave2 import build_dave2, load_steering_model  # noqa: E402


def test_dave2_has_the_published_parameter_count_and_feature_maps() -> None:
    model = build_dave2("elu", "flatten", seed=0)
    # Bojarski et al. 2016 / DESIGN.md: 252,219 parameters; maps 31x98, 14x47, 5x22, 3x20, 1x18.
    assert model.count_params() == 252_219
    maps = [tuple(model.get_layer(f"conv{i}").output.shape[1:3]) for i in range(1, 6)]
    assert maps == [(31, 98), (14, 47), (5, 22), (3, 20), (1, 18)]
    channels = [model.get_layer(f"conv{i}").output.shape[3] for i in range(1, 6)]
    assert channels == [24, 36, 48, 64, 64]
    assert tuple(model.output.shape[1:]) == (1,)


def test_gap_head_replaces_the_dense_head_by_one_output_per_conv5_channel() -> None:
    # Convolutions: 1,824 + 21,636 + 43,248 + 27,712 + 36,928 = 131,348; output 64 + 1.
    assert build_dave2("relu", "gap").count_params() == 131_348 + 65


def test_same_seed_same_initial_weights() -> None:
    first = build_dave2(seed=7).get_weights()
    second = build_dave2(seed=7).get_weights()
    other = build_dave2(seed=8).get_weights()
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
    assert not all((a == b).all() for a, b in zip(first, other, strict=True))


def test_a_fitting_model_loads(tmp_path) -> None:
    path = tmp_path / "ok.keras"
    build_dave2(seed=1).save(path)
    assert load_steering_model(path).count_params() == 252_219


def test_wrong_input_size_is_refused(tmp_path) -> None:
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    path = tmp_path / "small_input.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match=r"small_input\.keras: input shape .*66, 200, 3") as info:
        load_steering_model(path)
    assert "\n" not in str(info.value)


def test_two_outputs_are_refused(tmp_path) -> None:
    inputs = keras.Input((66, 200, 3))
    features = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1)(features), keras.layers.Dense(1)(features)])
    path = tmp_path / "two_heads.keras"
    model.save(path)
    with pytest.raises(ModelError, match=r"two_heads\.keras: the model has 2 outputs .*"
                                         "must name the steering output") as info:
        load_steering_model(path)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_model_is_refused(tmp_path) -> None:
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match=r"broken\.keras: ") as info:
        load_steering_model(path)
    assert "\n" not in str(info.value)
