"""Start-up time of the CLI: `impacts --help` and the tiling commands (target: < 1 s).

Runs each command ``--repeats`` times in a fresh process and prints the median wall time,
beside a bare ``python -c pass`` measured in the same run.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["synth", "--help"], ["tile", "--help"]]


def _median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    impacts = shutil.which("impacts") or str(Path(sys.executable).with_name("impacts"))
    baseline = _median_seconds([sys.executable, "-c", "pass"], args.repeats)
    print(f"{'command':28} {'median s':>8}")
    print(f"{'python -c pass':28} {baseline:8.3f}")
    worst = 0.0
    for command in COMMANDS:
        seconds = _median_seconds([impacts, *command], args.repeats)
        worst = max(worst, seconds)
        print(f"{'impacts ' + ' '.join(command):28} {seconds:8.3f}")
    print(f"target < 1 s: slowest {worst:.3f} s ({'met' if worst < 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
