"""Service throughput under a bounded load from a second process on loopback.

Starts ``uvicorn service.app:app_from_env`` on 127.0.0.1 (an untrained demo-size bundle:
speed does not depend on the weights), sends ``--requests`` 256 x 256 tiles per level at
1, 8 and 32 concurrent clients, and prints requests/s, p50/p95/p99 latency and the mean
windows per model call, with micro-batching on and then off. Beside it, the model's own
batched throughput on the same windows in this process (target: at 32 clients the service
reaches at least 0.7 of it). Every loop is bounded in count and time, and the server is
stopped at the end.

    python benchmarks/service.py [--requests 96] [--levels 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
WORK = REPO / ".bench" / "service"
TILE_PX = 256
BATCH_MAX = 16


def _bundle() -> Path:
    path = WORK / "bundle"
    if not (path / "model.keras").is_file():
        code = (
            "import sys; from pathlib import Path; from impacts.config import load_config; "
            "from training.bundle import export_bundle; from training.config import TrainConfig; "
            "from training.model import build_unet; cfg = load_config(Path(sys.argv[2]), TrainConfig); "
            "export_bundle(Path(sys.argv[1]), build_unet(cfg.model), cfg, 'benchmark-untrained', {}, {})"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(path), str(REPO / "configs" / "unet-demo.yaml")],
            check=True,
            cwd=REPO,
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tile() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).integers(1, 255, size=(TILE_PX, TILE_PX), dtype=np.uint8))
    return buffer.getvalue()


async def _load(
    url: str, clients: int, requests: int, tile: bytes, timeout_s: float
) -> tuple[float, list[float], int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    todo = iter(range(requests))
    deadline = time.monotonic() + timeout_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in todo:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            response = await http.post(f"{url}/v1/predict", files={"tile": ("t.npy", tile)})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    async with httpx.AsyncClient(timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def _batch_mean(url: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("impacts_batch_windows_")
    }
    return values.get("impacts_batch_windows_sum", 0.0), values.get("impacts_batch_windows_count", 0.0)


def _serve(bundle: Path, port: int, batching: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IMPACTS_MODEL_PATH": str(bundle),
        "IMPACTS_WINDOW_PX": str(TILE_PX),
        "IMPACTS_BATCH_MAX": str(BATCH_MAX),
        "IMPACTS_BATCH_WAIT_MS": "10",
        "IMPACTS_QUEUE_MAX": "1024",
        "IMPACTS_BATCHING": str(batching).lower(),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.app:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the service did not become ready in 120 s")


def _model_throughput(bundle: Path, windows: int) -> float:
    import numpy as np

    from training.bundle import load_bundle

    model = load_bundle(bundle).model
    batch = np.random.default_rng(0).random((BATCH_MAX, TILE_PX, TILE_PX, 1), dtype=np.float32)
    model.predict_on_batch(batch)
    started = time.perf_counter()
    for _ in range(max(1, windows // BATCH_MAX)):
        model.predict_on_batch(batch)
    return max(1, windows // BATCH_MAX) * BATCH_MAX / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds per level")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    bundle, tile = _bundle(), _tile()
    levels = [int(x) for x in args.levels.split(",")]
    results = []
    for batching in (True, False):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = _serve(bundle, port, batching)
        try:
            asyncio.run(_load(url, 4, 8, tile, args.timeout))  # warm up
            for clients in levels:
                before = _batch_mean(url)
                elapsed, latencies, errors = asyncio.run(
                    _load(url, clients, args.requests, tile, args.timeout)
                )
                after = _batch_mean(url)
                calls = after[1] - before[1]
                q = statistics.quantiles(latencies, n=100)
                results.append(
                    (
                        batching,
                        clients,
                        len(latencies) / elapsed,
                        q[49],
                        q[94],
                        q[98],
                        (after[0] - before[0]) / calls if calls else 0.0,
                        errors,
                    )
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    model_rps = _model_throughput(bundle, 128)
    print(
        f"model alone, batches of {BATCH_MAX} windows of {TILE_PX} px: {model_rps:.1f} windows/s (one window per request)"
    )
    print(
        f"{'batching':>8} {'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'windows/call':>12} {'errors':>6} {'of model':>8}"
    )
    for batching, clients, rps, p50, p95, p99, per_call, errors in results:
        print(
            f"{'on' if batching else 'off':>8} {clients:7d} {rps:7.1f} {p50 * 1000:7.0f} {p95 * 1000:7.0f} {p99 * 1000:7.0f} "
            f"{per_call:12.1f} {errors:6d} {rps / model_rps:8.2f}"
        )
    top = next(r for r in results if r[0] and r[1] == max(levels))
    print(
        f"target at {max(levels)} clients >= 0.7 of the model: {top[2] / model_rps:.2f} ({'met' if top[2] / model_rps >= 0.7 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
