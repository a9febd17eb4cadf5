"""Service throughput under a bounded load from a second process on loopback.

Starts ``uvicorn service.app:app_from_env`` on 127.0.0.1 (an untrained demo-size bundle:
speed does not depend on the weights), sends ``--requests`` 256 x 256 tiles per level at
1, 8 and 32 concurrent clients, each client on one keep-alive HTTP/1.1 connection, and
prints requests/s, p50/p95/p99 latency and the mean windows per model call, with
micro-batching on and then off. Beside it, the model's own batched throughput on the same
windows in this process (full batches of 16 through ``predict_on_batch``, as the service
calls it), measured before, between and after the two servers, the median taken (target:
at 32 clients the service reaches at least 0.7 of it). Every loop is bounded in count and
time, and the server is stopped at the end.

The load generator shares the machine's cores with the server, so its own CPU per request
comes out of the measured service: by default it speaks HTTP/1.1 over asyncio streams
(about 0.2 ms CPU per request); ``--client httpx`` uses httpx (about 2 ms).

    python benchmarks/service.py [--requests 256] [--levels 1,8,32] [--client streams|httpx]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
WORK = REPO / ".bench" / "service"
TILE_PX = 256
BATCH_MAX = 16


def _bundle() -> Path:
    """The untrained demo U-Net, initialised from the config's seed: the service's work per
    tile grows with the detections in it, so every run must measure the same weights (an
    unseeded one gave anywhere from 1 to thousands of detections on the benchmark tile)."""
    path = WORK / "bundle-seeded"
    if not (path / "model.keras").is_file():
        code = (
            "import sys; from pathlib import Path; import keras; from impacts.config import load_config; "
            "from training.bundle import export_bundle; from training.config import TrainConfig; "
            "from training.model import build_unet; cfg = load_config(Path(sys.argv[2]), TrainConfig); "
            "keras.utils.set_random_seed(cfg.seed); "
            "export_bundle(Path(sys.argv[1]), build_unet(cfg.model), cfg, 'benchmark-untrained', {}, {})"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(path), str(REPO / "configs" / "unet-demo.yaml")],
            check=True,
            cwd=REPO,
        )
    return path


def _detections(url: str, tile: bytes) -> tuple[int, int]:
    """Detections in the answer for the benchmark tile, and the answer's size in bytes."""
    import httpx

    response = httpx.post(f"{url}/v1/predict", files={"tile": ("t.npy", tile)}, timeout=60)
    return len(response.json()["detections"]), len(response.content)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tile() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).integers(1, 255, size=(TILE_PX, TILE_PX), dtype=np.uint8))
    return buffer.getvalue()


BOUNDARY = "impacts-benchmark-boundary"


def _multipart(tile: bytes) -> bytes:
    """The multipart body of one upload, as any HTTP client would send it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="tile"; filename="t.npy"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + tile + f"\r\n--{BOUNDARY}--\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole HTTP/1.1 response; its status and whether the server closes."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readline() not in (b"\r\n", b""):
            pass
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        close = True
    return status, close


async def _load(
    url: str, clients: int, requests: int, tile: bytes, timeout_s: float, http_client: str = "streams"
) -> tuple[float, list[float], int]:
    """``clients`` concurrent clients, each on one keep-alive connection, send ``requests``
    uploads in all; returns the elapsed seconds, the latencies and the non-200 count."""
    latencies: list[float] = []
    errors = 0
    todo = iter(range(requests))
    deadline = time.monotonic() + timeout_s
    body = _multipart(tile)
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def stream_client() -> None:
        # HTTP/1.1 over asyncio streams: the same bytes as any client sends, for a tenth of
        # httpx's CPU per request, which would otherwise come out of the server's two cores.
        nonlocal errors
        writer: asyncio.StreamWriter | None = None
        try:
            for _ in todo:
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request)
                    status, close = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status, close = 0, True
                latencies.append(time.perf_counter() - started)
                errors += status != 200
                if close and writer is not None:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    async def httpx_client(http: Any) -> None:
        nonlocal errors
        for _ in todo:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            response = await http.post(
                f"{url}/v1/predict",
                content=body,
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    if http_client == "streams":
        started = time.perf_counter()
        await asyncio.gather(*(stream_client() for _ in range(clients)))
        return time.perf_counter() - started, latencies, errors
    import httpx

    # One keep-alive connection per client: httpx keeps at most 20 idle by default, so at 32
    # clients it would open a new TCP connection for almost every request.
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(httpx_client(http) for _ in range(clients)))
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


def _model_runner(bundle: Path) -> Callable[[int], float]:
    """The model alone in this process, called exactly as the service calls it
    (``predict_on_batch`` on full batches of ``BATCH_MAX`` windows); returns a function that
    measures its windows/s over about ``windows`` windows."""
    import numpy as np

    from training.bundle import load_bundle

    model = load_bundle(bundle).model
    batch = np.random.default_rng(0).random((BATCH_MAX, TILE_PX, TILE_PX, 1), dtype=np.float32)
    model.predict_on_batch(batch)

    def measure(windows: int) -> float:
        calls = max(1, windows // BATCH_MAX)
        started = time.perf_counter()
        for _ in range(calls):
            model.predict_on_batch(batch)
        return calls * BATCH_MAX / (time.perf_counter() - started)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=256, help="requests per level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds per level")
    parser.add_argument(
        "--client",
        choices=("streams", "httpx"),
        default="streams",
        help="HTTP client of the load: asyncio streams (lean) or httpx",
    )
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the seeded untrained demo U-Net)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    bundle, tile = args.bundle or _bundle(), _tile()
    levels = [int(x) for x in args.levels.split(",")]
    model = _model_runner(bundle)
    model_runs = [model(256)]  # before, between and after the two servers
    results = []
    for batching in (True, False):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = _serve(bundle, port, batching)
        try:
            asyncio.run(_load(url, 4, 8, tile, args.timeout, args.client))  # warm up
            answer = _detections(url, tile)
            for clients in levels:
                before = _batch_mean(url)
                elapsed, latencies, errors = asyncio.run(
                    _load(url, clients, args.requests, tile, args.timeout, args.client)
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
        model_runs.append(model(256))
    model_rps = statistics.median(model_runs)
    print(
        f"bundle: {bundle}; each answer: {answer[0]} detections, {answer[1] / 1000:.0f} kB of JSON "
        "(the service's work per tile grows with them)"
    )
    print(
        f"load: a second process (this one), {args.requests} requests per level, each client on one "
        f"keep-alive HTTP/1.1 connection ({'asyncio streams' if args.client == 'streams' else 'httpx'}); "
        f"server: uvicorn, 1 worker, {os.cpu_count()} cores shared with the load, no CPU pinning, "
        "TensorFlow's default threads"
    )
    print(
        f"model alone, batches of {BATCH_MAX} windows of {TILE_PX} px: {model_rps:.1f} windows/s "
        f"(median of {', '.join(f'{r:.1f}' for r in model_runs)}: before, between and after the servers; "
        "one window per request)"
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
    off = next((r for r in results if not r[0] and r[1] == max(levels)), None)
    if off is not None:
        print(f"micro-batching at {max(levels)} clients: {top[2] / off[2] - 1:+.0%} requests/s")
    print(
        f"target at {max(levels)} clients >= 0.7 of the model: {top[2] / model_rps:.2f} ({'met' if top[2] / model_rps >= 0.7 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
