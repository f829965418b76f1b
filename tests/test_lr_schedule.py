"""train --lr-schedule: the cosine decay reaches 0 at the last step; the card's command keeps it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drive_viz.errors import DriveVizError
from drive_viz.model.dave2 import build_dave2
from drive_viz.model.train import TrainConfig, compile_for_training


def test_cosine_schedule_follows_the_cosine_to_zero():
    model = compile_for_training(build_dave2(seed=0), 1e-3, decay_steps=40)
    schedule = model.optimizer._learning_rate
    for step in (0, 10, 20, 30, 40):
        expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / 40))
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-9)
    constant = compile_for_training(build_dave2(seed=0), 1e-3)
    assert float(constant.optimizer.learning_rate) == pytest.approx(1e-3)


def test_schedule_is_in_the_command_and_checked(tmp_path):
    config = TrainConfig([Path("rec")], tmp_path / "m.keras", lr_schedule="cosine")
    assert "--lr-schedule cosine" in config.command()
    with pytest.raises(DriveVizError, match="--lr-schedule"):
        TrainConfig([Path("rec")], tmp_path / "m.keras", lr_schedule="step")
