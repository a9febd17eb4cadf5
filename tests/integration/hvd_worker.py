"""Run under mpirun/horovodrun by the scale-out tests: train, then save this rank's weights.

Usage: python hvd_worker.py CONFIG DATA OUT WEIGHTS_DIR [KEY=VALUE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from impacts.config import load_config
from training.config import TrainConfig
from training.train import train_run


def main(argv: list[str]) -> None:
    config, data, out, weights_dir, *sets = argv

    def keep(model: Any) -> None:
        import horovod.tensorflow as hvd

        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        np.savez(Path(weights_dir) / f"rank{hvd.rank()}.npz", **arrays)

    cfg = load_config(Path(config), TrainConfig, [*sets, "distribute.strategy=horovod"])
    train_run(cfg, Path(data), Path(out), on_model=keep)


if __name__ == "__main__":
    main(sys.argv[1:])
