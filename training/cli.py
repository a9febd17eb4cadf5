"""``impacts train``, ``impacts evaluate`` and ``impacts predict``: parse, load config, call library code.

TensorFlow is imported inside the commands, never when the CLI starts. Options that other
commands take too come from :mod:`impacts.options`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from impacts.options import (
    array_chunking,
    array_index_option,
    config_option,
    data_option,
    model_option,
    option_overrides,
    out_option,
    patchset_option,
    scene_list_option,
    scenes_option,
    set_option,
)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.command()
@config_option("configs/unet-*.yaml", required=True)
@data_option
@out_option("Run folder (an existing one is resumed).")
@set_option("epochs=3")
@scenes_option(
    "The tiled scenes with their truth (sets evaluation.scenes_dir): the val and test scenes are "
    "predicted whole after every round, and the bundle's operating point is chosen on the val scenes.",
    exists=True,
    required=False,
)
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
    scenes_dir: Path | None,
    strategy: str | None,
    dry_run: bool,
) -> None:
    """Train the U-Net with rounds of hard-negative mining; write RUN/bundle and RUN/report.json."""
    _quiet_tensorflow()
    from impacts.config import load_config
    from tiling.patchset import EVAL_SPLITS
    from training.config import TrainConfig
    from training.train import train_plan, train_run

    cfg = load_config(
        config_path,
        TrainConfig,
        option_overrides(
            {"distribute.strategy": strategy, "evaluation.scenes_dir": scenes_dir and scenes_dir.resolve()},
            sets,
        ),
    )
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
    point = report.get("operating_point")
    if point is not None:
        val, test = point["val"] or {}, point["test"] or {}

        def num(row: dict[str, Any], key: str) -> str:
            return "-" if row.get(key) is None else f"{row[key]:.3g}"

        click.echo(
            f"operating point (val scenes, target recall {point['target_recall']:g}): threshold "
            f"{point['threshold']:g}, min area {point['min_area_px']} px, merge {point['merge_distance_px']} px; "
            f"val recall {num(val, 'recall')}, {num(val, 'false_candidates_per_100km2')} false/100 km²; "
            f"test recall {num(test, 'recall')}, {num(test, 'false_candidates_per_100km2')} false/100 km²"
            + ("" if point["reached_target"] else " (target not reached: highest-recall setting)")
        )
    figures = [str(p) for p in (out_dir / "loss_curve.png", out_dir / "rounds.png") if p.is_file()]
    click.echo(f"report: {out_dir / 'report.json'}, figures: {', '.join(figures) or 'none'}")


@click.command()
@model_option
@patchset_option(
    "Patch set written by `impacts tile`: patch metrics on --split (and, with --scenes, the default --names).",
    required=False,
)
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="test", show_default=True)
@scenes_option(
    "Folder of NAME.tif scenes with NAME_objects.csv or NAME_mask.tif: whole-scene metrics.",
    exists=True,
    required=False,
)
@click.option(
    "--names",
    default=None,
    help="Scenes of --scenes to evaluate, comma-separated [with --data: the scenes of --split; else every scene with truth].",
)
@out_option("Folder for metrics.json and figures.")
@set_option("threshold=0.4", of="the bundle's evaluation settings")
def evaluate(
    model_path: Path,
    data_dir: Path | None,
    split: str,
    scenes_dir: Path | None,
    names: str | None,
    out_dir: Path,
    sets: tuple[str, ...],
) -> None:
    """Measure a model bundle on patches (--data) and/or whole scenes (--scenes): DIR/metrics.json and figures.

    Patches: pr_curve.png, grid_chosen.png, grid_worst.png. Whole scenes: each scene is
    predicted as `impacts predict` does (DIR/predictions/, kept for re-runs), its map
    re-thresholded over a sweep; scene_curve.png, quicklooks/NAME.png, matches/NAME_matches.csv.
    """
    if data_dir is None and scenes_dir is None:
        raise click.UsageError(
            "pass --data PATCHES (patch metrics) and/or --scenes DIR (whole-scene metrics)"
        )
    if names is not None and scenes_dir is None:
        raise click.UsageError("--names chooses scenes of --scenes DIR; pass --scenes too")
    _quiet_tensorflow()
    from impacts.atomic import write_json_atomic
    from impacts.config import override_config
    from tiling.patchset import PatchSet
    from training.bundle import bundle_config, load_bundle
    from training.config import EvalConfig
    from training.evaluate import evaluate_model
    from training.evaluate_scenes import evaluate_scenes, find_eval_scenes, split_scenes, write_metrics

    # The overrides and the scenes are checked before the model loads, so a typo fails at once.
    cfg = override_config(
        bundle_config(model_path).evaluation.model_dump(),
        EvalConfig,
        list(sets),
        f"the evaluation settings of {model_path}",
    )
    patches = PatchSet.load(data_dir) if data_dir is not None else None
    scenes = None
    if scenes_dir is not None:
        chosen = [n.strip() for n in names.split(",") if n.strip()] if names is not None else None
        if chosen is None and patches is not None:
            chosen = split_scenes(patches, split)
        scenes = find_eval_scenes(scenes_dir, chosen)
    bundle = load_bundle(model_path)
    patch_metrics = whole_scene = None
    if patches is not None:
        patch_metrics = evaluate_model(bundle.model, patches, split, cfg, out_dir)
        m, o = patch_metrics, patch_metrics["object"]
        click.echo(
            f"{split}: {m['n_patches']} patches, object P {o['precision']:.3f} R {o['recall']:.3f} F1 {o['f1']:.3f}, "
            f"pixel MSE {m['pixel']['mse']:.3f}% IoU {m['pixel']['iou']:.3f}, FP by kind {m['fp_by_kind']}"
        )
    if scenes is not None:
        whole_scene = evaluate_scenes(bundle, scenes, cfg, out_dir)
        for name, m in whole_scene["per_scene"].items():
            click.echo(f"scene {name}: {_scene_line(m)}")
        click.echo(f"whole scenes ({len(scenes)}): {_scene_line(whole_scene['overall'])}")
    write_metrics(out_dir, patch_metrics, whole_scene)
    write_json_atomic(out_dir / "model.json", {"bundle": str(bundle.path), "version": bundle.version})
    click.echo(f"metrics: {out_dir / 'metrics.json'}")


def _scene_line(m: dict[str, Any]) -> str:
    """One line of whole-scene metrics for the terminal."""

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (
        f"recall {fmt(m['recall'], '.3f')} ({m['found']}/{m['impacts']}), precision {fmt(m['precision'], '.3f')}, "
        f"{fmt(m['false_candidates_per_100km2'], '.1f')} false/100 km² ({m['false_candidates']}), "
        f"duplicates {m['duplicates']}, false by kind {m['false_candidates_by_kind']}"
    )


@click.command()
@model_option
@click.argument("target", type=click.Path(path_type=Path), required=False)
@scene_list_option("Predict")
@out_option("Folder for NAME_prob.tif and NAME_detections.geojson/.csv.")
@click.option("--window-px", type=int, default=None, help="Window side [256].")
@click.option("--overlap-px", type=int, default=None, help="Window overlap, blended away [64].")
@click.option("--batch-size", type=int, default=None, help="Windows per model call [8].")
@click.option("--threshold", type=float, default=None, help="Detection threshold [the bundle's].")
@click.option(
    "--merge-distance-px",
    type=int,
    default=None,
    help="Detections whose boxes are at most this many px apart become one; 0 = no merging [the bundle's].",
)
@array_index_option("Predict")
def predict(
    model_path: Path,
    target: Path | None,
    scene_list: Path | None,
    out_dir: Path,
    window_px: int | None,
    overlap_px: int | None,
    batch_size: int | None,
    threshold: float | None,
    merge_distance_px: int | None,
    array_index: int | None,
    array_size: int | None,
    chunk_size: int | None,
) -> None:
    """Predict whole scenes (TARGET: NAME.tif or a folder, or --scene-list FILE): NAME_prob.tif,
    NAME_detections.geojson/.csv.

    As an LSF array element (--array-index $LSB_JOBINDEX, with --array-size N or
    --chunk-size K) it predicts its chunk of the scenes; finished scenes are skipped, a
    failed one leaves NAME_predict.failed.json for `impacts jobs summary`. Exits non-zero
    when a scene failed; the other scenes are predicted all the same.
    """
    _quiet_tensorflow()
    from impacts.chunks import select
    from impacts.config import validate_config
    from impacts.errors import ImpactsError
    from training.bundle import load_bundle
    from training.predict import PredictConfig, predict_path, predict_targets

    if (target is None) == (scene_list is None):
        raise click.UsageError("pass a scene file or folder (TARGET), or --scene-list FILE: one of them")
    chunking = array_chunking(array_index, array_size, chunk_size)

    given = {
        "window_px": window_px,
        "overlap_px": overlap_px,
        "batch_size": batch_size,
        "threshold": threshold,
        "merge_distance_px": merge_distance_px,
    }
    cfg = validate_config(
        PredictConfig,
        {k: v for k, v in given.items() if v is not None},
        "predict options",
        "see `impacts predict --help`",
        names={k: "--" + k.replace("_", "-") for k in given},
    )
    # A missing list or folder, or an index out of range, is one line before TensorFlow loads.
    select(predict_targets(target, scene_list), array_index, chunking)
    bundle = load_bundle(model_path)
    outcomes = predict_path(
        bundle, target, out_dir, cfg, array_index, scene_list=scene_list, chunking=chunking
    )
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


@click.group()
def jobs() -> None:
    """LSF job arrays over a scene list: what is done, what to resubmit."""


@jobs.command("summary")
@scene_list_option("Summarize", ", as the array ran over it  [required]")
@out_option("Output folder of the array (PREDICTIONS; the patch set for --job tile).")
@click.option("--array-size", type=click.IntRange(min=1), default=None, help="The array's --array-size N.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, help="The array's --chunk-size K.")
@click.option(
    "--job",
    type=click.Choice(["predict", "tile"]),
    default="predict",
    show_default=True,
    help="What the array ran.",
)
@click.option(
    "--bsub-script",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The job script to resubmit [jobs/JOB.bsub].",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The bundle the array predicted with (MODEL in the resubmission line).",
)
@click.option("--show", type=int, default=20, show_default=True, help="Failed scenes to list one per line.")
def jobs_summary(
    scene_list: Path | None,
    out_dir: Path,
    array_size: int | None,
    chunk_size: int | None,
    job: str,
    bsub_script: Path | None,
    model_path: Path | None,
    show: int,
) -> None:
    """Count done, failed, skipped and missing scenes of an array run over --scene-list, and
    print the `bsub` line that resubmits only the elements holding failed or missing scenes.

    Pass the same --array-size N or --chunk-size K as the run (neither: one scene per
    element). Exits 1 while a scene is failed or missing.
    """
    from impacts.chunks import Chunking
    from training.jobs import LSF_MAX_ARRAY_SIZE, array_environment, failed_line, resubmit_command, summarize

    if scene_list is None:
        raise click.UsageError("pass --scene-list FILE: the list the array ran over")
    if array_size is not None and chunk_size is not None:
        raise click.UsageError("pass --array-size N or --chunk-size K, not both")
    chunking = Chunking(array_size=array_size, chunk_size=chunk_size)
    summary = summarize(scene_list, out_dir, chunking, job)
    counts = summary.counts()
    click.echo(
        f"{len(summary.scenes)} scenes of {scene_list} in {summary.elements} array elements ({chunking.describe()})"
    )
    click.echo("  ".join(f"{status} {count}" for status, count in counts.items()))
    if summary.elements > LSF_MAX_ARRAY_SIZE:
        click.echo(
            f"warning: {summary.elements} elements exceed LSF's default MAX_JOB_ARRAY_SIZE "
            f"({LSF_MAX_ARRAY_SIZE}); use --array-size {LSF_MAX_ARRAY_SIZE} or fewer",
            err=True,
        )
    problems = [s for s in summary.scenes if s.status in ("failed", "skipped")]
    for state in problems[:show]:
        click.echo(failed_line(state))
    if len(problems) > show:
        click.echo(f"... and {len(problems) - show} more failed or skipped scenes")
    rerun = summary.to_rerun()
    if not rerun:
        click.echo("nothing to resubmit: every scene is done" + (" or skipped" if counts["skipped"] else ""))
        return
    script = bsub_script or Path("jobs") / f"{job}.bsub"
    env = array_environment(job, scene_list, out_dir, chunking, model_path)
    click.echo(f"resubmit {len(rerun)} elements:")
    click.echo(resubmit_command(script, rerun, env))
    raise click.exceptions.Exit(1)  # work remains: scripts can test the exit code
