"""Scene prediction throughput and memory, measured side by side in one run.

For synthetic scenes of two sizes, an (untrained) demo-size U-Net bundle predicts the whole
scene with ``training.predict.predict_path`` (reading, blending, writing the probability
GeoTIFF, detections), and the bare model predicts the very same windows pre-cut in memory.
Prints megapixels/s of both, their ratio (target: at least 0.85) and the peak RSS of the
command for both sizes (target: flat). Each measurement runs in a fresh process; the
median of ``--repeats`` alternated runs is reported.

    python benchmarks/predict_scene.py [--sizes 3000x2000,6000x4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench" / "predict"

SETUP = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]
"""

COMMAND = (
    SETUP
    + """
import json, resource, shutil, time
from pathlib import Path
from training.bundle import load_bundle
from training.predict import PredictConfig, predict_path
bundle = load_bundle(sys.argv[1]); scene, out = Path(sys.argv[2]), Path(sys.argv[3])
shutil.rmtree(out, ignore_errors=True)
cfg = PredictConfig(window_px=256, overlap_px=64, batch_size=8)
bundle.model.predict_on_batch(__import__("numpy").zeros((8, 256, 256, 1), "float32"))  # warm up
t0 = time.perf_counter()
outcome = predict_path(bundle, scene, out, cfg)[0]
seconds = time.perf_counter() - t0
marker = json.loads((out / f"{scene.stem}_predict.json").read_text())
print(json.dumps({"seconds": seconds, "status": outcome.status, "windows": marker["windows"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
)

BARE = (
    SETUP
    + """
import json, resource, time
import numpy as np, rasterio
from pathlib import Path
from training.bundle import load_bundle
from training.inference import WindowPlan
bundle = load_bundle(sys.argv[1]); scene = Path(sys.argv[2])
with rasterio.open(scene) as ds:
    image = ds.read(1)
rows = WindowPlan(image.shape[0], 256, 192).starts(); cols = WindowPlan(image.shape[1], 256, 192).starts()
windows = [image[r:r + 256, c:c + 256] for r in rows for c in cols if not np.all(image[r:r + 256, c:c + 256] == 0)]
batches = [np.stack(windows[i:i + 8]).astype(np.float32)[..., None] / 255 for i in range(0, len(windows), 8)]
bundle.model.predict_on_batch(np.zeros((8, 256, 256, 1), "float32"))  # warm up
t0 = time.perf_counter()
for batch in batches:
    bundle.model.predict_on_batch(batch)
print(json.dumps({"seconds": time.perf_counter() - t0, "windows": len(windows)}))
"""
)

SYNTH = (
    SETUP
    + """
from pathlib import Path
from tiling.config import SynthConfig
from tiling.synth import synth_scenes
h, w = map(int, sys.argv[2].split("x"))
synth_scenes(Path(sys.argv[1]), SynthConfig(count=1, seed=11, size=(h, w)))
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


def _run(code: str, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=REPO
    )
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="3000x2000,6000x4000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default=str(REPO / "configs" / "unet-demo.yaml"))
    args = parser.parse_args()
    bundle = WORK / "bundle"
    if not (bundle / "model.keras").is_file():
        _run(BUNDLE, str(bundle), args.config)
    rows = []
    for size in args.sizes.split(","):
        folder = WORK / f"scene-{size}"
        if not any(folder.glob("*_mask.tif")):
            _run(SYNTH, str(folder), size)
        scene = next(p for p in folder.glob("*.tif") if not p.stem.endswith("_mask"))
        command, bare = [], []
        for _ in range(args.repeats):
            command.append(_run(COMMAND, str(bundle), str(scene), str(WORK / f"out-{size}")))
            bare.append(_run(BARE, str(bundle), str(scene)))
        assert command[0]["windows"] == bare[0]["windows"], (command[0], bare[0])
        h, w = map(int, size.split("x"))
        mpx = h * w / 1e6
        cmd_s = statistics.median(r["seconds"] for r in command)
        bare_s = statistics.median(r["seconds"] for r in bare)
        rows.append(
            {
                "size": size,
                "mpx": mpx,
                "windows": int(command[0]["windows"]),
                "cmd_mpx_s": mpx / cmd_s,
                "bare_mpx_s": mpx / bare_s,
                "ratio": bare_s / cmd_s,
                "rss": max(r["rss_mb"] for r in command),
            }
        )
    print(
        f"{'scene':>10} {'Mpx':>5} {'windows':>7} {'command Mpx/s':>13} {'bare model Mpx/s':>16} {'ratio':>6} {'peak RSS':>9}"
    )
    for r in rows:
        print(
            f"{r['size']:>10} {r['mpx']:5.0f} {r['windows']:7d} {r['cmd_mpx_s']:13.2f} {r['bare_mpx_s']:16.2f} {r['ratio']:6.2f} {r['rss']:7.0f}MB"
        )
    worst = min(r["ratio"] for r in rows)
    print(f"target command >= 0.85 of the bare model: {worst:.2f} ({'met' if worst >= 0.85 else 'MISSED'})")
    growth = rows[-1]["rss"] / rows[0]["rss"]
    print(
        f"target flat RSS: {rows[0]['rss']:.0f} MB -> {rows[-1]['rss']:.0f} MB for {rows[-1]['mpx'] / rows[0]['mpx']:.1f}x "
        f"the pixels (x{growth:.2f}; {'met' if growth < 1.25 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
