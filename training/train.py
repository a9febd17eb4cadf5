"""``impacts train``: rounds of fitting and hard-negative mining, ending in a model bundle.

Round 0 trains on the train split's positives and negatives; each mining round then adds
the pool patches the model gets most wrong and trains again (fine-tune or restart). After
every round the model is measured on val and test, so ``report.json`` shows what mining
bought. A killed run started again with the same command continues: finished rounds are
skipped (their weights, metrics and mined patches are on disk) and the round in progress
resumes from its last finished epoch (Keras ``BackupAndRestore``).

Run folder::

    RUN/run.json            resolved config, version, git revision, seed
    RUN/manifest.csv        the patch set's manifest plus mined rows: what was trained on
    RUN/state.json          finished rounds (resume)
    RUN/rounds/round-R.weights.h5
    RUN/checkpoints/        last.keras and best.keras, written every epoch
    RUN/logs/round-R.csv, RUN/logs/tensorboard/
    RUN/loss_curve.png, RUN/rounds.png
    RUN/bundle              model bundle (training.load_bundle): a link to a complete
    RUN/bundle.versions/    version folder, swapped in one step (training.bundle)
    RUN/report.json         one entry per round: mined patches, val and test metrics
                            (with ``evaluation.scenes_dir``: each split's ``whole_scene``
                            figures, and the ``operating_point`` chosen on val scenes)
    RUN/whole_scene/predictions/   the last round's val and test scene predictions

Without a val split (fewer than 3 scenes tiled, no ``split.val_scenes``) the run goes on:
early stopping and ``best.keras`` watch the training loss (``monitor`` in each round's
entry says which), the log says so, and rounds without val or test have no metrics.
State, report and manifest are replaced atomically (:mod:`impacts.atomic`).
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impacts.atomic import atomic_path, read_marker, write_json_atomic
from impacts.errors import ConfigError, PatchSetError, RunFolderError
from impacts.provenance import write_run_record
from tiling.patchset import (
    EVAL_KINDS,
    EVAL_SPLITS,
    NEGATIVE_KINDS,
    POSITIVE_KINDS,
    TRAIN_SPLIT,
    PatchSet,
    PatchSetLayout,
    write_manifest,
)
from training.bundle import export_bundle
from training.callbacks import round_callbacks
from training.config import TrainConfig
from training.data import epoch_steps, eval_dataset, training_dataset, whole_batch_size
from training.distribute import Distribution, chief_only_logging, lr_factor, setup_distribution
from training.evaluate import evaluate_model, json_safe
from training.mining import mine_round, mining_candidates
from training.report import plot_loss_curves, plot_rounds
from training.round_scenes import WHOLE_SCENE, evaluate_round_scenes, operating_point_of, with_operating_point

log = logging.getLogger(__name__)

#: Ranks shuffle and augment with seeds this far apart.
RANK_SEED_STRIDE = 7919
#: How Keras's CSVLogger writes a value an epoch does not have (``val_*`` without val data).
MISSING_CELLS = ("", "NA")


def build_compiled_model(cfg: TrainConfig, steps_per_epoch: int, dist: Distribution | None = None) -> Any:
    """The U-Net with its optimizer, learning-rate schedule and loss, built in the
    distribution's scope under ``cfg.precision``.

    The learning rate is ``optimizer.learning_rate`` scaled by ``distribute.lr_scaling``
    for the number of replicas; under ``mixed_float16`` the optimizer scales the loss
    dynamically (and, with Horovod, averages the scaled gradients)."""
    import keras

    from training.losses import get_loss
    from training.model import build_unet

    dist = dist or Distribution()
    opt = cfg.optimizer
    base_lr = scaled_learning_rate(cfg, dist)
    lr: Any = base_lr
    decay_steps = max(1, int(opt.decay_epochs * steps_per_epoch))
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    try:
        with dist.scope():
            if opt.decay == "exponential":
                lr = keras.optimizers.schedules.ExponentialDecay(base_lr, decay_steps, opt.decay_rate)
            elif opt.decay == "cosine":
                lr = keras.optimizers.schedules.CosineDecay(
                    base_lr, decay_steps * max(1, math.ceil(cfg.epochs / opt.decay_epochs))
                )
            optimizer = (
                keras.optimizers.Adam(lr) if opt.name == "adam" else keras.optimizers.SGD(lr, momentum=0.9)
            )
            if cfg.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model = build_unet(cfg.model)
            model.compile(
                optimizer=dist.averaging(optimizer),
                loss=get_loss(cfg.loss),
                metrics=[
                    keras.metrics.MeanSquaredError(name="mse"),
                    keras.metrics.BinaryIoU(target_class_ids=[1], name="iou"),
                ],
            )
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
    return model


def scaled_learning_rate(cfg: TrainConfig, dist: Distribution) -> float:
    """``optimizer.learning_rate`` (for one replica's batch) scaled for the replicas by
    ``distribute.lr_scaling``."""
    return cfg.optimizer.learning_rate * lr_factor(cfg.distribute.lr_scaling, dist.replicas)


def run_setup(cfg: TrainConfig, dist: Distribution) -> dict[str, Any]:
    """How this run computes: strategy, processes, replicas, precision, batch and learning rate
    (in ``report.json`` and the ``--dry-run`` plan)."""
    return {
        **dist.describe(),
        "precision": cfg.precision,
        "batch_per_replica": cfg.data.batch_size,
        "global_batch": cfg.data.batch_size * dist.replicas,
        "learning_rate": scaled_learning_rate(cfg, dist),
        "lr_scaling": cfg.distribute.lr_scaling,
    }


def plain_model(model: Any, cfg: TrainConfig, dist: Distribution) -> Any:
    """The model as one float32 device sees it, for prediction and the bundle.

    A mirrored model's ``predict_on_batch`` hands the whole batch to every replica (the
    outputs come back concatenated), and a bundle should not carry the training's
    precision policy; such models get a float32 twin with the same weights."""
    if dist.replicas_per_process == 1 and cfg.precision == "float32":
        return model
    from training.model import build_unet

    twin = build_unet(cfg.model)
    twin.set_weights(model.get_weights())
    return twin


def _fit_round(
    model: Any, cfg: TrainConfig, patches: PatchSet, out: Path, round_index: int, dist: Distribution
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    all_positives = patches.select(TRAIN_SPLIT, POSITIVE_KINDS)
    all_negatives = patches.select(TRAIN_SPLIT, NEGATIVE_KINDS)
    if min(len(all_positives), len(all_negatives)) < dist.size:
        raise PatchSetError(
            f"{patches.root}: {len(all_positives)} impact and {len(all_negatives)} non-impact train patches "
            f"cannot be shared by {dist.size} processes; tile more scenes or start fewer processes"
        )
    positives, negatives = dist.shard(all_positives), dist.shard(all_negatives)
    dataset, _ = training_dataset(
        patches,
        positives,
        negatives,
        cfg.data,
        cfg.seed + 1000 * round_index + RANK_SEED_STRIDE * dist.rank,
        replicas=dist.replicas_per_process,
    )
    # Every rank takes the same number of steps, counted on the whole train set.
    steps = epoch_steps(len(all_positives), len(all_negatives), cfg.data, dist.replicas)
    # Horovod ranks validate on their own shards (the epoch's logs are averaged over the
    # ranks); every rank needs one, or some would validate and some not.
    val_records = patches.select("val", EVAL_KINDS)
    if len(val_records) >= dist.size:
        val_records = dist.shard(val_records)
    mirrored = dist.replicas_per_process > 1
    eval_batch = (
        whole_batch_size(len(val_records), cfg.data.batch_size, dist.replicas_per_process)
        if mirrored
        else cfg.data.batch_size
    )
    if mirrored and len(val_records) < eval_batch:
        val_records = []
    val = eval_dataset(patches, val_records, eval_batch, whole_batches=mirrored) if val_records else None
    if val is None:
        log.warning(
            "round %d: no val patches, so early stopping and checkpoints/best.keras watch the training "
            "loss; for a val split, tile 3 or more scenes (split.val_fraction > 0) or name some in "
            "split.val_scenes",
            round_index,
        )
        if cfg.target_val_loss is not None:
            log.warning("target_val_loss %g is ignored: there is no val split", cfg.target_val_loss)
    epochs = cfg.epochs if round_index == 0 else (cfg.mining.epochs or cfg.epochs)
    callbacks = round_callbacks(cfg, out, round_index, val is not None, dist)
    log.info(
        "round %d: %d impact and %d non-impact train patches (this rank: %d and %d), "
        "global batch %d, %d steps/epoch, up to %d epochs",
        round_index,
        len(all_positives),
        len(all_negatives),
        len(positives),
        len(negatives),
        cfg.data.batch_size * dist.replicas,
        steps,
        epochs,
    )
    started = time.perf_counter()
    history = model.fit(
        dataset,
        steps_per_epoch=steps,
        epochs=epochs,
        shuffle=False,  # the dataset shuffles itself
        validation_data=val,
        validation_steps=(
            len(val_records) // eval_batch if mirrored else math.ceil(len(val_records) / eval_batch)
        )
        if val is not None
        else None,
        callbacks=callbacks.in_order,
        verbose=(1 if sys.stderr.isatty() else 2) if dist.is_chief else 0,
    )
    logged = (_logged_history(out / "logs" / f"round-{round_index}.csv") if dist.is_chief else {}) or _floats(
        history.history
    )
    info = {
        "epochs_run": len(logged.get("loss", [])),
        "seconds": time.perf_counter() - started,
        "train_positives": len(all_positives),
        "train_negatives": len(all_negatives),
        "steps_per_epoch": steps,
        "global_batch": cfg.data.batch_size * dist.replicas,
        "epoch_seconds": [round(t, 3) for t in callbacks.timer.seconds],
        "epoch_train_seconds": [round(t, 3) for t in callbacks.timer.train_seconds],
        "target_reached": callbacks.target_reached,
        "monitor": "val_loss" if val is not None else "loss",
    }
    return logged, info


def _floats(history: dict[str, list[Any]]) -> dict[str, list[float]]:
    return {k: [float(v) for v in vals] for k, vals in history.items()}


def _logged_history(path: Path) -> dict[str, list[float]]:
    """The round's history from its CSV log, which survives a kill (``History`` only holds
    the epochs since the last start); a repeated epoch keeps its last line.

    Keras's ``CSVLogger`` writes ``val_*`` columns even without validation data, filled with
    ``NA``: such a column is left out, and a single missing value becomes NaN."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = {int(row["epoch"]): row for row in csv.DictReader(fh)}
    keys = [k for k in next(iter(rows.values()), {}) if k != "epoch"]
    history: dict[str, list[float]] = {}
    for key in keys:
        cells = [(rows[e].get(key) or "").strip() for e in sorted(rows)]
        if all(c in MISSING_CELLS for c in cells):
            continue
        history[key] = [math.nan if c in MISSING_CELLS else float(c) for c in cells]
    return history


def _load_state(out: Path) -> dict[str, Any]:
    """The finished rounds of a resumed run (none when ``state.json`` does not exist yet).

    Raises:
        RunFolderError: ``state.json`` exists but cannot be read (its rounds and the run's
            manifest would disagree, so the run cannot go on).
    """
    path = out / "state.json"
    if not path.exists():
        return {"rounds": [], "history": {}, "round_starts": []}
    state = read_marker(path)
    if state is None or not isinstance(state.get("rounds"), list):
        raise RunFolderError(
            f"{path} cannot be read, so the run cannot be resumed; train into a new --out folder "
            f"(or delete {out} to start this one over)"
        )
    return state


def _save_state(out: Path, state: dict[str, Any]) -> None:
    write_json_atomic(out / "state.json", state, indent=1)


def train_run(
    cfg: TrainConfig, data: Path, out: Path, on_model: Callable[[Any], None] | None = None
) -> dict[str, Any]:
    """Train, mine and evaluate round after round; write the bundle and the report.

    The distribution strategy (``cfg.distribute``) decides only how devices and processes
    cooperate; with several processes every rank runs this function and only rank 0
    writes into ``out``.

    Args:
        cfg: Resolved training config.
        data: Patch-set folder written by ``impacts tile``.
        out: Run folder (created; an existing one is resumed).
        on_model: Called on every rank with the trained Keras model (tests, benchmarks).

    Returns:
        The report: ``{"rounds": [...], "bundle": path, "version": ..., "distribution": ...}``
        (on ranks other than 0, ``bundle`` is None: they write nothing).

    Raises:
        PatchSetError: The patch set is missing, or has no train impacts or negatives.
        RunFolderError: ``out`` holds a ``state.json`` that cannot be read.
    """
    dist = setup_distribution(cfg.distribute)
    with chief_only_logging(dist):
        return _train(cfg, data, out, dist, on_model)


def train_plan(cfg: TrainConfig, data: Path) -> dict[str, Any]:
    """What ``train_run`` would do on this process, without training (``--dry-run``):
    strategy, rank, replicas, global batch, learning rate, precision and this rank's shard.

    Raises:
        PatchSetError: The patch set is missing.
    """
    dist = setup_distribution(cfg.distribute)
    patches = PatchSet.load(data)
    positives = patches.select(TRAIN_SPLIT, POSITIVE_KINDS)
    negatives = patches.select(TRAIN_SPLIT, NEGATIVE_KINDS)
    return {
        **run_setup(cfg, dist),
        "rank": dist.rank,
        "writes_files": dist.is_chief,
        "steps_per_epoch": epoch_steps(len(positives), len(negatives), cfg.data, dist.replicas),
        "rank_train_positives": len(dist.shard(positives)),
        "rank_train_negatives": len(dist.shard(negatives)),
        "rank_pool": len(dist.shard(mining_candidates(patches.records))),
    }


def _prepare_run(
    cfg: TrainConfig, data: Path, out: Path, dist: Distribution
) -> tuple[PatchSet, dict[str, Any]]:
    """Rank 0 sets up (or resumes) the run folder; every rank gets its manifest rows and state."""
    manifest, source = PatchSetLayout(out).manifest, PatchSetLayout(data).manifest
    if dist.is_chief:
        out.mkdir(parents=True, exist_ok=True)
        write_run_record(out, cfg, cfg.seed, "train")
        if not manifest.is_file():
            if not source.is_file():
                raise PatchSetError(
                    f"{source} not found; build the patch set with `impacts tile --out {data}`"
                )
            with atomic_path(manifest) as tmp:  # a copy cut short by a kill must not look complete
                shutil.copyfile(source, tmp)
        patches = PatchSet.load(data, manifest)
        state = _load_state(out)
        state["run_name"] = out.resolve().name
    else:
        patches = PatchSet.load(data)
        state = {}
    if dist.size > 1:  # rank 0's manifest (with mined rows) and state, for a resumed run too
        patches.records, state = dist.broadcast_object((patches.records, state))
    return patches, state


def _train(
    cfg: TrainConfig, data: Path, out: Path, dist: Distribution, on_model: Callable[[Any], None] | None
) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    if cfg.data.deterministic:
        tf.config.experimental.enable_op_determinism()
    patches, state = _prepare_run(cfg, data, out, dist)
    rounds_total = cfg.mining.rounds + 1
    model = None
    if state["rounds"]:
        log.info("resuming after round %d", len(state["rounds"]) - 1)
    if cfg.mining.source != "pool" and cfg.mining.rounds and cfg.evaluation.scenes_dir is None:
        raise ConfigError(
            f"mining.source {cfg.mining.source} mines the whole train scenes: pass `impacts train --scenes DIR` "
            "(the folder that was tiled) or set evaluation.scenes_dir"
        )
    if cfg.evaluation.scenes_dir is None:
        log.info("whole-scene evaluation skipped: no scenes folder (impacts train --scenes DIR)")
    for round_index in range(len(state["rounds"]), rounds_total):
        if model is None or (round_index > 0 and cfg.mining.mode == "restart"):
            model = build_compiled_model(cfg, _steps_hint(patches, cfg, dist), dist)
            # Other ranks receive these weights from rank 0 when the round's fit begins.
            if round_index > 0 and cfg.mining.mode == "finetune" and dist.is_chief:
                model.load_weights(out / "rounds" / f"round-{round_index - 1}.weights.h5")
        state["round_starts"].append(len(state["history"].get("loss", [])))
        history, info = _fit_round(model, cfg, patches, out, round_index, dist)
        for key, values in history.items():
            state["history"].setdefault(key, []).extend(values)
        version = f"{state['run_name']}-r{round_index}"
        entry: dict[str, Any] = {"round": round_index, "model_version": version, **info}
        plain = plain_model(model, cfg, dist)
        if dist.is_chief:
            (out / "rounds").mkdir(exist_ok=True)
            model.save_weights(out / "rounds" / f"round-{round_index}.weights.h5")
            for split in EVAL_SPLITS:
                if patches.select(split, EVAL_KINDS):
                    entry[split] = evaluate_model(plain, patches, split, cfg.evaluation)
            for scene_split, block in evaluate_round_scenes(plain, version, cfg, patches, out).items():
                entry.setdefault(scene_split, {})[WHOLE_SCENE] = block
        entry["mined"] = 0
        if round_index < rounds_total - 1:
            entry.update(mine_round(plain, patches, cfg, out, round_index + 1, version, dist))
            if dist.is_chief:
                write_manifest(PatchSetLayout(out).manifest, patches.records)
        state["rounds"].append(entry)
        if dist.is_chief:
            _save_state(out, state)
    if on_model is not None and model is not None:
        on_model(model)
    if not dist.is_chief:
        return {
            "version": state["rounds"][-1]["model_version"],
            "bundle": None,
            "rounds": state["rounds"],
            "distribution": dist.describe(),
        }
    if model is None:  # every round was already done: rebuild the final model from its weights
        model = build_compiled_model(cfg, _steps_hint(patches, cfg, dist), dist)
        model.load_weights(out / "rounds" / f"round-{rounds_total - 1}.weights.h5")
    return _finish(model, cfg, out, state, dist)


def _steps_hint(patches: PatchSet, cfg: TrainConfig, dist: Distribution) -> int:
    return epoch_steps(
        len(patches.select(TRAIN_SPLIT, POSITIVE_KINDS)),
        len(patches.select(TRAIN_SPLIT, NEGATIVE_KINDS)),
        cfg.data,
        dist.replicas,
    )


def _finish(
    model: Any, cfg: TrainConfig, out: Path, state: dict[str, Any], dist: Distribution
) -> dict[str, Any]:
    last = state["rounds"][-1]
    version = last["model_version"]
    metrics: dict[str, Any] = {split: last[split] for split in EVAL_SPLITS if split in last}
    plain = plain_model(model, cfg, dist)
    # Predict, the service and the review import read the operating point from the bundle.
    point = operating_point_of(last, cfg)
    bundle_cfg = cfg
    if point is not None:
        bundle_cfg = with_operating_point(cfg, point)
        metrics["operating_point"] = point
        log.info(
            "operating point (val scenes, target recall %g): threshold %g, merge distance %d px; %s",
            point["target_recall"],
            point["threshold"],
            point["merge_distance_px"],
            point["reason"],
        )
    bundle = export_bundle(out / "bundle", plain, bundle_cfg, version, state["history"], json_safe(metrics))
    report = {
        "version": version,
        "bundle": str(bundle),
        "rounds": state["rounds"],
        "distribution": run_setup(cfg, dist),
        **({"operating_point": point} if point is not None else {}),
    }
    write_json_atomic(out / "report.json", json_safe(report))
    if state["history"].get("loss"):
        no_val = not any(v for k, v in state["history"].items() if k.startswith("val_"))
        plot_loss_curves(
            state["history"],
            out / "loss_curve.png",
            title=f"Training {out.name}" + (" (no val split: training loss watched)" if no_val else ""),
            round_starts=state["round_starts"],
        )
    if any("val" in r or "test" in r for r in state["rounds"]):
        plot_rounds(state["rounds"], out / "rounds.png")
    return report
