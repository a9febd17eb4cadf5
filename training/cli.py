"""``impacts train``, ``impacts evaluate`` and ``impacts predict``: parse, load config, call library code.

TensorFlow is imported inside the commands, never when the CLI starts. Options that other
commands take too come from :mod:`impacts.options`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from impacts.options import (
    array_index_option,
    config_option,
    data_option,
    model_option,
    option_overrides,
    out_option,
    set_option,
)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.command()
@config_option("configs/unet-*.yaml", required=True)
@data_option
@out_option("Run folder (an existing one is resumed).")
@set_option("epochs=3")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "single", "mirrored", "horovod"]),
    default=None,
    help="How devices and processes cooperate (overrides distribute.strategy; horovod: start with mpirun).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print each process's plan (strategy, rank, global batch, learning rate, data shard) and stop.",
)
def train(
    config_path: Path,
    data_dir: Path,
    out_dir: Path,
    sets: tuple[str, ...],
    strategy: str | None,
    dry_run: bool,
) -> None:
    """Train the U-Net with rounds of hard-negative mining; write RUN/bundle and RUN/report.json."""
    _quiet_tensorflow()
    from impacts.config import load_config
    from tiling.patchset import EVAL_SPLITS
    from training.config import TrainConfig
    from training.train import train_plan, train_run

    cfg = load_config(config_path, TrainConfig, option_overrides({"distribute.strategy": strategy}, sets))
    if dry_run:
        click.echo(json.dumps({"dry_run": True, "out": str(out_dir), **train_plan(cfg, data_dir)}))
        return
    report = train_run(cfg, data_dir, out_dir)
    if report["bundle"] is None:  # a rank other than 0: rank 0 prints and writes
        return
    if any("val" not in entry for entry in report["rounds"]):
        click.echo(
            "no val split: early stopping and checkpoints/best.keras watched the training loss "
            "(tile 3 or more scenes, or name split.val_scenes, to validate)"
        )
    if not any(split in entry for entry in report["rounds"] for split in EVAL_SPLITS):
        click.echo("no val or test split: the rounds were not measured")
    else:
        click.echo(
            f"{'round':>5} {'mined':>6} {'split':5} {'obj P':>6} {'obj R':>6} {'obj F1':>6} {'craterFP':>8} {'pix MSE%':>8}"
        )
    for entry in report["rounds"]:
        for split in EVAL_SPLITS:
            if split in entry:
                m = entry[split]
                click.echo(
                    f"{entry['round']:5d} {entry['mined']:6d} {split:5} {m['object']['precision']:6.3f} {m['object']['recall']:6.3f} "
                    f"{m['object']['f1']:6.3f} {m['fp_by_kind'].get('crater', 0):8d} {m['pixel']['mse']:8.3f}"
                )
    click.echo(f"bundle: {report['bundle']}")
    figures = [str(p) for p in (out_dir / "loss_curve.png", out_dir / "rounds.png") if p.is_file()]
    click.echo(f"report: {out_dir / 'report.json'}, figures: {', '.join(figures) or 'none'}")


@click.command()
@model_option
@data_option
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="test", show_default=True)
@out_option("Folder for metrics.json and figures.")
@set_option("threshold=0.4", of="the bundle's evaluation settings")
def evaluate(model_path: Path, data_dir: Path, split: str, out_dir: Path, sets: tuple[str, ...]) -> None:
    """Measure a model bundle on a split: DIR/metrics.json, pr_curve.png, grid_chosen.png, grid_worst.png."""
    _quiet_tensorflow()
    from impacts.atomic import write_json_atomic
    from impacts.config import override_config
    from tiling.patchset import PatchSet
    from training.bundle import bundle_config, load_bundle
    from training.config import EvalConfig
    from training.evaluate import evaluate_model

    # The overrides are checked before the model loads, so a typo fails at once.
    cfg = override_config(
        bundle_config(model_path).evaluation.model_dump(),
        EvalConfig,
        list(sets),
        f"the evaluation settings of {model_path}",
    )
    bundle = load_bundle(model_path)
    metrics = evaluate_model(bundle.model, PatchSet.load(data_dir), split, cfg, out_dir)
    write_json_atomic(out_dir / "model.json", {"bundle": str(bundle.path), "version": bundle.version})
    o = metrics["object"]
    click.echo(
        f"{split}: {metrics['n_patches']} patches, object P {o['precision']:.3f} R {o['recall']:.3f} F1 {o['f1']:.3f}, "
        f"pixel MSE {metrics['pixel']['mse']:.3f}% IoU {metrics['pixel']['iou']:.3f}, FP by kind {metrics['fp_by_kind']}"
    )
    click.echo(f"metrics: {out_dir / 'metrics.json'}")


@click.command()
@model_option
@click.argument("target", type=click.Path(path_type=Path))
@out_option("Folder for NAME_prob.tif and NAME_detections.geojson/.csv.")
@click.option("--window-px", type=int, default=None, help="Window side [256].")
@click.option("--overlap-px", type=int, default=None, help="Window overlap, blended away [64].")
@click.option("--batch-size", type=int, default=None, help="Windows per model call [8].")
@click.option("--threshold", type=float, default=None, help="Detection threshold [the bundle's].")
@array_index_option("Predict")
def predict(
    model_path: Path,
    target: Path,
    out_dir: Path,
    window_px: int | None,
    overlap_px: int | None,
    batch_size: int | None,
    threshold: float | None,
    array_index: int | None,
) -> None:
    """Predict whole scenes (TARGET: NAME.tif or a folder): NAME_prob.tif, NAME_detections.geojson/.csv.

    Exits non-zero when a scene failed; the other scenes are predicted all the same.
    """
    _quiet_tensorflow()
    from impacts.config import validate_config
    from impacts.errors import ImpactsError
    from training.bundle import load_bundle
    from training.predict import PredictConfig, predict_path

    given = {
        "window_px": window_px,
        "overlap_px": overlap_px,
        "batch_size": batch_size,
        "threshold": threshold,
    }
    cfg = validate_config(
        PredictConfig,
        {k: v for k, v in given.items() if v is not None},
        "predict options",
        "see `impacts predict --help`",
        names={k: "--" + k.replace("_", "-") for k in given},
    )
    bundle = load_bundle(model_path)
    outcomes = predict_path(bundle, target, out_dir, cfg, array_index)
    for o in outcomes:
        click.echo(
            f"{o.scene:32} {o.status:8} detections={o.detections}"
            + (f"  {o.message}" if o.status == "failed" else "")
        )
    click.echo(f"outputs in {out_dir}")
    failed = [o.scene for o in outcomes if o.status == "failed"]
    if failed:
        raise ImpactsError(
            f"{len(failed)} of {len(outcomes)} scenes failed ({', '.join(failed)}); fix them as said above and run the same command again (finished scenes are kept)"
        )
