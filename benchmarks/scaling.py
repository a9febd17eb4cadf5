"""Training scale-out: images/s and time to a target validation loss, 1 worker vs N.

Runs ``impacts train --strategy horovod`` under ``mpirun -np W`` for each worker count in
``--workers`` (default ``1,2``), one after the other on the same patch set, with the
per-replica batch fixed (weak scaling: the global batch grows with the workers, the
learning rate follows ``--lr-scaling``). From each run's ``report.json``:

* images/s: ``steps_per_epoch x global_batch / seconds of the epoch's training steps``,
  median over the epochs after the first (which pays for graph tracing); validation
  (each rank its own shard of the val set) is left out of it;
* time to target: seconds until ``val_loss`` first reached ``--target`` (``target_val_loss``
  stops the run there), or "not reached" within ``--epochs``;
* scaling efficiency: ``images/s(W) / (W x images/s(1))``, and the speed-up to target.

The same script runs unchanged on a GPU node: each rank pins its local GPU (pass
``--precision mixed_float16`` there). On a CPU machine each rank gets ``cores / W``
TensorFlow threads so the workers share the cores instead of fighting over them; with W
at the core count, efficiency near 1 means the data-parallel machinery (sharding,
all-reduce, BatchNorm/log averaging) costs little, not that CPUs got faster. The patch set
is synthesised and tiled on first use under ``.bench/scaling/`` (4 scenes of 2048 x 1536
px, seed 3).

    python benchmarks/scaling.py [--workers 1,2] [--config configs/unet-demo.yaml]
                                 [--epochs 8] [--steps 24] [--target 1.1]
                                 [--lr-scaling none] [--precision float32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
WORK = ROOT / ".bench" / "scaling"


def _patch_set(work: Path) -> Path:
    """The benchmark's patch set, synthesised and tiled when missing."""
    sys.path.insert(0, str(ROOT))
    from tiling.config import SynthConfig, TileConfig
    from tiling.patchset import MANIFEST_NAME
    from tiling.pipeline import tile_folder
    from tiling.synth import synth_scenes

    patches = work / "patches"
    if (patches / MANIFEST_NAME).is_file():
        return patches
    shutil.rmtree(work, ignore_errors=True)
    print("building the patch set (synth + tile, once)", flush=True)
    synth_scenes(work / "scenes", SynthConfig(count=4, seed=3, size=(2048, 1536)))
    outcomes = tile_folder(work / "scenes", patches, TileConfig())
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(f"tiling the benchmark scenes failed; delete {work} and rerun")
    return patches


def _env(workers: int) -> dict[str, str]:
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return {
        **os.environ,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        # Ranks waiting in an all-reduce yield the core instead of spinning on it.
        "OMPI_MCA_mpi_yield_when_idle": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": threads,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _run(workers: int, args: argparse.Namespace, patches: Path) -> dict[str, Any]:
    out = WORK / f"run-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    sets = [
        f"epochs={args.epochs}",
        f"data.steps_per_epoch={args.steps}",
        f"target_val_loss={args.target}",
        "early_stopping_patience=null",
        "mining.rounds=0",
        f"distribute.lr_scaling={args.lr_scaling}",
        f"precision={args.precision}",
    ]
    cmd = ["mpirun", "-np", str(workers), "-bind-to", "none", str(Path(sys.executable).parent / "impacts")]
    cmd += ["-q", "train", "--config", str(args.config), "--data", str(patches), "--out", str(out)]
    cmd += ["--strategy", "horovod", *[a for s in sets for a in ("--set", s)]]
    print(f"{workers} worker(s): {' '.join(cmd[:4])} impacts train ...", flush=True)
    result = subprocess.run(cmd, cwd=ROOT, env=_env(workers), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"training with {workers} workers failed:\n{result.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    entry = report["rounds"][0]
    per_epoch = entry["epoch_train_seconds"][1:] or entry["epoch_train_seconds"]
    reached = entry.get("target_reached")
    return {
        "workers": workers,
        "global_batch": entry["global_batch"],
        "images_per_s": entry["steps_per_epoch"] * entry["global_batch"] / statistics.median(per_epoch),
        "epochs": entry["epochs_run"],
        "to_target_s": reached["seconds"] if reached else None,
        "to_target_epoch": reached["epoch"] if reached else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", default="1,2", help="Worker counts, comma-separated (first is the base)."
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "unet-demo.yaml")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24, help="Steps per epoch (each takes W batches).")
    parser.add_argument("--target", type=float, default=1.1, help="Target validation loss.")
    parser.add_argument("--lr-scaling", default="none", choices=["none", "linear", "sqrt"])
    parser.add_argument(
        "--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"]
    )
    args = parser.parse_args()
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun not found: run `make horovod` first")
    patches = _patch_set(WORK)
    counts = [int(w) for w in args.workers.split(",")]
    results = [_run(w, args, patches) for w in counts]
    base = results[0]
    print(
        f"\nconfig {args.config.name}, per-replica batch {base['global_batch'] // counts[0]}, "
        f"{args.steps} steps/epoch, lr scaling {args.lr_scaling}, {args.precision}, {os.cpu_count()} CPU cores"
    )
    print(
        f"{'workers':>7} {'global batch':>12} {'images/s':>9} {'efficiency':>10} {'to target':>10} {'speed-up':>8}"
    )
    for r in results:
        efficiency = r["images_per_s"] / (r["workers"] / base["workers"] * base["images_per_s"])
        to_target = f"{r['to_target_s']:.1f} s" if r["to_target_s"] is not None else "not reached"
        speedup = (
            f"{base['to_target_s'] / r['to_target_s']:.2f}x"
            if r["to_target_s"] and base["to_target_s"]
            else "-"
        )
        print(
            f"{r['workers']:7d} {r['global_batch']:12d} {r['images_per_s']:9.1f} {efficiency:10.2f} "
            f"{to_target:>10} {speedup:>8}"
        )


if __name__ == "__main__":
    main()
