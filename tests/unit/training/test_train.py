"""Run-folder bookkeeping of ``impacts train``: the history read back from the round logs."""

from __future__ import annotations

import math
from pathlib import Path

from training.train import _logged_history


def test_a_round_log_without_validation_reads_back_as_the_training_history(tmp_path: Path) -> None:
    # Keras's CSVLogger writes val_* columns filled with NA when a fit has no validation data.
    log = tmp_path / "round-0.csv"
    log.write_text(
        "epoch,iou,loss,mse,val_iou,val_loss,val_mse\n"
        "0,0.01,1.9,0.33,NA,NA,NA\n"
        "1,0.02,1.8,0.30,NA,NA,NA\n"
        "1,0.03,1.7,0.29,NA,NA,NA\n"  # epoch 1 again after a resume: the last line counts
    )
    assert _logged_history(log) == {"iou": [0.01, 0.03], "loss": [1.9, 1.7], "mse": [0.33, 0.29]}


def test_a_single_missing_value_is_nan_and_the_column_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "round-1.csv"
    log.write_text("epoch,loss,val_loss\n0,1.5,NA\n1,1.2,1.4\n")
    history = _logged_history(log)
    assert history["loss"] == [1.5, 1.2]
    assert math.isnan(history["val_loss"][0]) and history["val_loss"][1] == 1.4
