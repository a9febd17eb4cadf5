"""Detection quality on synthetic scenes, and what hard-negative mining buys.

Writes fixed-seed synthetic scenes, tiles them (val and test get ``--eval-negatives``
negatives per impact, so false positives on look-alikes are frequent enough to count),
trains with ``--rounds`` mining rounds and prints, per round, the test scenes' object
precision, recall, F1, crater false positives and false positives per 100 km^2.

Targets on the test scenes: object recall at least 0.9; mining cuts crater false
positives by at least half at no more than 0.05 loss of recall.

    python benchmarks/quality.py [--config configs/unet-demo.yaml] [--scenes 8] [--difficulty hard]
                                 [--rounds 2] [--set key=value ...]

The training budget (60 steps per epoch, 10 epochs, 4 per mining round) keeps the run near
15 minutes on 2 CPU cores; ``--set`` overrides it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# This folder holds benchmarks/tiling.py, which would shadow the tiling package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench" / "quality"


def main() -> None:
    from impacts.config import load_config
    from tiling.config import SynthConfig, TileConfig
    from tiling.pipeline import tile_folder
    from tiling.synth import synth_scenes
    from training.config import TrainConfig
    from training.train import train_run

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "unet-demo.yaml")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic scenes (2 go to test, 2 to val)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--rounds", type=int, default=2, help="mining rounds after round 0")
    parser.add_argument(
        "--eval-negatives", type=float, default=4.0, help="val/test negatives per impact crop"
    )
    parser.add_argument("--difficulty", default="hard", choices=["easy", "medium", "hard"])
    parser.add_argument("--set", dest="sets", action="append", default=[], help="training config override")
    parser.add_argument("--fresh", action="store_true", help="rebuild scenes and patches")
    args = parser.parse_args()

    tag = f"{args.difficulty}-{args.scenes}-{args.seed}"
    scenes, patches, run = WORK / f"scenes-{tag}", WORK / f"patches-{tag}", WORK / "run"
    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    started = time.perf_counter()
    if not (scenes / "data.csv").is_file():
        synth_scenes(scenes, SynthConfig(count=args.scenes, seed=args.seed, difficulty=args.difficulty))
    if not (patches / "manifest.csv").is_file():
        tile_folder(
            scenes, patches, TileConfig(seed=args.seed, eval_negatives_per_positive=args.eval_negatives)
        )
    budget = ["data.steps_per_epoch=60", "epochs=10", "mining.epochs=4"]  # about 15 min on 2 cores
    cfg = load_config(args.config, TrainConfig, [*budget, f"mining.rounds={args.rounds}", *args.sets])
    shutil.rmtree(run, ignore_errors=True)
    report = train_run(cfg, patches, run)
    minutes = (time.perf_counter() - started) / 60

    print(
        f"\nconfig {args.config.name} {' '.join([*budget, *args.sets])}; {args.scenes} {args.difficulty} scenes "
        f"(seed {args.seed}); {minutes:.1f} min in all"
    )
    print(
        f"{'round':>5} {'mined':>6} {'epochs':>6} {'P':>6} {'R':>6} {'F1':>6} {'crater FP':>9} {'all FP':>6} {'FP/100km2':>9}"
    )
    rows = []
    for entry in report["rounds"]:
        test = entry["test"]
        o = test["object"]
        rows.append((o["recall"], test["fp_by_kind"]["crater"]))
        print(
            f"{entry['round']:5d} {entry['mined']:6d} {entry['epochs_run']:6d} {o['precision']:6.3f} {o['recall']:6.3f} {o['f1']:6.3f} "
            f"{test['fp_by_kind']['crater']:9d} {o['false_positives']:6d} {test['fp_per_100km2'] or 0:9.1f}"
        )
    (recall0, crater0), (recall_n, crater_n) = rows[0], rows[-1]
    print(f"target recall >= 0.9 (last round): {recall_n:.3f} ({'met' if recall_n >= 0.9 else 'MISSED'})")
    cut = 1 - crater_n / crater0 if crater0 else 0.0
    ok = crater0 > 0 and cut >= 0.5 and recall0 - recall_n <= 0.05
    print(
        f"target mining halves crater FPs at <= 0.05 recall loss: {crater0} -> {crater_n} ({cut:.0%} fewer), "
        f"recall {recall0:.3f} -> {recall_n:.3f} ({'met' if ok else 'MISSED'})"
    )
    (WORK / "quality.json").write_text(json.dumps({"minutes": minutes, "rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
