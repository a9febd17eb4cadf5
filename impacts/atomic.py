"""Atomic file replacement: a reader finds the old file or the new one, never a part of one.

Every file that marks work complete (``NAME_predict.json``, ``parts/NAME/part.json``,
``state.json``) or that a later step or a server reads (``manifest.csv``, ``run.json``,
``report.json``, detections, exports) is written through :func:`atomic_path`: the bytes go
to a temporary file in the target's folder, are flushed and fsynced, ``os.replace`` puts the
file in place in one step, and the folder is fsynced so the rename survives a power cut. A
run killed at any moment leaves the previous file (or none), never a truncated one.

Temporary names are ``.NAME.<random>.partial`` (hidden, unique: two processes writing the
same file, e.g. ``run.json`` from every LSF array element, never share one), or
``NAME.partial`` with ``unique=False`` for big single-writer files (a scene's probability
raster), so that the next run reuses it instead of leaving a copy per kill.

This module sits in ``impacts`` (below ``tiling``) because ``impacts.provenance`` writes
``run.json`` with it. :func:`read_marker` is the reading half: a marker that cannot be
parsed counts as absent, so the work it marks is done again.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def temp_path(path: Path, unique: bool = True) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (same folder).

    Args:
        path: The final file.
        unique: ``.NAME.<random>.partial`` when true, else ``NAME.partial``.

    Returns:
        A path beside ``path``.
    """
    if unique:
        return path.with_name(f".{path.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")
    return path.with_name(path.name + PARTIAL_SUFFIX)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data to disk (a no-op where the OS cannot fsync folders).

    Args:
        path: A file or folder.

    Raises:
        OSError: The file cannot be opened or synced.
    """
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():  # some platforms cannot open folders; the rename is still atomic
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (before the folder is renamed into place).

    Args:
        folder: The folder to flush, itself included.
    """
    for root, dirs, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        for name in dirs:
            fsync_path(Path(root) / name)
    fsync_path(folder)


@contextmanager
def atomic_path(path: Path, unique: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; on success it replaces ``path`` atomically.

    The caller writes the whole file to the yielded path by any means (``open``, rasterio,
    Keras) and closes it before the block ends. When the block ends without error the file
    is fsynced, renamed onto ``path`` with ``os.replace`` and the folder is fsynced; when it
    raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The final file; its folder must exist.
        unique: A random temporary name (safe with concurrent writers); false reuses
            ``NAME.partial`` (one writer; a killed run's leftover is overwritten next time).

    Yields:
        The temporary path (it does not exist yet, unless a killed run left it).

    Raises:
        OSError: Writing, syncing or renaming failed (the temporary file is removed).
    """
    tmp = temp_path(path, unique)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_path`).

    Args:
        path: The file to write.
        data: Its new content.

    Returns:
        ``path``.

    Raises:
        OSError: The file cannot be written.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically (see :func:`atomic_path`).

    Args:
        path: The file to write.
        text: Its new content.

    Returns:
        ``path``.

    Raises:
        OSError: The file cannot be written.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> Path:
    """Replace ``path`` with ``data`` as JSON (and a final newline) atomically.

    Args:
        path: The file to write.
        data: Anything ``json.dumps`` takes.
        indent: JSON indentation.

    Returns:
        ``path``.

    Raises:
        OSError: The file cannot be written.
        TypeError: ``data`` is not JSON-serialisable (nothing is written then).
    """
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def read_marker(path: Path) -> dict[str, Any] | None:
    """Read a JSON completion marker; a missing or unreadable one counts as "not finished".

    A marker that exists but cannot be parsed (truncated by a kill or a full disk, written by
    hand) is logged as a warning, so the work it marks is done again instead of stopping the
    run.

    Args:
        path: The marker file.

    Returns:
        The marker's object, or None when it is missing, unreadable or not a JSON object.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s cannot be read (%s): treated as not finished, the work is done again", path, exc)
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        log.warning("%s is not valid JSON (%s): treated as not finished, the work is done again", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s holds no JSON object: treated as not finished, the work is done again", path)
        return None
    return data


def replace_symlink(link: Path, target: str) -> None:
    """Point the symbolic link ``link`` at ``target`` in one step (a new link renamed onto it).

    A reader that opens ``link/...`` finds the old target or the new one, never nothing.

    Args:
        link: The link; it may exist as a link (replaced) or not at all.
        target: What it points to, best relative to ``link``'s folder so the folder can move.

    Raises:
        OSError: ``link`` is a real folder or file that a link cannot replace, or the file
            system has no symbolic links.
    """
    tmp = temp_path(link)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(link.parent)
