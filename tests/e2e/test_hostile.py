"""Hostile requests against the real service under uvicorn (``impacts serve`` in a
subprocess): each is answered 4xx (the locked database 503), grows the server by at most
``2 x (tile limit² x 4 bytes) + 50 MB``, and the service answers a normal tile after it.

The requests are those of ``benchmarks/hostile.py``, which prints the same as a table.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from tests.conftest import load_benchmark
from tests.unit.service.test_decode import mutated

hostile = load_benchmark("hostile")
MAX_TILE_PX = 512
MAX_BODY_BYTES = 4 * 2**20

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with hostile.serve(tmp_path_factory.mktemp("hostile"), MAX_TILE_PX, MAX_BODY_BYTES) as running:
        yield running


EXPECTED = {
    "PNG, 2nd IHDR 12000x12000": "413",
    "PNG declaring 12000x12000": "413",
    "TIFF declaring 100000x100000": "413",
    "TIFF 16x16 in 8192 px blocks": "413",
    ".npy dtype V0": "422",
    ".npy dtype S0": "422",
    ".npy dtype <U0": "422",
    ".npy object dtype": "422",
    ".npy declaring 100000x100000": "413",
    "review=true, no credential": "401, 0 queued",
    "40 logins, new X-Forwarded-For each": "10x401 30x429",
    "40 parallel wrong logins": "10x401 30x429",
    "12 logins, one account, 12 addresses": "10x401 2x429",
}


def test_every_hostile_request_is_refused_in_bounded_memory_and_the_service_stays_healthy(
    server: object,
) -> None:
    rows = {name: hostile.run_case(server, name, send) for name, send in hostile.cases()}
    assert set(EXPECTED) < set(rows)
    for name, row in rows.items():
        assert row.healthy, f"{name}: the service did not answer a normal tile after it"
        assert row.growth_bytes <= server.bound_bytes(), f"{name}: grew {row.growth_bytes / 2**20:.0f} MB"
        if name in EXPECTED:
            assert row.answer == EXPECTED[name], name
    # Bodies are refused as they arrive: far less is read than was being sent.
    for name, total_mb in (("chunked 150 MB JSON, no session", 150), ("chunked 200 MB tile part", 200)):
        status, sent = rows[name].answer.split(" after ")
        assert status == "413" and int(sent.split()[0]) < total_mb / 4, rows[name].answer
    locked = rows["locked SQLite, no session"].answer
    assert locked.startswith("503 request_id=") and locked.endswith("leaks_path=False")


def test_proxy_headers_are_trusted_only_from_configured_proxies(tmp_path: Path) -> None:
    """With the proxy at 127.0.0.5 configured, its X-Forwarded-For names the client (each
    forwarded address has its own limit); the same header from another address is ignored.
    Each login names another account, so only the address limit applies."""
    with hostile.serve(
        tmp_path, MAX_TILE_PX, MAX_BODY_BYTES, IMPACTS_FORWARDED_ALLOW_IPS="127.0.0.5"
    ) as proxied:
        via_proxy = hostile.logins(proxied, 12, lambda i: f"a{i}", "127.0.0.5", forwarded=True)
        assert via_proxy == Counter({401: 12})
        direct = hostile.logins(proxied, 12, lambda i: f"b{i}", "127.0.0.6", forwarded=True)
        assert direct == Counter({401: 10, 429: 2})


def _png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_uploads_get_200_or_4xx_and_the_server_stays_within_its_memory_bound(
    server: object, data: bytes
) -> None:
    before = server.rss()
    server.reset_peak()
    response = httpx.post(f"{server.url}/v1/predict", files={"tile": ("t", data)}, timeout=60)
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    assert server.peak() - before <= server.bound_bytes()
    assert server.process.poll() is None
