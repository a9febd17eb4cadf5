"""Atomic replacement: readers see the old file or the new one, never a part; bad markers = not done."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from impacts.atomic import (
    atomic_path,
    read_marker,
    replace_symlink,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_writes_replace_the_whole_file_and_leave_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old, longer than the new content\n")
    write_json_atomic(path, {"rounds": [1, 2]})
    assert json.loads(path.read_text()) == {"rounds": [1, 2]} and path.read_text().endswith("\n")
    write_text_atomic(tmp_path / "a.txt", "héllo")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text("complete old manifest\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp, tmp.open("w") as fh:
        fh.write("half a new man")
        raise RuntimeError("killed")
    assert path.read_text() == "complete old manifest\n"
    assert _leftovers(tmp_path) == [], "the temporary file is removed"
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    assert path.read_text() == "complete old manifest\n"


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "run.json", "{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_a_fixed_temporary_name_is_reused_after_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "S_prob.tif"
    (tmp_path / "S_prob.tif.partial").write_bytes(b"left by a killed run")
    with atomic_path(path, unique=False) as tmp:
        assert tmp.name == "S_prob.tif.partial"
        tmp.write_bytes(b"new raster")
    assert path.read_bytes() == b"new raster" and _leftovers(tmp_path) == []


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "NAME_predict.json"
    write_json_atomic(path, {"n": -1, "pad": ""})
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(json.loads(path.read_text())["n"])
            except (ValueError, FileNotFoundError) as exc:
                errors.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(150):
            write_json_atomic(path, {"n": n, "pad": "x" * 200_000})
    finally:
        stop.set()
        reader.join()
    assert not errors, errors[:3]
    assert seen and seen == sorted(seen), "files appear whole and in order"


def test_an_unreadable_marker_counts_as_not_finished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "S_predict.json"
    assert read_marker(marker) is None, "missing: not finished"
    write_json_atomic(marker, {"fingerprint": "abc"})
    assert read_marker(marker) == {"fingerprint": "abc"}
    caplog.set_level(logging.WARNING)
    for text in ('{"fingerprint": "ab', "", "[1, 2]", "\udcff"):
        marker.write_bytes(text.encode("utf-8", "surrogateescape"))
        caplog.clear()
        assert read_marker(marker) is None
        assert str(marker) in caplog.text and "done again" in caplog.text


def test_replace_symlink_points_the_link_at_the_new_target(tmp_path: Path) -> None:
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "version.json").write_text(name)
    link = tmp_path / "bundle"
    replace_symlink(link, "v1")
    assert (link / "version.json").read_text() == "v1"
    replace_symlink(link, "v2")
    assert (link / "version.json").read_text() == "v2" and os.readlink(link) == "v2"
    with pytest.raises(OSError):
        replace_symlink(tmp_path / "v1", "v2")  # a real folder is never replaced silently
    assert _leftovers(tmp_path) == []
