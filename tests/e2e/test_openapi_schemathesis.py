"""Schemathesis against the service's OpenAPI schema, over real HTTP.

The app runs in uvicorn on 127.0.0.1 (a free port, in a thread of the test process) with a
real tiny bundle, so requests go through the lifespan's batching predictor exactly as in
production; schemathesis's in-process ASGI calls would run outside that event loop.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    unsupported_method,
)
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.review.settings import ReviewSettings
from service.settings import Settings
from tests.conftest import tiny_bundle
from tiling.synth import MARS_EQC

# The GeoTIFF mask of a tile without georeference (.npy, PNG) has none either.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _settings(model_path: Path) -> Settings:
    """Small windows and tiles keep every request quick on a 2-core machine."""
    return Settings(model_path=model_path, window_px=64, overlap_px=8, max_tile_px=512, max_body_bytes=2**20)


# The schema does not depend on the bundle, so it is known at collection time; a test below
# checks that the running server serves exactly this document.
OPENAPI = create_app(_settings(Path("not-loaded"))).openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "seed": 20240611,
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
            # 413 is the service's rejection of a body with too many multipart parts.
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [
                        "400",
                        "401",
                        "403",
                        "404",
                        "405",
                        "406",
                        "409",
                        "413",
                        "415",
                        "422",
                    ]
                }
            },
        }
    ),
)

# `positive_data_acceptance` is left out on purpose: the schema can only say "binary", and most
# schema-valid bytes are no image, which the service rightly answers 400/415.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schemathesis") / "bundle"
    return tiny_bundle(path, "e2e-test", metrics={"test": {"object": {"f1": 0.5}}})


@pytest.fixture(scope="module")
def base_url(bundle: Path) -> Iterator[str]:
    """The real app in uvicorn on 127.0.0.1, ready (``/readyz`` 200); stopped at teardown."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    review = ReviewSettings(db_url=f"sqlite:///{bundle.parent / 'review.db'}")
    config = uvicorn.Config(
        create_app(_settings(bundle), review), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(url):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_the_served_schema_is_the_one_tested(base_url: str) -> None:
    assert httpx.get(f"{base_url}/openapi.json", timeout=10).json() == OPENAPI


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_requests_conform_to_the_schema(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _geotiff(array: np.ndarray) -> bytes:
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            height=array.shape[0],
            width=array.shape[1],
            count=1,
            dtype=array.dtype,
            crs=MARS_EQC,
            transform=Affine(6.0, 0, 1000.0, 0, -6.0, 2000.0),
        ) as ds:
            ds.write(array[None])
        return bytes(memory.read())


TILE = np.random.default_rng(0).integers(1, 255, size=(90, 70), dtype=np.uint8)


@pytest.mark.parametrize("encode", [_npy, _png, _geotiff], ids=["npy", "png", "geotiff"])
@pytest.mark.parametrize(
    ("query", "headers", "media_type"),
    [
        ({}, {}, "application/json"),
        ({"format": "json"}, {}, "application/json"),
        ({"format": "png"}, {}, "image/png"),
        ({"format": "geotiff"}, {}, "image/tiff"),
        ({}, {"accept": "image/png"}, "image/png"),
        ({}, {"accept": "image/tiff"}, "image/tiff"),
    ],
    ids=["default", "json", "png", "geotiff", "accept-png", "accept-tiff"],
)
def test_valid_tiles_get_answers_the_schema_documents(
    base_url: str,
    encode: Callable[[np.ndarray], bytes],
    query: dict[str, str],
    headers: dict[str, str],
    media_type: str,
) -> None:
    """Few generated bodies are decodable images, so every answer format is checked with real tiles."""
    body: Any = {"tile": encode(TILE)}  # a multipart file field is bytes, not JSON
    case = schema["/v1/predict"]["POST"].Case(
        body=body, query=query, headers=headers, media_type="multipart/form-data"
    )
    response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith(media_type)
