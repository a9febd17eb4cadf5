"""A round's callbacks: the ones the report reads are named, not found by position or probing."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.callbacks import RoundCallbacks, round_callbacks
from training.config import TrainConfig
from training.distribute import Distribution


def test_the_timer_is_named_and_runs_first(tmp_path: Path) -> None:
    callbacks = round_callbacks(TrainConfig(), tmp_path, 0, True, Distribution())
    assert isinstance(callbacks, RoundCallbacks)
    assert callbacks.in_order[0] is callbacks.timer
    assert callbacks.timer.seconds == [] and callbacks.timer.train_seconds == []
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "logs").is_dir()


def test_the_target_stop_is_named_only_when_there_is_a_target_and_val(tmp_path: Path) -> None:
    without = round_callbacks(TrainConfig(target_val_loss=None), tmp_path, 0, True, Distribution())
    assert without.target_stop is None and without.target_reached is None
    no_val = round_callbacks(TrainConfig(target_val_loss=0.5), tmp_path, 0, False, Distribution())
    assert no_val.target_stop is None and no_val.target_reached is None
    with_target = round_callbacks(TrainConfig(target_val_loss=0.5), tmp_path, 1, True, Distribution())
    stop = with_target.target_stop
    assert stop is not None and stop in with_target.in_order and with_target.target_reached is None
    stop.reached = {"epoch": 3, "seconds": 1.5, "val_loss": 0.4}
    assert with_target.target_reached == {"epoch": 3, "seconds": 1.5, "val_loss": 0.4}


def test_the_timer_measures_each_epoch_and_its_training_steps() -> None:
    timer = round_callbacks(TrainConfig(), Path("unused"), 0, False, _NoFiles()).timer
    for _ in range(2):
        timer.on_epoch_begin(0)
        timer.on_test_begin()
        timer.on_epoch_end(0)
    timer.on_epoch_begin(2)
    timer.on_epoch_end(2)  # no validation this epoch
    assert len(timer.seconds) == len(timer.train_seconds) == 3
    assert all(0 <= t <= s for t, s in zip(timer.train_seconds, timer.seconds, strict=True))
    assert timer.train_seconds[2] == timer.seconds[2]


class _NoFiles(Distribution):
    """A rank other than the chief: it writes no files."""

    def __init__(self) -> None:
        super().__init__()
        self.rank = 1
