"""Hostile requests against the real service: answers, server memory, health after each.

Starts ``impacts serve`` (a tiny untrained bundle; memory and answers do not depend on the
weights) on 127.0.0.1 in a subprocess with the default limits, then sends each request of
the hardening issue, and a normal tile after each. For every request it prints the answer,
how much the server's peak resident memory grew over its resident memory before the request
(Linux: the peak is reset through ``/proc/PID/clear_refs`` before each request and read from
``VmHWM``), and whether the normal tile was answered 200 after it. Targets: no 5xx but the
locked database's 503, no request grows the server by more than
``2 x (tile limit² x 4 bytes) + 50 MB``, healthy after every request. Every loop is bounded
in count and time; only loopback addresses are used; the server is stopped at the end.

    python benchmarks/hostile.py [--max-tile-px 4096] [--max-body-mb 64]

``tests/e2e/test_hostile.py`` runs the same catalogue with small limits and asserts the
targets.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ANALYST, PASSWORD = "ada", "ada-password-1"
WRITER, WRITER_PASSWORD = "dora", "dora-password-1"  # logs in while the database is locked
MB = 2**20


# ---------------------------------------------------------------------- hostile uploads
def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(height: int, width: int) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def png_two_headers(
    declared: tuple[int, int] = (16, 16), actual: tuple[int, int] = (12_000, 12_000)
) -> bytes:
    """A grayscale PNG whose first IHDR says ``declared`` and whose second says ``actual``,
    with deflated zero rows of the ``actual`` size (about 20 KB at 12,000 px)."""
    height, width = actual
    rows = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    data = b"".join(rows.compress(row) for _ in range(height)) + rows.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _ihdr(*declared)
        + _ihdr(height, width)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def png_declared(height: int, width: int) -> bytes:
    """A PNG header declaring ``height x width`` with almost no data."""
    return b"\x89PNG\r\n\x1a\n" + _ihdr(height, width) + png_chunk(b"IEND", b"")


def npy_header(descr: str, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """A ``.npy`` (version 1.0) with a hand-written header and ``payload``."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin-1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def tiff(height: int, width: int, block_px: int | None = None) -> bytes:
    """A sparse GeoTIFF (GDAL) declaring ``height x width``, tiled in ``block_px`` blocks."""
    import warnings

    import numpy as np
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    options: dict[str, object] = {"SPARSE_OK": "TRUE", "compress": "deflate"}
    if block_px:
        options.update(tiled=True, blockxsize=block_px, blockysize=block_px)
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", height=height, width=width, count=1, dtype="uint8", **options) as ds:
            if height * width <= 4096 * 4096:
                ds.write(np.zeros((1, height, width), np.uint8))
        return bytes(memory.read())


def normal_tile(size: int = 256) -> bytes:
    """A valid grayscale PNG tile."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    image = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------- raw HTTP
def _read_status(sock: socket.socket, timeout_s: float) -> int:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                break
            data += part
    except (TimeoutError, ConnectionError):
        pass
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def send_chunked(
    port: int,
    path: str,
    content_type: str,
    head: bytes,
    total_bytes: int,
    chunk_bytes: int = MB,
    headers: dict[str, str] | None = None,
) -> tuple[int, int]:
    """POST ``head`` then zero bytes up to ``total_bytes`` with ``Transfer-Encoding: chunked``
    (no Content-Length), stopping as soon as the server answers.

    Returns:
        ``(status, bytes sent)``; status 0 when the server answered nothing.
    """
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
        )
        sent, first = 0, head
        deadline = time.monotonic() + 120
        try:
            while sent < total_bytes and time.monotonic() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the body ended
                piece = first or bytes(min(chunk_bytes, total_bytes - sent))
                first = b""
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_status(sock, 60), sent


def multipart(fields: dict[str, bytes | str], boundary: str = "hostile-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body; bytes values are file parts."""
    out = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            out += (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n"
                ).encode()
                + value
                + b"\r\n"
            )
        else:
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# ---------------------------------------------------------------------- the server
@dataclass
class Server:
    """``impacts serve`` in a subprocess on 127.0.0.1, with its limits."""

    process: subprocess.Popen[bytes]
    port: int
    db_path: Path
    max_tile_px: int
    max_body_bytes: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self.process.pid}/status")

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        """Reset the peak resident memory (``VmHWM``) to the current one."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        """Peak resident memory since the last reset, in bytes."""
        return self._status("VmHWM")

    def bound_bytes(self) -> int:
        """The growth target: ``2 x (tile limit² x 4 bytes) + 50 MB``."""
        return 2 * self.max_tile_px**2 * 4 + 50 * MB

    def predict(self, data: bytes, **params: str) -> int:
        import httpx

        response = httpx.post(
            f"{self.url}/v1/predict", files={"tile": ("t", data)}, params=params, timeout=120
        )
        return response.status_code

    def healthy(self) -> bool:
        """The process lives and answers a normal tile with 200."""
        return self.process.poll() is None and self.predict(normal_tile()) == 200


def make_bundle(folder: Path) -> Path:
    """A tiny untrained bundle (depth 2, 4 filters)."""
    from training.bundle import export_bundle
    from training.config import ModelConfig, TrainConfig
    from training.model import build_unet

    cfg = TrainConfig(model=ModelConfig(depth=2, base_filters=4))
    export_bundle(folder / "bundle", build_unet(cfg.model), cfg, "hostile", {}, {})
    return folder / "bundle"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(work: Path, max_tile_px: int, max_body_bytes: int, **env: str) -> Iterator[Server]:
    """Start ``impacts serve`` with an analyst ``ada`` in its review database; stop it after."""
    from service.review.store import ReviewStore

    bundle = make_bundle(work)
    db_path = work / "review.db"
    store = ReviewStore.open(f"sqlite:///{db_path}")
    for name, password in ((ANALYST, PASSWORD), (WRITER, WRITER_PASSWORD)):
        if name not in store.analysts():
            store.add_analyst(name, password)
    store.close()
    port = _free_port()
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "IMPACTS_MAX_TILE_PX": str(max_tile_px),
        "IMPACTS_MAX_BODY_BYTES": str(max_body_bytes),
        "IMPACTS_WINDOW_PX": "128",
        "IMPACTS_REVIEW_DB_URL": f"sqlite:///{db_path}",
        "IMPACTS_REVIEW_BUSY_TIMEOUT_S": "1",
        **env,
    }
    log_path = work / "server.log"
    command = [str(Path(sys.executable).with_name("impacts")), "serve", "--model", str(bundle)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], env=environment, stdout=log, stderr=log
        )
    server = Server(process, port, db_path, max_tile_px, max_body_bytes, log_path)
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start; see {log_path}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        server.predict(normal_tile())  # the first model call's one-off allocations
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- the cases
def logins(
    server: Server,
    count: int,
    name: str | Callable[[int], str],
    source: str | Callable[[int], str] = "127.0.0.1",
    parallel: bool = False,
    forwarded: bool = False,
) -> Counter[int]:
    """``count`` wrong logins for the account ``name(i)`` (or ``name``), each from the
    loopback address ``source(i)`` (or ``source``), with a new ``X-Forwarded-For`` each when
    ``forwarded``.

    Returns:
        How many answers of each status.
    """
    import httpx

    def one(i: int) -> int:
        address = source(i) if callable(source) else source
        headers = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"} if forwarded else {}
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(transport=transport, timeout=120) as client:
            data = {"name": name(i) if callable(name) else name, "password": f"wrong-guess-{i}"}
            return client.post(f"{server.url}/login", data=data, headers=headers).status_code

    if parallel:
        with ThreadPoolExecutor(count) as pool:
            return Counter(pool.map(one, range(count)))
    return Counter(one(i) for i in range(count))


def _counts(counts: Counter[int]) -> str:
    return " ".join(f"{n}x{status}" for status, n in sorted(counts.items()))


def _locked_database(server: Server) -> str:
    """Another process holds the SQLite write lock while a caller without a session logs in
    (a login writes its session): the answer names no path."""
    import httpx

    lock = sqlite3.connect(server.db_path, timeout=5, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        try:
            response = httpx.post(
                f"{server.url}/login",
                data={"name": WRITER, "password": WRITER_PASSWORD},
                headers={"Accept": "application/json"},
                timeout=60,
            )
        finally:
            lock.execute("ROLLBACK")
    finally:
        lock.close()
    leaks = str(server.db_path) in response.text or "sqlite" in response.text
    rid = (
        response.json().get("request_id")
        if response.headers.get("content-type") == "application/json"
        else None
    )
    return f"{response.status_code} request_id={rid} leaks_path={leaks}"


def _chunked_tile(server: Server) -> str:
    body, content_type = multipart({"tile": b""})
    head = body[: body.index(b"\r\n\r\n") + 4]  # the tile part's headers, then zeros forever
    status, sent = send_chunked(server.port, "/v1/predict", content_type, head, 200 * MB)
    return f"{status} after {sent / MB:.0f} MB sent"


def _chunked_json(server: Server) -> str:
    head = b'{"detection_id": 1, "decision": "accept", "note": "'
    status, sent = send_chunked(server.port, "/v1/review/decisions", "application/json", head, 150 * MB)
    return f"{status} after {sent / MB:.0f} MB sent"


def _queue_without_credentials(server: Server) -> str:
    import httpx

    response = httpx.post(
        f"{server.url}/v1/predict",
        params={"review": "true"},
        data={"scene": "ANON_TILE"},
        files={"tile": ("t.png", normal_tile())},
        timeout=60,
    )
    queued = sqlite3.connect(server.db_path).execute("SELECT count(*) FROM detections").fetchone()[0]
    return f"{response.status_code}, {queued} queued"


def cases() -> list[tuple[str, Callable[[Server], str]]]:
    """``(name, send(server) -> answer)`` for each hostile request of the issue and a few more."""

    def upload(data: Callable[[], bytes]) -> Callable[[Server], str]:
        return lambda server: str(server.predict(data()))

    return [
        ("PNG, 2nd IHDR 12000x12000", upload(png_two_headers)),
        ("PNG declaring 12000x12000", upload(lambda: png_declared(12_000, 12_000))),
        ("TIFF declaring 100000x100000", upload(lambda: tiff(100_000, 100_000, 256))),
        ("TIFF 16x16 in 8192 px blocks", upload(lambda: tiff(16, 16, 8192))),
        (".npy dtype V0", upload(lambda: npy_header("|V0", (64, 64)))),
        (".npy dtype S0", upload(lambda: npy_header("|S0", (64, 64)))),
        (".npy dtype <U0", upload(lambda: npy_header("<U0", (64, 64)))),
        (".npy object dtype", upload(lambda: npy_header("|O", (4, 4), bytes(128)))),
        (".npy declaring 100000x100000", upload(lambda: npy_header("|u1", (100_000, 100_000)))),
        ("chunked 150 MB JSON, no session", _chunked_json),
        ("chunked 200 MB tile part", _chunked_tile),
        ("review=true, no credential", _queue_without_credentials),
        (
            "40 logins, new X-Forwarded-For each",
            lambda s: _counts(logins(s, 40, ANALYST, "127.0.0.2", forwarded=True)),
        ),
        ("40 parallel wrong logins", lambda s: _counts(logins(s, 40, "bob", "127.0.0.3", parallel=True))),
        (
            "12 logins, one account, 12 addresses",
            lambda s: _counts(logins(s, 12, "carol", lambda i: f"127.0.1.{i + 1}")),
        ),
        ("locked SQLite, no session", _locked_database),
    ]


@dataclass
class Row:
    """One line of the table."""

    request: str
    answer: str
    growth_bytes: int
    healthy: bool


def run_case(server: Server, name: str, send: Callable[[Server], str]) -> Row:
    """Send one hostile request, measuring the server's peak memory growth over it."""
    before = server.rss()
    server.reset_peak()
    answer = send(server)
    growth = max(0, server.peak() - before)
    return Row(name, answer, growth, server.healthy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tile-px", type=int, default=4096, help="IMPACTS_MAX_TILE_PX (the default).")
    parser.add_argument("--max-body-mb", type=int, default=64, help="IMPACTS_MAX_BODY_BYTES in MiB.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows as JSON here.")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hostile-") as tmp,
        serve(Path(tmp), args.max_tile_px, args.max_body_mb * MB) as server,
    ):
        bound = server.bound_bytes()
        print(
            f"impacts serve: max_tile_px {args.max_tile_px}, max_body {args.max_body_mb} MiB, other routes 1 MiB; "
            f"growth target {bound / MB:.0f} MB; baseline RSS {server.rss() / MB:.0f} MB"
        )
        print("| request | answer | server peak RSS growth (MB) | healthy after |\n|---|---|---|---|")
        rows = []
        for name, send in cases():
            row = run_case(server, name, send)
            rows.append(row)
            print(
                f"| {row.request} | {row.answer} | {row.growth_bytes / MB:.1f} | {'yes' if row.healthy else 'NO'} |"
            )
            sys.stdout.flush()
        worst = max(r.growth_bytes for r in rows)
        fives = [r.request for r in rows if r.answer.startswith("5") and "locked" not in r.request]
        print(
            f"worst growth {worst / MB:.1f} MB (target <= {bound / MB:.0f} MB: {'met' if worst <= bound else 'MISSED'}); "
            f"5xx: {fives or 'none'}; healthy after all: {'yes' if all(r.healthy for r in rows) else 'NO'}"
        )
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
