"""Job-array chunks: which lines of a scene list one LSF array element handles.

LSF accepts at most ``MAX_JOB_ARRAY_SIZE`` (1,000 by default) elements per array, and the
CTX archive holds about 112,000 images, so one element takes a contiguous chunk of the
list rather than one scene. Lines are numbered 0-based here, elements 1-based (as
``$LSB_JOBINDEX``); for a list of ``T`` lines:

- ``array_size=N``: ``N`` near-equal contiguous chunks; element ``i`` takes lines
  ``floor((i-1)*T/N) .. floor(i*T/N)-1`` (sizes differ by at most one; an element gets
  no line when ``N > T``). Valid elements: ``1..N``.
- ``chunk_size=K``: element ``i`` takes lines ``(i-1)*K .. min(i*K, T)-1``. Valid
  elements: ``1..ceil(T/K)``.
- neither: one line per element (``chunk_size=1``), the ``--array-index`` of old.

Every command that runs as an array (``impacts predict``, ``impacts tile``) and the
summary that finds what to resubmit (``impacts jobs summary``) call this module, so they
agree on which element holds which scene. The scene-list format is here too: one scene
path per line, blank lines and lines starting with ``#`` ignored, relative paths taken
from the directory the command runs in (LSF's is the submission directory). Pure logic
and :mod:`pathlib` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from impacts.errors import ConfigError, SceneError, SceneNotFoundError
from impacts.scenes import RULE, is_scene_name

T = TypeVar("T")


@dataclass(frozen=True)
class Chunking:
    """How a list is cut into array elements: ``array_size`` chunks, or ``chunk_size``
    lines per element, or (neither) one line per element.

    Raises:
        ConfigError: Both sizes given, or a size below 1.
    """

    array_size: int | None = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.array_size is not None and self.chunk_size is not None:
            raise ConfigError("pass --array-size N or --chunk-size K, not both")
        for flag, value in (("--array-size", self.array_size), ("--chunk-size", self.chunk_size)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1, not {value}")

    def elements(self, total: int) -> int:
        """How many array elements cover ``total`` lines (``N``, or ``ceil(T/K)``)."""
        if self.array_size is not None:
            return self.array_size
        size = self.chunk_size or 1
        return -(-total // size)

    def lines(self, total: int, index: int) -> range:
        """The 0-based lines element ``index`` (1-based) takes out of ``total``.

        Raises:
            SceneNotFoundError: ``index`` is outside ``1..elements(total)``.
        """
        count = self.elements(total)
        if not 1 <= index <= count:
            raise SceneNotFoundError(
                f"array index {index} is outside 1..{count} ({total} scenes, {self.describe()}); "
                f"submit the array as [1-{count}]"
            )
        if self.array_size is not None:
            n = self.array_size
            return range((index - 1) * total // n, index * total // n)
        size = self.chunk_size or 1
        return range((index - 1) * size, min(index * size, total))

    def element_of_lines(self, total: int) -> list[int]:
        """The element (1-based) that holds each of ``total`` lines, in line order."""
        owner = [0] * total
        for index in range(1, self.elements(total) + 1):
            for line in self.lines(total, index):
                owner[line] = index
        return owner

    def describe(self) -> str:
        """The chunking in words, for messages."""
        if self.array_size is not None:
            return f"in {self.array_size} chunks"
        return f"{self.chunk_size or 1} per element"


def select(items: Sequence[T], index: int | None, chunking: Chunking | None = None) -> list[T]:
    """The items array element ``index`` handles (all of them when ``index`` is None).

    Raises:
        SceneNotFoundError: ``index`` is out of range for ``len(items)``.
        ConfigError: A chunk size is given without an index.
    """
    chunking = chunking or Chunking()
    if index is None:
        if chunking != Chunking():
            raise ConfigError(f"chunking ({chunking.describe()}) needs --array-index (e.g. $LSB_JOBINDEX)")
        return list(items)
    return [items[line] for line in chunking.lines(len(items), index)]


def index_list(indices: Iterable[int]) -> str:
    """An LSF array index list: ``[3, 17, 18, 19]`` -> ``"3,17-19"``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class ListedScene:
    """One line of a scene list: its 1-based line number, the path and the scene name."""

    line: int
    path: Path
    name: str


def read_scene_list(path: Path) -> list[ListedScene]:
    """Read a scene list: one scene path per line (blank and ``#`` lines ignored).

    The files themselves are not checked (a missing one fails its own scene when it is
    processed, so the others go on); the names are, because every output is named by them.

    Raises:
        SceneNotFoundError: The list file does not exist or names no scene.
        SceneError: A line's file name is not a scene name, or two lines name the same
            scene (their outputs would overwrite each other).
    """
    if not path.is_file():
        raise SceneNotFoundError(
            f"scene list {path} does not exist; write one scene path per line, e.g. `ls /data/ctx/*.tif > {path}`"
        )
    scenes: list[ListedScene] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        scene = Path(text)
        if not is_scene_name(scene.stem):
            raise SceneError(f"{path} line {number}: {scene.name!r} is not a scene file name ({RULE})")
        if scene.stem in seen:
            raise SceneError(
                f"{path} lines {seen[scene.stem]} and {number} both name scene {scene.stem}; keep one"
            )
        seen[scene.stem] = number
        scenes.append(ListedScene(number, scene, scene.stem))
    if not scenes:
        raise SceneNotFoundError(f"scene list {path} names no scene; write one scene path per line")
    return scenes
