"""Input-pipeline cost in training, measured side by side in one run.

One compiled U-Net (``--config``, default the CPU demo size) is trained with
``train_on_batch`` from two sources, alternated round by round so drift on a noisy
machine hits both alike:

* pipeline: ``training.data.training_dataset`` as configured (balanced batches, the
  albumentations augmentation when ``data.augment`` is on), a fresh iterator per round;
* in-memory: the same model fed ``--memory-batches`` batches pulled from that pipeline
  once before timing and held as tensors, so no input work happens during the steps.

Each round trains ``--warmup`` untimed steps and then ``--steps`` timed ones. The bare
pipeline (iterated without the model) is timed in the same rounds for context. Prints the
median images/s of each, the pipeline's share of step time,
``1 - pipeline images/s / in-memory images/s`` (clipped at 0; target: below 10 %), the
same share in process CPU time (less sensitive to other load on a shared machine), and
the target line. The patch set is synthesised and tiled on first use under
``.bench/input_pipeline/`` (4 scenes of 2048 x 1536 px, seed 3).

    python benchmarks/input_pipeline.py [--config configs/unet-demo.yaml] [--steps 32]
                                        [--batch-size 16] [--rounds 5] [--warmup 2]
                                        [--memory-batches 8] [--set data.augment=false]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "input_pipeline"
TARGET_SHARE_PCT = 10.0


def _patch_set(work: Path) -> Path:
    """The benchmark's patch set, synthesised and tiled when missing."""
    from tiling.config import SynthConfig, TileConfig
    from tiling.patchset import MANIFEST_NAME
    from tiling.pipeline import tile_folder
    from tiling.synth import synth_scenes

    patches = work / "patches"
    if (patches / MANIFEST_NAME).is_file():
        return patches
    shutil.rmtree(work, ignore_errors=True)  # a half-built set from an interrupted run
    _progress("building the patch set (synth + tile, once)")
    synth_scenes(work / "scenes", SynthConfig(count=4, seed=3, size=(2048, 1536)))
    outcomes = tile_folder(work / "scenes", patches, TileConfig())
    failed = [o for o in outcomes if o.status == "failed"]
    if failed or not (patches / MANIFEST_NAME).is_file():
        raise SystemExit(f"tiling the benchmark scenes failed: {failed}; delete {work} and rerun")
    return patches


def _progress(message: str) -> None:
    print(f"[input_pipeline] {message}", file=sys.stderr, flush=True)


def _timed(step: Callable[[], object], warmup: int, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds of ``steps`` calls of ``step`` after ``warmup``
    untimed ones (a training step returns its losses as numbers, so the clock stops when
    its work is done)."""
    for _ in range(warmup):
        step()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def _cycle(xs: list[Any], ys: list[Any]) -> Iterator[tuple[Any, Any]]:
    i = 0
    while True:
        yield xs[i % len(xs)], ys[i % len(ys)]
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "unet-demo.yaml"))
    parser.add_argument("--steps", type=int, default=32, help="timed steps per round and source")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every round")
    parser.add_argument("--memory-batches", type=int, default=8, help="distinct batches held in memory")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = str(ROOT)  # benchmarks/tiling.py would shadow the tiling package

    import keras
    import numpy as np
    import tensorflow as tf

    from impacts.config import load_config
    from tiling.patchset import NEGATIVE_KINDS, POSITIVE_KINDS, PatchSet
    from training.config import TrainConfig
    from training.data import training_dataset
    from training.train import build_compiled_model

    overrides = list(args.overrides)
    if args.batch_size is not None:
        overrides.append(f"data.batch_size={args.batch_size}")
    cfg = load_config(args.config, TrainConfig, overrides)
    batch = cfg.data.batch_size
    keras.utils.set_random_seed(cfg.seed)

    patches = PatchSet.load(_patch_set(WORK))
    positives = patches.select("train", POSITIVE_KINDS)
    negatives = patches.select("train", NEGATIVE_KINDS)
    dataset, steps_per_epoch = training_dataset(patches, positives, negatives, cfg.data, cfg.seed)

    # Fill the class caches (the shuffle buffers hold whole classes, so the first batch
    # reads every train record) and keep a few batches as the in-memory source.
    warm = iter(dataset)
    pulled = [next(warm) for _ in range(args.memory_batches)]
    del warm
    xs = [tf.constant(x.numpy()) for x, _ in pulled]
    ys = [tf.constant(y.numpy()) for _, y in pulled]
    in_memory = _cycle(xs, ys)

    model = build_compiled_model(cfg, steps_per_epoch)
    _progress("tracing the train step")
    model.train_on_batch(xs[0], ys[0])

    def train(batches: Iterator[tuple[Any, Any]]) -> tuple[float, float]:
        return _timed(lambda: model.train_on_batch(*next(batches)), args.warmup, args.steps)

    def bare(batches: Iterator[tuple[Any, Any]]) -> tuple[float, float]:
        return _timed(lambda: next(batches), args.warmup, args.steps)

    # A fresh pipeline iterator per round (it reads from the filled caches), dropped after
    # the round so its prefetching never runs during the other measurements.
    timings: dict[str, list[tuple[float, float]]] = {"pipeline": [], "memory": [], "bare": []}
    for round_index in range(args.rounds):
        runs: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("pipeline", lambda: train(iter(dataset))),
            ("memory", lambda: train(in_memory)),
            ("bare", lambda: bare(iter(dataset))),
        ]
        if round_index % 2:  # alternate which training source goes first
            runs[0], runs[1] = runs[1], runs[0]
        for name, run in runs:
            timings[name].append(run())
        _progress(
            f"round {round_index + 1}/{args.rounds}: "
            + ", ".join(f"{k} {batch * args.steps / v[-1][0]:.1f} img/s" for k, v in timings.items())
        )

    images = batch * args.steps
    rates = {k: [images / wall for wall, _ in v] for k, v in timings.items()}
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cpu_ms = {k: 1000 * statistics.median(cpu for _, cpu in v) / args.steps for k, v in timings.items()}
    # Rounded once, so the verdict agrees with the printed figure.
    share_pct = round(100 * max(0.0, 1.0 - rate["pipeline"] / rate["memory"]), 1)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(
        f"config {Path(args.config).name}: {trainable:,} trainable parameters, batch {batch}, "
        f"augment {'on' if cfg.data.augment else 'off'}, {len(positives)}+{len(negatives)} train "
        f"patches, {args.steps} timed steps x {args.rounds} rounds, {os.cpu_count()} cores"
    )
    print(f"{'source':28} {'images/s':>9} {'step ms':>8} {'CPU ms/step':>11} {'min..max images/s':>18}")
    labels = {
        "pipeline": "pipeline + model",
        "memory": "in-memory tensors + model",
        "bare": "pipeline alone (no model)",
    }
    for key, label in labels.items():
        spread = f"{min(rates[key]):.1f}..{max(rates[key]):.1f}"
        print(f"{label:28} {rate[key]:9.1f} {1000 * batch / rate[key]:8.1f} {cpu_ms[key]:11.1f} {spread:>18}")
    print(f"pipeline share of step time: {share_pct:.1f} %")
    # Process CPU time is less sensitive than wall time to other load on a shared machine.
    cpu_share = max(0.0, 1.0 - cpu_ms["memory"] / cpu_ms["pipeline"])
    print(f"pipeline share of CPU time per step (context): {100 * cpu_share:.1f} %")
    print(
        f"target: pipeline costs < {TARGET_SHARE_PCT:.0f} % of step time: {share_pct:.1f} % "
        f"({'met' if share_pct < TARGET_SHARE_PCT else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
