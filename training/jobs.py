"""``impacts jobs summary``: where a job array over a scene list stands, and what to resubmit.

A run over the CTX archive is one LSF array of a few hundred elements, each taking a
chunk of the scene list (:mod:`impacts.chunks`). Afterwards each listed scene is:

- ``done``: its completion marker is valid (``NAME_predict.json``; for tiling, a complete
  ``parts/NAME``);
- ``failed``: an element recorded a failure (:mod:`impacts.failures`:
  ``NAME_predict.failed.json``, ``parts/NAME.failed.json``) and no marker followed;
- ``skipped``: left out on purpose (tiling a scene without a mask); not resubmitted;
- ``missing``: neither (its element never ran, was killed, or ran out of wall time).

The elements that hold failed or missing scenes are resubmitted with one ``bsub`` line:
the same script and environment, the array index list narrowed to those elements
(``predict[3,17-19]``); finished scenes in them are skipped by their markers. The output
folder is listed once, so the summary of 112,000 scenes reads only the markers there are.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from impacts.atomic import read_marker
from impacts.chunks import Chunking, index_list, read_scene_list
from impacts.errors import ConfigError
from impacts.failures import read_failure
from tiling.patchset import PatchSetLayout
from tiling.pipeline import failure_path as tile_failure_path
from tiling.pipeline import is_tiled
from training.predict import failure_path as predict_failure_path
from training.predict import marker_path

#: Elements LSF accepts in one array unless ``MAX_JOB_ARRAY_SIZE`` in lsb.params says more.
LSF_MAX_ARRAY_SIZE = 1000
STATUSES = ("done", "failed", "skipped", "missing")
_JOB_NAME = re.compile(r"^#BSUB\s+-J\s+\"?([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class JobKind:
    """An array command: the variable naming its output folder, and where a scene's
    completion (``done_path``, checked by ``is_done``) and failure record lie in it."""

    out_variable: str
    done_path: Callable[[Path, str], Path]
    is_done: Callable[[Path, str], bool]
    failure: Callable[[Path, str], Path]


def _predicted(out: Path, scene: str) -> bool:
    marker = read_marker(marker_path(out, scene))
    return marker is not None and isinstance(marker.get("fingerprint"), str)


JOBS: dict[str, JobKind] = {
    "predict": JobKind("PREDICTIONS", marker_path, _predicted, predict_failure_path),
    "tile": JobKind(
        "PATCHES", lambda out, scene: PatchSetLayout(out).part(scene), is_tiled, tile_failure_path
    ),
}


@dataclass(frozen=True)
class SceneState:
    """One listed scene: its line, name, array element, status and (when failed) why."""

    line: int
    scene: str
    element: int
    status: str
    message: str = ""


@dataclass(frozen=True)
class RunSummary:
    """Every listed scene's state, and the elements of the array."""

    scenes: list[SceneState]
    elements: int

    def counts(self) -> dict[str, int]:
        """Scenes per status (every status present, zero or not)."""
        counted = Counter(s.status for s in self.scenes)
        return {status: counted.get(status, 0) for status in STATUSES}

    def to_rerun(self) -> list[int]:
        """The elements holding a failed or missing scene, ascending."""
        return sorted({s.element for s in self.scenes if s.status in ("failed", "missing")})


class _Listings:
    """Whether paths exist, from one listing per folder instead of a stat per scene."""

    def __init__(self) -> None:
        self.names: dict[Path, set[str]] = {}

    def exists(self, path: Path) -> bool:
        if path.parent not in self.names:
            try:
                with os.scandir(path.parent) as entries:
                    self.names[path.parent] = {e.name for e in entries}
            except FileNotFoundError:
                self.names[path.parent] = set()
        return path.name in self.names[path.parent]


def summarize(scene_list: Path, out: Path, chunking: Chunking, job: str = "predict") -> RunSummary:
    """The state of every scene of ``scene_list`` in the output folder of an array run.

    Args:
        scene_list: The list the array ran over.
        out: Its output folder (``PREDICTIONS``, or the patch set for ``tile``).
        chunking: The chunking the array ran with (same ``--array-size``/``--chunk-size``).
        job: ``predict`` or ``tile``.

    Returns:
        The summary, scenes in list order.

    Raises:
        SceneNotFoundError: The list does not exist or names no scene.
        SceneError: A list line is not a scene file name, or two lines name one scene.
        ConfigError: ``job`` is neither ``predict`` nor ``tile``.
    """
    if job not in JOBS:
        raise ConfigError(f"job {job!r} is not one of {', '.join(JOBS)}")
    kind = JOBS[job]
    listed = read_scene_list(scene_list)
    owner = chunking.element_of_lines(len(listed))
    listings = _Listings()
    states = []
    for position, scene in enumerate(listed):
        status, message = "missing", ""
        failure = kind.failure(out, scene.name)
        if listings.exists(kind.done_path(out, scene.name)) and kind.is_done(out, scene.name):
            status = "done"
        elif listings.exists(failure):
            record = read_failure(failure, scene.name)
            if record is not None:
                status, message = record.status, record.message
        states.append(SceneState(scene.line, scene.name, owner[position], status, message))
    return RunSummary(states, chunking.elements(len(listed)))


def job_name(script: Path) -> str:
    """The job name of a ``.bsub`` script (``#BSUB -J predict[1-19]`` -> ``predict``).

    Raises:
        ConfigError: The script does not exist or has no ``#BSUB -J``.
    """
    try:
        text = script.read_text()
    except OSError as exc:
        raise ConfigError(
            f"job script {script} cannot be read ({exc}); pass --bsub-script jobs/NAME.bsub"
        ) from exc
    for line in text.splitlines():
        match = _JOB_NAME.match(line.strip())
        if match:
            return match.group(1)
    raise ConfigError(f"job script {script} has no `#BSUB -J NAME` line; add one")


def resubmit_command(
    script: Path, elements: list[int], environment: dict[str, str | None], name: str | None = None
) -> str:
    """The ``bsub`` line that runs ``elements`` of the array again with ``environment``.

    Args:
        script: The job script (its ``#BSUB -J`` name is the job's name).
        elements: The array elements to run.
        environment: Variables the script reads; None values are left out.
        name: The job name; default the script's.

    Returns:
        ``VAR=value ... bsub -J "NAME[3,17-19]" < SCRIPT`` (LSF passes the submitting
        shell's environment to the job).

    Raises:
        ConfigError: No element to run, or the script cannot be read.
    """
    if not elements:
        raise ConfigError("no array element to resubmit: every scene is done or skipped")
    name = name or job_name(script)
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items() if v is not None)
    return f'{variables} bsub -J "{name}[{index_list(elements)}]" < {shlex.quote(str(script))}'.strip()


def array_environment(
    job: str, scene_list: Path, out: Path, chunking: Chunking, model: Path | None = None
) -> dict[str, str | None]:
    """The variables ``jobs/<job>.bsub`` reads for a run over ``scene_list``."""
    return {
        "SCENE_LIST": str(scene_list),
        JOBS[job].out_variable: str(out),
        "MODEL": str(model) if model is not None and job == "predict" else None,
        "ARRAY_SIZE": str(chunking.array_size) if chunking.array_size is not None else None,
        "CHUNK_SIZE": str(chunking.chunk_size) if chunking.chunk_size is not None else None,
    }


def failed_line(state: SceneState) -> str:
    """One line for a failed scene: name, list line, element and why."""
    return f"{state.status}: {state.scene} (line {state.line}, element {state.element}): {state.message}"
