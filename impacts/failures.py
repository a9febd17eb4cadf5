"""Failure records: a scene that an array element could not process, kept on disk.

A job array over the CTX archive runs hundreds of elements whose logs nobody reads one by
one; ``impacts jobs summary`` reads these records instead. When a scene fails, the command
that processed it (``impacts predict``, ``impacts tile``) writes a small JSON record beside
where the scene's marker would be (the path is the command's: ``NAME_predict.failed.json``,
``parts/NAME.failed.json``), atomically (:mod:`impacts.atomic`), and removes it once the
scene succeeds. A record that cannot be parsed still counts as a failure (it was written by
a failing element), so the scene is resubmitted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from impacts.atomic import read_marker, write_json_atomic

log = logging.getLogger(__name__)

#: The status of a record whose scene may succeed when run again.
FAILED = "failed"
#: The status of a record whose scene was left out on purpose (e.g. no mask to tile).
SKIPPED = "skipped"


@dataclass(frozen=True)
class FailureRecord:
    """A scene that did not succeed: its status (``failed`` or ``skipped``) and why."""

    scene: str
    status: str
    message: str


def write_failure(
    path: Path, scene: str, image: Path, message: str, *, status: str = FAILED, array_index: int | None = None
) -> None:
    """Record that ``scene`` failed (or was skipped); a record that cannot be written is
    logged, never raised, so the element goes on with its other scenes.

    Args:
        path: The record's file.
        scene: The scene name.
        image: The scene's image path, as given.
        message: Why, as the command reported it.
        status: ``failed`` or ``skipped``.
        array_index: The array element, when the command ran as one.
    """
    record = {
        "scene": scene,
        "status": status,
        "image": str(image),
        "message": message,
        "array_index": array_index,
        "lsf_job_id": os.environ.get("LSB_JOBID"),
        "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        write_json_atomic(path, record, indent=1)
    except OSError as exc:
        log.error("cannot write the failure record %s: %s", path, exc)


def clear_failure(path: Path) -> None:
    """Remove a scene's failure record once it succeeded (nothing when there is none)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove the failure record %s: %s", path, exc)


def read_failure(path: Path, scene: str) -> FailureRecord | None:
    """The failure record at ``path``, or None when there is none.

    Args:
        path: The record's file.
        scene: The scene it belongs to (named when the record cannot be parsed).

    Returns:
        The record; an unreadable one reads as ``failed`` with a message saying so.
    """
    if not path.is_file():
        return None
    data = read_marker(path)
    if data is None:
        return FailureRecord(scene, FAILED, f"unreadable failure record {path}")
    status = data.get("status") if data.get("status") in (FAILED, SKIPPED) else FAILED
    return FailureRecord(scene, str(status), str(data.get("message", "")))
