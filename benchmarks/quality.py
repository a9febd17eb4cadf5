"""Whole-scene detection quality on realistic synthetic scenes, and what mining buys.

Writes ``--scenes`` fixed-seed synthetic scenes (``--difficulty realistic`` by default,
CTX strip sizes with ``--strips``, square ``--scene-px`` scenes for quick runs) and tiles
them (``tiling.splits``: about 20 % test and 20 % val, at least one each from 3 scenes;
2 test, 2 val and 4 train of the default 8). Trains with ``--rounds`` hard-negative mining
rounds (``mining.source`` from ``--mining-source``: pool patches, the train scenes
predicted whole, or both) and ``evaluation.scenes_dir`` set, so after every round the
val and test scenes are predicted whole (``training.round_scenes``). Prints, per round,
the mined patches, the epochs and the whole TEST scenes at the config's threshold:
recall, precision, false candidates per 100 km² of valid area, duplicates, the commonest
false-candidate kinds, and beside them the test patches' object precision and recall
(labelled patch). Then the operating point chosen on the val scenes
(``evaluation.target_recall``) with the test figures there, the targets met or MISSED,
the time and the command line. All figures go to ``.bench/quality/quality.json`` (the
run, with ``report.json``, to ``.bench/quality/run``).

Targets, on the test scenes:

- recall >= 0.90 at <= 2 false candidates per 100 km², at the operating point;
- duplicates <= 2 % of the detections, at the operating point;
- mining (last round against round 0, at the config threshold) halves the false
  candidates per 100 km² at no more than 0.03 loss of recall.

    python benchmarks/quality.py [--config configs/unet-demo.yaml] [--scenes 8] [--seed 2026]
        [--difficulty realistic] [--strips] [--scene-px N] [--rounds 2]
        [--mining-source pool|scenes|both] [--set key=value ...] [--fresh]

The training budget (``BUDGET``: 60 steps per epoch, 12 epochs, then 5 per mining round,
2 mining rounds) with 8 default-size scenes is estimated at 20-25 minutes on 2 idle CPU
cores (not yet measured whole): about 13 of training (0.6 s a step), 1 of writing and
tiling scenes, and per round a minute or two of predicting the 4 val and test scenes
whole (plus the 4 train scenes when mining from scenes). ``--set`` overrides the budget.
A smoke run (about 2 minutes)::

    python benchmarks/quality.py --scenes 5 --scene-px 1536 --rounds 1 \\
        --set epochs=1 --set mining.epochs=1 --set data.steps_per_epoch=3
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# This folder holds benchmarks/tiling.py, which would shadow the tiling package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench" / "quality"
#: The training budget (about 20-25 min in all on 2 cores with 8 default scenes); --set overrides it.
BUDGET = ["data.steps_per_epoch=60", "epochs=12", "mining.epochs=5"]
TARGET_RECALL, MAX_FALSE_PER_100KM2, MAX_DUPLICATE_SHARE = 0.90, 2.0, 0.02
MIN_MINING_CUT, MAX_MINING_RECALL_LOSS = 0.5, 0.03
TOP_KINDS = 3


def parse_args() -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "unet-demo.yaml")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic scenes (of 8: 2 test, 2 val)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the scenes and the tiling")
    parser.add_argument("--difficulty", default="realistic", choices=["easy", "medium", "hard", "realistic"])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--strips", action="store_true", help="CTX strip sizes (large: slow)")
    size.add_argument("--scene-px", type=int, help="square scenes of this side [drawn per scene]")
    parser.add_argument("--rounds", type=int, default=2, help="mining rounds after round 0")
    parser.add_argument(
        "--mining-source", default="scenes", choices=["pool", "scenes", "both"], help="mining.source"
    )
    parser.add_argument("--set", dest="sets", action="append", default=[], help="training config override")
    parser.add_argument("--fresh", action="store_true", help="rebuild scenes and patches")
    return parser.parse_args()


def build_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """The benchmark's scenes and patch set, written when missing (kept per settings)."""
    from tiling.config import SynthConfig, TileConfig
    from tiling.pipeline import tile_folder
    from tiling.synth import synth_scenes

    shape = "strips" if args.strips else f"{args.scene_px}px" if args.scene_px else "drawn"
    tag = f"{args.difficulty}-{args.scenes}-{args.seed}-{shape}"
    scenes, patches = WORK / f"scenes-{tag}", WORK / f"patches-{tag}"
    if not (scenes / "data.csv").is_file():
        size = (args.scene_px, args.scene_px) if args.scene_px else None
        synth_cfg = SynthConfig(
            count=args.scenes, seed=args.seed, difficulty=args.difficulty, strips=args.strips, size=size
        )
        synth_scenes(scenes, synth_cfg)
    if not (patches / "manifest.csv").is_file():
        tile_folder(scenes, patches, TileConfig(seed=args.seed))
    return scenes, patches


def whole_test(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A round's test scenes at the config threshold (the ``operating`` block), or {}."""
    return dict(((entry.get("test") or {}).get("whole_scene") or {}).get("operating") or {})


def share(part: float | None, whole: float | None) -> float | None:
    """``part / whole``, None when either is missing or ``whole`` is 0."""
    return part / whole if part is not None and whole else None


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A figure, ``-`` when missing."""
    return "-" if value is None else format(value, spec)


def top_kinds(by_kind: Mapping[str, int]) -> str:
    """The commonest false-candidate kinds: ``boulder 40, crater 12, shadow 5``."""
    ranked = sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{kind} {n}" for kind, n in ranked[:TOP_KINDS] if n) or "-"


def round_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per round: mined, epochs, the whole test scenes at the config threshold and the patch P/R."""
    rows = []
    for entry in report["rounds"]:
        scene = whole_test(entry)
        patch = (entry.get("test") or {}).get("object") or {}
        rows.append(
            {
                "round": entry["round"],
                "mined": entry.get("mined", 0),
                "mined_pool": entry.get("mined_pool"),
                "mined_scenes": entry.get("mined_scenes"),
                "epochs": entry.get("epochs_run"),
                "seconds": entry.get("seconds"),
                "recall": scene.get("recall"),
                "precision": scene.get("precision"),
                "false_per_100km2": scene.get("false_candidates_per_100km2"),
                "duplicates": scene.get("duplicates"),
                "duplicate_share": share(scene.get("duplicates"), scene.get("detections")),
                "false_by_kind": scene.get("false_candidates_by_kind") or {},
                "patch_precision": patch.get("precision"),
                "patch_recall": patch.get("recall"),
            }
        )
    return rows


def print_rounds(rows: list[dict[str, Any]], threshold: float, merge_px: int) -> None:
    print(
        f"whole test scenes at the config threshold {threshold:g}, merge distance {merge_px} px "
        "(patch = object P/R on the test patches):"
    )
    print(
        f"{'round':>5} {'mined':>6} {'epochs':>6} {'recall':>6} {'prec':>6} {'false/100km2':>12} "
        f"{'dup/share':>10} {'patch P':>7} {'patch R':>7}  top false kinds"
    )
    for r in rows:
        dup = f"{fmt(r['duplicates'], 'd')}/{fmt(r['duplicate_share'], '.1%')}"
        print(
            f"{r['round']:5d} {r['mined']:6d} {r['epochs'] or 0:6d} {fmt(r['recall']):>6} "
            f"{fmt(r['precision']):>6} {fmt(r['false_per_100km2'], '.1f'):>12} {dup:>10} "
            f"{fmt(r['patch_precision']):>7} {fmt(r['patch_recall']):>7}  {top_kinds(r['false_by_kind'])}"
        )


def print_operating_point(point: Mapping[str, Any] | None) -> None:
    if point is None:
        print("operating point: none chosen (no val scenes with impacts); the config's stays")
        return
    print(
        f"operating point chosen on val scenes (target recall {point['target_recall']:g}): threshold "
        f"{point['threshold']:g}, merge distance {point['merge_distance_px']} px ({point['reason']})"
    )
    for split in ("val", "test"):
        row = point.get(split) or {}
        print(
            f"  {split:>4}: recall {fmt(row.get('recall'))}, precision {fmt(row.get('precision'))}, "
            f"{fmt(row.get('false_candidates_per_100km2'), '.1f')} false/100 km², "
            f"duplicates {row.get('duplicates', '-')} of {row.get('detections', '-')} detections"
        )


def at_least(value: float | None, bound: float) -> bool:
    return value is not None and value >= bound


def at_most(value: float | None, bound: float) -> bool:
    return value is not None and value <= bound


def targets(rows: list[dict[str, Any]], point: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets: ``{"target", "figures", "met"}`` each (a missing figure misses)."""
    test = (point or {}).get("test") or {}
    recall, false = test.get("recall"), test.get("false_candidates_per_100km2")
    dup = share(test.get("duplicates"), test.get("detections"))
    (f0, r0), (fn, rn) = ((r["false_per_100km2"], r["recall"]) for r in (rows[0], rows[-1]))
    cut = 1 - fn / f0 if f0 and fn is not None else None
    loss = r0 - rn if r0 is not None and rn is not None else None
    change = "-" if cut is None else f"{abs(cut):.0%} {'fewer' if cut >= 0 else 'more'}"
    mining = f"{fmt(f0, '.1f')} -> {fmt(fn, '.1f')} ({change}), recall {fmt(r0)} -> {fmt(rn)}"
    return [
        {
            "target": f"test recall >= {TARGET_RECALL:.2f} at <= {MAX_FALSE_PER_100KM2:g} false "
            "candidates per 100 km² (operating point)",
            "figures": f"recall {fmt(recall)} at {fmt(false, '.1f')}",
            "met": at_least(recall, TARGET_RECALL) and at_most(false, MAX_FALSE_PER_100KM2),
        },
        {
            "target": f"duplicates <= {MAX_DUPLICATE_SHARE:.0%} of test detections (operating point)",
            "figures": f"{fmt(dup, '.1%')} ({test.get('duplicates', '-')} of {test.get('detections', '-')})",
            "met": at_most(dup, MAX_DUPLICATE_SHARE),
        },
        {
            "target": f"mining halves false candidates per 100 km² at <= {MAX_MINING_RECALL_LOSS:g} "
            f"recall loss (config threshold, round 0 -> {rows[-1]['round']})",
            "figures": mining if len(rows) > 1 else "no mining round (--rounds 0)",
            "met": len(rows) > 1 and at_least(cut, MIN_MINING_CUT) and at_most(loss, MAX_MINING_RECALL_LOSS),
        },
    ]


def main() -> None:
    from impacts.atomic import write_json_atomic
    from impacts.config import load_config
    from impacts.provenance import git_revision
    from training.config import TrainConfig
    from training.train import train_run

    args = parse_args()
    command = shlex.join(["python", *sys.argv])
    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    started = time.perf_counter()
    scenes, patches = build_data(args)
    overrides = [
        *BUDGET,
        f"mining.rounds={args.rounds}",
        f"mining.source={args.mining_source}",
        f"evaluation.scenes_dir={scenes}",
        *args.sets,
    ]
    cfg = load_config(args.config, TrainConfig, overrides)
    run = WORK / "run"
    shutil.rmtree(run, ignore_errors=True)
    report = train_run(cfg, patches, run)
    minutes = (time.perf_counter() - started) / 60

    rows = round_rows(report)
    point = report.get("operating_point")
    test_block = (report["rounds"][-1].get("test") or {}).get("whole_scene") or {}
    print(
        f"\n{args.scenes} {args.difficulty} scenes (seed {args.seed}), test scenes "
        f"{', '.join(test_block.get('scenes', [])) or '-'}; config {args.config.name}, "
        f"mining source {args.mining_source}"
    )
    print_rounds(rows, cfg.evaluation.threshold, cfg.evaluation.merge_distance_px)
    print_operating_point(point)
    checks = targets(rows, point)
    for t in checks:
        print(f"target {t['target']}: {t['figures']} ({'met' if t['met'] else 'MISSED'})")
    print(f"{minutes:.1f} min in all; command: {command}")
    out = write_json_atomic(
        WORK / "quality.json",
        {
            "command": command,
            "revision": git_revision(REPO),
            "minutes": minutes,
            "overrides": overrides,
            "scenes": str(scenes),
            "report": str(run / "report.json"),
            "rounds": rows,
            "whole_scene": [
                {s: (e.get(s) or {}).get("whole_scene") for s in ("val", "test")} for e in report["rounds"]
            ],
            "operating_point": point,
            "targets": checks,
        },
    )
    print(f"figures: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
