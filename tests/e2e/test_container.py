"""The service image (``make image``) really runs: healthy, serving, non-root, closed to anonymous writes.

The container runs from ``localhost/mars-impacts:latest`` (``IMPACTS_IMAGE``) with podman, or
docker where podman is absent (``IMPACTS_CONTAINER_ENGINE`` picks one), on the host's network
and listening on 127.0.0.1 only, with a tiny untrained bundle mounted read-only at /model and
a scratch folder at /data.

When ``make image`` found that no container can run on this machine it wrote the reason to
``~/.cache/mars-impacts/image-unavailable`` and these tests skip with it; they also skip when
the image was never built. ``IMPACTS_REQUIRE_CONTAINER=1`` turns either skip into a failure.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_bundle

pytestmark = pytest.mark.slow

REQUIRE_ENV = "IMPACTS_REQUIRE_CONTAINER"
IMAGE = os.environ.get("IMPACTS_IMAGE", "localhost/mars-impacts:latest")
# Written by .ci/image.sh when no container can run here (one line: why).
UNAVAILABLE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mars-impacts" / "image-unavailable"
)
READY_TIMEOUT_S = 120.0  # TensorFlow's import and the model load, on a busy 2-core machine
COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Container:
    """A running service container: how to reach it and how to run commands in it."""

    engine: str
    name: str
    url: str

    def exec(self, *command: str) -> str:
        """Run ``command`` inside the container; returns its stdout (fails the test on error)."""
        return _engine(self.engine, "exec", self.name, *command).stdout


def _skip(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def _engine(engine: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [engine, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"{engine} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}", pytrace=False
        )
    return done


def _find_engine() -> str:
    """The engine that holds the image, or skip (fail under ``IMPACTS_REQUIRE_CONTAINER=1``)."""
    if UNAVAILABLE.is_file():
        _skip(f"make image: {UNAVAILABLE.read_text().strip()} (from {UNAVAILABLE})")
    wanted = os.environ.get("IMPACTS_CONTAINER_ENGINE")
    engine = wanted or next((name for name in ("podman", "docker") if shutil.which(name)), None)
    if engine is None or shutil.which(engine) is None:
        _skip(f"no container engine ({wanted or 'podman or docker'}) on PATH; run `make image`")
    if _engine(engine, "image", "inspect", IMAGE, check=False).returncode != 0:
        _skip(f"{engine} has no image {IMAGE}; build it with `make image`")
    return engine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bundle(root: Path) -> Path:
    """A tiny untrained bundle that the container's user (uid 10001, not ours) can read."""
    path = tiny_bundle(root / "bundle", "container-test")
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    return path


def _wait_ready(container: Container) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        running = _engine(
            container.engine, "inspect", "--format", "{{.State.Running}}", container.name, check=False
        )
        if running.stdout.strip() != "true":
            logs = _engine(container.engine, "logs", container.name, check=False)
            pytest.fail(
                f"the container stopped before it was ready:\n{logs.stdout}{logs.stderr}", pytrace=False
            )
        try:
            if httpx.get(f"{container.url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(1)
    logs = _engine(container.engine, "logs", container.name, check=False)
    pytest.fail(
        f"/readyz not 200 within {READY_TIMEOUT_S:.0f} s; logs:\n{logs.stdout}{logs.stderr}", pytrace=False
    )


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The image's service on a free loopback port; always removed afterwards."""
    engine = _find_engine()
    root = tmp_path_factory.mktemp("container")
    bundle = _bundle(root)
    data = root / "data"
    data.mkdir()
    data.chmod(0o777)  # written by the container's user
    port = _free_port()
    name = f"mars-impacts-test-{uuid.uuid4().hex[:8]}"
    # Host network (podman's own networks need iptables, which restricted hosts lack), so the
    # command is overridden to listen on loopback only, on the free port; the health check
    # follows it through HEALTHCHECK_URL. --ulimit host: runc may not raise podman's defaults.
    flags = ["--network", "host"] + (["--ulimit", "host"] if engine == "podman" else [])
    # No --rm: the logs of a container that dies on start are still there to report; the
    # finalizer removes it in every case (also when `run` itself fails half-way).
    command = ["impacts", "serve", "--model", "/model", "--host", "127.0.0.1", "--port", str(port)]
    volumes = ["--volume", f"{bundle}:/model:ro", "--volume", f"{data}:/data"]
    health = ["--env", f"HEALTHCHECK_URL=http://127.0.0.1:{port}/readyz"]
    try:
        _engine(engine, "run", "--detach", "--name", name, *flags, *volumes, *health, IMAGE, *command)
        served = Container(engine=engine, name=name, url=f"http://127.0.0.1:{port}")
        _wait_ready(served)
        yield served
    finally:
        _engine(engine, "rm", "--force", name, check=False)


def _png_tile() -> bytes:
    tile = np.random.default_rng(5).integers(1, 255, size=(256, 256), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_image_health_check_passes(container: Container) -> None:
    if container.engine == "podman":
        # Podman runs health checks from systemd timers, absent in CI; run it once by hand.
        check = _engine(container.engine, "healthcheck", "run", container.name, check=False)
        assert check.returncode == 0, f"unhealthy: {check.stdout}{check.stderr}"
    else:
        deadline = time.monotonic() + 90  # docker's first check comes after --interval (30 s)
        status = ""
        while time.monotonic() < deadline and status != "healthy":
            time.sleep(2)
            status = _engine(
                container.engine, "inspect", "--format", "{{.State.Health.Status}}", container.name
            ).stdout.strip()
        assert status == "healthy"


def test_the_container_predicts_on_an_uploaded_tile(container: Container) -> None:
    answer = httpx.post(f"{container.url}/v1/predict", files={"tile": ("tile.png", _png_tile())}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body["detections"], list)
    assert body["queued_for_review"] is None


def test_queueing_for_review_needs_credentials(container: Container) -> None:
    answer = httpx.post(
        f"{container.url}/v1/predict",
        params={"review": "true"},
        data={"scene": "s1"},
        files={"tile": ("tile.png", _png_tile())},
        timeout=60,
    )
    assert answer.status_code in (401, 403), f"{answer.status_code}: {answer.text}"


def test_the_service_runs_as_a_non_root_user(container: Container) -> None:
    assert container.exec("id", "-u").strip() == "10001"
    # PID 1 is the service itself (`impacts serve`): its real, effective, saved and fs uids.
    status = container.exec("cat", "/proc/1/status")
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4
    assert "serve" in container.exec("cat", "/proc/1/cmdline").split("\0")
