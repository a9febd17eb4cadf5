"""The CTX archive as one job: measured throughput per core, extrapolated to 112,000 images.

Synthesises ``--count`` CTX-shaped scenes (default 4 of 6,000 x 5,000 px; ``--strips``
draws real strip sizes instead), writes them to a scene list, and predicts the list with
an untrained U-Net bundle (``--config``, default the demo size; throughput does not depend
on the weights) with 1 and 2 worker processes, as job-array elements do: worker ``i`` of
``W`` runs ``predict_path`` on chunk ``i`` of the list (``--array-index i --array-size W``,
:mod:`impacts.chunks`) with ``cores / W`` TensorFlow threads, so every setting uses the
same cores. Every worker loads the bundle and warms up first; the clock starts when all are
ready (start-up is paid once per element of a few hundred scenes, so it is left out).

Prints, per setting: scenes, Mpx, wall seconds, scenes per hour, Mpx/s and Mpx/s per core;
then the arithmetic for the archive (``--archive`` images of ``--mean-mpx`` each, by default
the mean of the reference CTX sizes, else 150 Mpx = 5,000 x 30,000) on ``--nodes`` nodes of
``--cores-per-node`` cores, and the Mpx/s each GPU would need for one node of
``--gpus-per-node`` GPUs to finish in a day.

    python benchmarks/archive.py [--count 4] [--size 6000x5000 | --strips] [--workers 1,2]
                                 [--nodes 10] [--cores-per-node 32] [--gpus-per-node 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# This folder holds benchmarks/tiling.py, which would shadow the tiling package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench" / "archive"
REFERENCE_SIZES = REPO.parent / "shared" / "reference" / "ctx_scene_sizes.csv"
ASSUMED_MEAN_MPX = 150.0  # 5,000 x 30,000 px

SETUP = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]
"""

# argv: bundle, scene list, out, index, workers, threads, ready file, go file
WORKER = (
    SETUP
    + """
import json, time
from pathlib import Path
import numpy as np
import tensorflow as tf
threads = int(sys.argv[6])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
from impacts.chunks import Chunking
from training.bundle import load_bundle
from training.predict import PredictConfig, predict_path
bundle = load_bundle(sys.argv[1])
cfg = PredictConfig(window_px=256, overlap_px=64, batch_size=8)
bundle.model.predict_on_batch(np.zeros((8, 256, 256, 1), "float32"))  # warm up
Path(sys.argv[7]).touch()
while not Path(sys.argv[8]).exists():
    time.sleep(0.01)
t0 = time.time()
outcomes = predict_path(bundle, None, Path(sys.argv[3]), cfg, int(sys.argv[4]),
                        scene_list=Path(sys.argv[2]), chunking=Chunking(array_size=int(sys.argv[5])))
print(json.dumps({"start": t0, "end": time.time(), "scenes": len(outcomes),
                  "failed": [o.scene for o in outcomes if o.status != "done"]}))
"""
)

SYNTH = (
    SETUP
    + """
import json
from pathlib import Path
from tiling.config import SynthConfig
from tiling.synth import synth_scenes
out, count, size = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = SynthConfig(count=count, seed=7, strips=True) if size == "strips" else SynthConfig(
    count=count, seed=7, size=tuple(map(int, size.split("x"))))
print(json.dumps([[s.file_name, s.height, s.width] for s in synth_scenes(out, cfg)]))
"""
)

BUNDLE = (
    SETUP
    + """
from pathlib import Path
from impacts.config import load_config
from training.bundle import export_bundle
from training.config import TrainConfig
from training.model import build_unet
cfg = load_config(Path(sys.argv[2]), TrainConfig)
export_bundle(Path(sys.argv[1]), build_unet(cfg.model), cfg, "benchmark-untrained", {}, {})
"""
)


def _python(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=REPO
    )
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _measure(bundle: Path, scene_list: Path, workers: int, cores: int, run: Path) -> dict[str, float]:
    """Predict the list with ``workers`` processes; the wall time from the common start."""
    import shutil

    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    go = run / "go"
    threads = max(1, cores // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    processes = []
    for index in range(1, workers + 1):
        args = [str(bundle), str(scene_list), str(run / "out"), str(index), str(workers), str(threads)]
        args += [str(run / f"ready-{index}"), str(go)]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
            )
        )
    while not all((run / f"ready-{i}").exists() for i in range(1, workers + 1)):
        if any(p.poll() not in (None, 0) for p in processes):
            raise RuntimeError("a worker failed while starting")
        time.sleep(0.05)
    go.touch()
    reports = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"a worker failed (exit {process.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    failed = [s for r in reports for s in r["failed"]]
    if failed:
        raise RuntimeError(f"scenes not predicted: {failed}")
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return {
        "workers": workers,
        "threads": threads,
        "seconds": wall,
        "scenes": sum(r["scenes"] for r in reports),
    }


def _mean_mpx(path: Path) -> tuple[float, str]:
    """The mean scene size of the reference CTX sizes, else the assumed 150 Mpx."""
    try:
        with path.open() as fh:
            sizes = [int(r["height"]) * int(r["width"]) / 1e6 for r in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError):
        sizes = []
    if not sizes:
        return ASSUMED_MEAN_MPX, "assumed: 5,000 x 30,000 px"
    return sum(sizes) / len(sizes), f"mean of the {len(sizes)} reference CTX scenes in {path.name}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h ({seconds / 86400:,.2f} days)"


def label_catalog(points: int, height: int = 30_000, width: int = 5_000, patch: int = 128) -> None:
    """Draw every 128 px window of a CTX-sized grid from a catalog of ``points`` points
    (tiling/labels.py: a grid index, each window rasterizes only its own labels) and
    print the time per window, the labels per window and the peak traced memory."""
    import tracemalloc

    import numpy as np
    from rasterio.transform import from_origin

    from tiling.crs import MARS_EQC
    from tiling.labels import open_labels

    rng = np.random.default_rng(0)
    path = WORK / f"labels-{points}.csv"
    if not path.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["x", "y", "diameter_m"])
            for row, col, d in zip(
                rng.uniform(0, height, points),
                rng.uniform(0, width, points),
                rng.uniform(6, 60, points),
                strict=True,
            ):
                writer.writerow([f"{col * 6:.1f}", f"{-row * 6:.1f}", f"{d:.1f}"])
    transform = from_origin(0, 0, 6, 6)
    tracemalloc.start()
    started = time.perf_counter()
    labels = open_labels(path, height, width, transform, MARS_EQC)
    opened = time.perf_counter() - started
    _, open_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    started, drawn, windows, impact_px = time.perf_counter(), 0, 0, 0
    for row in range(0, height - patch + 1, patch):
        for col in range(0, width - patch + 1, patch):
            drawn += len(labels.candidates(row, col, patch, patch))
            impact_px += int(labels.mask_window(row, col, patch, patch).sum())
            windows += 1
    seconds = time.perf_counter() - started
    _, window_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"label catalog: {points:,} points on {height:,} x {width:,} px: opened in {opened:.1f} s "
        f"(peak {open_peak / 2**20:.0f} MiB, the catalog itself); {windows:,} windows of {patch} px drawn in "
        f"{seconds:.1f} s ({seconds / windows * 1e3:.2f} ms each, {drawn / windows:.1f} labels each, "
        f"peak {window_peak / 2**20:.1f} MiB while drawing; {impact_px / (windows * patch * patch):.1%} impact px)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=4, help="Synthetic scenes.")
    parser.add_argument("--size", default="6000x5000", help="HEIGHTxWIDTH of every scene.")
    parser.add_argument("--strips", action="store_true", help="Draw CTX strip sizes instead of --size.")
    parser.add_argument("--workers", default="1,2", help="Worker processes to compare.")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Cores the workers share.")
    parser.add_argument("--config", default=str(REPO / "configs" / "unet-demo.yaml"))
    parser.add_argument("--archive", type=int, default=112_000, help="Images in the archive.")
    parser.add_argument("--mean-mpx", type=float, default=None, help="Mean image size [reference, else 150].")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--cores-per-node", type=int, default=32)
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--array-size", type=int, default=500, help="Elements of the archive's job array.")
    parser.add_argument("--cores-per-element", type=int, default=4, help="Cores of one element (bsub -n).")
    parser.add_argument(
        "--label-points",
        type=int,
        default=100_000,
        help="Points of the label-catalog measurement (0 = skip).",
    )
    args = parser.parse_args()
    if args.label_points:
        label_catalog(args.label_points)

    bundle = WORK / "bundle"
    if not (bundle / "model.keras").is_file():
        _python(BUNDLE, str(bundle), args.config)
    size = "strips" if args.strips else args.size
    scenes = WORK / f"scenes-{size}-{args.count}"
    if not (scenes / "sizes.json").is_file():
        sizes = _python(SYNTH, str(scenes), str(args.count), size)
        (scenes / "sizes.json").write_text(sizes)
    listed = json.loads((scenes / "sizes.json").read_text())
    scene_list = WORK / f"scenes-{size}-{args.count}.txt"
    scene_list.write_text("".join(f"{scenes / Path(name).stem}.tif\n" for name, _, _ in listed))
    mpx = sum(h * w for _, h, w in listed) / 1e6

    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        rows.append(_measure(bundle, scene_list, workers, args.cores, WORK / f"run-{workers}"))
    print(
        f"{len(listed)} scenes, {mpx:,.0f} Mpx ({size}); {args.cores} cores; model {Path(args.config).name}, "
        "256 px windows, 64 px overlap, batches of 8"
    )
    print(
        f"{'workers':>7} {'threads each':>12} {'scenes':>6} {'Mpx':>6} {'wall s':>7} {'scenes/h':>8} "
        f"{'Mpx/s':>6} {'Mpx/s/core':>10}"
    )
    for r in rows:
        rate = mpx / r["seconds"]
        r["per_core"] = rate / args.cores
        print(
            f"{r['workers']:7d} {r['threads']:12d} {r['scenes']:6d} {mpx:6.0f} {r['seconds']:7.1f} "
            f"{r['scenes'] * 3600 / r['seconds']:8.0f} {rate:6.2f} {r['per_core']:10.3f}"
        )

    mean, source = (args.mean_mpx, "given") if args.mean_mpx else _mean_mpx(REFERENCE_SIZES)
    best = max(rows, key=lambda r: r["per_core"])
    total_mpx = args.archive * mean
    cores = args.nodes * args.cores_per_node
    seconds = total_mpx / (best["per_core"] * cores)
    per_element = args.archive / args.array_size
    print()
    print(f"archive: {args.archive:,} images x {mean:,.1f} Mpx ({source}) = {total_mpx:,.0f} Mpx")
    print(
        f"CPU, best setting ({best['workers']} workers): {best['per_core']:.3f} Mpx/s per core x {args.nodes} nodes "
        f"x {args.cores_per_node} cores = {best['per_core'] * cores:,.1f} Mpx/s"
    )
    print(f"  wall time = {total_mpx:,.0f} Mpx / {best['per_core'] * cores:,.1f} Mpx/s = {_hours(seconds)}")
    element_s = per_element * mean / (best["per_core"] * args.cores_per_element)
    print(
        f"  as an array of {args.array_size} elements: {per_element:,.0f} images x {mean:,.1f} Mpx / "
        f"({best['per_core']:.3f} x {args.cores_per_element} cores) = {_hours(element_s)} per element"
    )
    need = total_mpx / 86_400 / args.gpus_per_node
    print(
        f"one node of {args.gpus_per_node} GPUs in 24 h needs {total_mpx:,.0f} Mpx / 86,400 s / {args.gpus_per_node} "
        f"= {need:,.1f} Mpx/s per GPU ({need / best['per_core']:,.0f}x one CPU core here)"
    )


if __name__ == "__main__":
    main()
