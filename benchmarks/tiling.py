"""Tiling throughput and memory, measured side by side in one run.

For synthetic scenes of two sizes (default 10,000 x 6,000 and 20,000 x 12,000 px) this
prints: patches/s and source megapixels/s of `tile_folder` (one scene, one worker), the
ratio of its time to a plain block-by-block rasterio read of the same image (target: at
most 1.5), and the peak RSS of the tiler for both sizes (target: flat, under 1 GB). It
also writes scenes of ``--synth-sizes`` (default up to 40,000 x 12,000) and prints the
writer's time and peak RSS (target: flat). Each measurement runs in a fresh process; the
median of ``--repeats`` alternated runs is reported.

    python benchmarks/tiling.py [--sizes 10000x6000,20000x12000] [--repeats 5]
                                [--synth-sizes 10000x6000,40000x12000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

WORK = Path(__file__).resolve().parent.parent / ".bench" / "tiling"

BARE_READ = """
import json, resource, sys, time
import rasterio
from tiling.io import gdal_env
path = sys.argv[1]
t0 = time.perf_counter()
total = 0
with gdal_env(), rasterio.open(path) as ds:
    for _, window in ds.block_windows(1):
        total += int(ds.read(1, window=window).size)
print(json.dumps({"seconds": time.perf_counter() - t0, "pixels": total,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TILE = """
import json, resource, shutil, sys, time
from pathlib import Path
from tiling.config import TileConfig
from tiling.patchset import TILED_KINDS
from tiling.pipeline import tile_folder
scenes, out = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(out, ignore_errors=True)
cfg = TileConfig(workers=1)
t0 = time.perf_counter()
outcome = tile_folder(scenes, out, cfg)[0]
seconds = time.perf_counter() - t0
patches = sum(outcome.counts.get(k, 0) for k in TILED_KINDS)
print(json.dumps({"seconds": seconds, "patches": patches, "impacts": outcome.counts.get("impacts", 0),
                  "status": outcome.status, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SYNTH = """
import json, resource, sys, time
from pathlib import Path
from tiling.config import SynthConfig
from tiling.synth import synth_scenes
h, w = map(int, sys.argv[2].split("x"))
t0 = time.perf_counter()
synth_scenes(Path(sys.argv[1]), SynthConfig(count=1, seed=42, size=(h, w)))
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10000x6000,20000x12000", help="HEIGHTxWIDTH,... (last one is timed)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--synth-sizes", default="10000x6000,40000x12000", help="scene writer sizes ('' to skip)"
    )
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    rows = []
    for size in sizes:
        scenes = WORK / f"scenes-{size}"
        if not any(scenes.glob("*_mask.tif")):
            shutil.rmtree(scenes, ignore_errors=True)
            _run(SYNTH, str(scenes), size)
        image = next(p for p in scenes.glob("*.tif") if not p.stem.endswith("_mask"))
        bare, tile = [], []
        for _ in range(args.repeats):  # alternate so drift on a noisy machine hits both alike
            bare.append(_run(BARE_READ, str(image)))
            tile.append(_run(TILE, str(scenes), str(WORK / f"patches-{size}")))
        assert tile[0]["status"] == "done", tile[0]
        bare_s = statistics.median(r["seconds"] for r in bare)
        tile_s = statistics.median(r["seconds"] for r in tile)
        mpx = bare[0]["pixels"] / 1e6
        rows.append(
            {
                "size": size,
                "mpx": mpx,
                "impacts": tile[0]["impacts"],
                "patches": tile[0]["patches"],
                "bare_s": bare_s,
                "tile_s": tile_s,
                "ratio": tile_s / bare_s,
                "patches_per_s": tile[0]["patches"] / tile_s,
                "mpx_per_s": mpx / tile_s,
                "tile_rss_mb": max(r["rss_mb"] for r in tile),
                "bare_rss_mb": max(r["rss_mb"] for r in bare),
            }
        )
    print(
        f"{'scene':>12} {'Mpx':>6} {'impacts':>7} {'patches':>7} {'read s':>7} {'tile s':>7} "
        f"{'tile/read':>9} {'patch/s':>8} {'Mpx/s':>6} {'tile RSS':>9} {'read RSS':>9}"
    )
    for r in rows:
        print(
            f"{r['size']:>12} {r['mpx']:6.0f} {r['impacts']:7d} {r['patches']:7d} {r['bare_s']:7.2f} {r['tile_s']:7.2f} "
            f"{r['ratio']:9.2f} {r['patches_per_s']:8.0f} {r['mpx_per_s']:6.0f} {r['tile_rss_mb']:7.0f}MB "
            f"{r['bare_rss_mb']:7.0f}MB"
        )
    big, small = rows[-1], rows[0]
    print(f"target tile/read <= 1.5: {big['ratio']:.2f} ({'met' if big['ratio'] <= 1.5 else 'MISSED'})")
    growth = big["tile_rss_mb"] / small["tile_rss_mb"]
    print(
        f"target flat RSS < 1 GB: {small['tile_rss_mb']:.0f} MB -> {big['tile_rss_mb']:.0f} MB for "
        f"{big['mpx'] / small['mpx']:.1f}x the pixels (x{growth:.2f}; "
        f"{'met' if big['tile_rss_mb'] < 1024 and growth < 1.25 else 'MISSED'})"
    )
    synth_rows = []
    for size in filter(None, args.synth_sizes.split(",")):
        target = WORK / "synth-check"
        shutil.rmtree(target, ignore_errors=True)
        synth_rows.append((size, _run(SYNTH, str(target), size)))
        shutil.rmtree(target, ignore_errors=True)
    for size, r in synth_rows:
        h, w = map(int, size.split("x"))
        mpx_per_s = h * w / 1e6 / r["seconds"]
        print(
            f"synth {size:>12}: {r['seconds']:6.1f} s, {mpx_per_s:5.1f} Mpx/s, peak RSS {r['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
