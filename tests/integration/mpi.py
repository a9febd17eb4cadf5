"""Launching MPI jobs on one machine in tests (OpenMPI, as root on CI, ranks > cores)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def mpi_env() -> dict[str, str]:
    """The environment with OpenMPI allowed to run as root and to oversubscribe cores."""
    return {
        **os.environ,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def require_horovod() -> None:
    """Skip without Horovod and mpirun, or fail when ``IMPACTS_REQUIRE_HOROVOD=1`` (``make
    test`` builds Horovod first and sets it, so CI never skips these tests silently)."""
    if importlib.util.find_spec("horovod") is None or shutil.which("mpirun") is None:
        if os.environ.get("IMPACTS_REQUIRE_HOROVOD") == "1":
            pytest.fail("Horovod or mpirun is missing: run `make horovod`")
        pytest.skip("Horovod is not installed (make horovod)")
