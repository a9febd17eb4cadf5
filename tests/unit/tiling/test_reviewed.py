"""Reviewed hard negatives: the list is validated row by row, and each patch holds its box."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impacts.errors import PatchSetError
from impacts.scenes import scene_file
from tiling.reviewed import (
    append_reviewed,
    patch_id_for,
    read_hard_negatives,
    review_window,
)
from tiling.windows import Box

HEADER = "detection_id,scene,row_min,col_min,row_max,col_max,score,model_version,reason,analyst,decided_at"
GOOD = "S1-00003,S1,10,20,30,50,0.91,v3,crater,ana,2024-05-01T10:00:00Z"


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "hard_negatives.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@st.composite
def review_cases(draw: st.DrawFn) -> tuple[Box, int, int, int]:
    """``(box, patch_px, height, width)``: any box inside a scene at least a patch big."""
    patch_px = draw(st.integers(1, 128))
    height = draw(st.integers(patch_px, 500))
    width = draw(st.integers(patch_px, 500))
    row_min = draw(st.integers(0, height - 1))
    col_min = draw(st.integers(0, width - 1))
    row_max = draw(st.integers(row_min, min(height - 1, row_min + draw(st.integers(0, 2 * patch_px)))))
    col_max = draw(st.integers(col_min, min(width - 1, col_min + draw(st.integers(0, 2 * patch_px)))))
    return Box(row_min=row_min, row_max=row_max, col_min=col_min, col_max=col_max), patch_px, height, width


@settings(deadline=None, max_examples=500)
@given(review_cases())
def test_window_stays_in_the_scene_and_holds_a_box_that_fits(case: tuple[Box, int, int, int]) -> None:
    box, patch_px, height, width = case
    row, col = review_window(box, patch_px, height, width)
    assert 0 <= row <= height - patch_px and 0 <= col <= width - patch_px
    for lo, hi, start, size in (
        (box.row_min, box.row_max, row, height),
        (box.col_min, box.col_max, col, width),
    ):
        if hi - lo + 1 <= patch_px:
            assert start <= lo and hi <= start + patch_px - 1, "box not inside its patch"
            margin_before, margin_after = lo - start, start + patch_px - 1 - hi
            if 0 < start < size - patch_px:  # not clamped: the box is centred
                assert margin_before - margin_after in (0, 1)
        else:  # larger than a patch: the patch lies inside the box, around its centre
            assert lo <= start and start + patch_px - 1 <= hi
            assert abs((start + patch_px - 1 - hi) + (start - lo)) <= 1


def test_window_is_centred_on_the_box_and_clamped_at_the_scene_edge() -> None:
    assert review_window(Box(row_min=100, row_max=109, col_min=200, col_max=219), 128, 900, 700) == (41, 146)
    assert review_window(Box(row_min=0, row_max=5, col_min=0, col_max=5), 128, 900, 700) == (0, 0)
    assert review_window(Box(row_min=880, row_max=899, col_min=690, col_max=699), 128, 900, 700) == (772, 572)
    assert review_window(Box(row_min=100, row_max=399, col_min=100, col_max=299), 128, 900, 700) == (186, 136)


def test_a_valid_list_is_read_with_its_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER, GOOD, "", "7,S2,0,0,0,0,0.5,v3,,,")
    rows = read_hard_negatives(path, tmp_path)
    assert [(r.line, r.detection_id, r.scene) for r in rows] == [(2, "S1-00003", "S1"), (4, "7", "S2")]
    assert rows[0].box == Box(row_min=10, row_max=30, col_min=20, col_max=50)
    assert (rows[0].score, rows[0].model_version, rows[0].reason, rows[0].analyst) == (
        0.91,
        "v3",
        "crater",
        "ana",
    )


def test_a_byte_order_mark_and_the_optional_columns_are_not_needed(tmp_path: Path) -> None:
    path = tmp_path / "hn.csv"
    path.write_text(
        "\ufeffdetection_id,scene,row_min,col_min,row_max,col_max,score,model_version\n1,S1,1,2,3,4,0.2,v1\n"
    )
    assert read_hard_negatives(path, tmp_path)[0].box == Box(row_min=1, row_max=3, col_min=2, col_max=4)


def test_missing_columns_are_named_with_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, "detection_id,scene,row_min,col_min,score,model_version", "1,S1,1,2,0.5,v1")
    with pytest.raises(
        PatchSetError, match=r"hard_negatives\.csv, line 1: missing columns row_max, col_max"
    ) as err:
        read_hard_negatives(path, tmp_path)
    assert "impacts review export" in str(err.value)


@pytest.mark.parametrize(
    ("row", "what"),
    [
        ("1,S1,ten,20,30,50,0.9,v3,,,", "row_min 'ten' is not a pixel index"),
        ("1,S1,-1,20,30,50,0.9,v3,,,", "row_min '-1' is not a pixel index"),
        ("1,S1,1.5,20,30,50,0.9,v3,,,", "row_min '1.5' is not a pixel index"),
        ("1,S1,10,20,30,50,high,v3,,,", "score 'high' is not a number"),
        ("1,S1,10,20,30,50,nan,v3,,,", "score 'nan' is not a finite number"),
        ("1,S1,30,20,10,50,0.9,v3,,,", "box rows 30..10, cols 20..50 is empty"),
        (",S1,10,20,30,50,0.9,v3,,,", "detection_id '' must be 1-256 printable characters"),
        ("1,S1,10,20,30,50,0.9,v3,,,,extra", "more fields than the header's 11"),
        ("1,S1,10,20", "fewer fields than the header's 11"),
    ],
)
def test_bad_rows_name_the_file_the_line_and_the_fix(tmp_path: Path, row: str, what: str) -> None:
    path = _write(tmp_path, HEADER, GOOD, row)
    with pytest.raises(PatchSetError) as err:
        read_hard_negatives(path, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}, line 3: ") and what in message
    assert "fix or delete the row" in message or "every column" in message


@pytest.mark.parametrize(
    "scene",
    ["../outside", "a/b", "/etc/passwd", "..\\x", "with space", "", "x" * 129, "S1_mask", "S1_prob", "é"],
)
def test_unsafe_or_non_scene_names_are_refused(tmp_path: Path, scene: str) -> None:
    path = _write(tmp_path, HEADER, f'1,"{scene}",10,20,30,50,0.9,v3,,,')
    with pytest.raises(PatchSetError, match=r"line 2: scene .* fix or delete the row"):
        read_hard_negatives(path, tmp_path)
    with pytest.raises(ValueError):
        scene_file(tmp_path, scene)


def test_patch_ids_are_stable_unique_and_safe() -> None:
    assert patch_id_for("S1-00003") == "reviewed-S1-00003"
    odd = [patch_id_for(i) for i in ("a/b", "a b", "a_b", "a:b@v3")]
    assert len(set(odd)) == 4 and odd[2] == "reviewed-a_b"
    assert all(p.startswith("reviewed-a_b") for p in odd[:2]) and patch_id_for("a/b") == odd[0]
    assert all(
        set(p) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") for p in odd
    )


def test_the_list_is_not_read_without_a_patch_set(tmp_path: Path) -> None:
    with pytest.raises(PatchSetError, match=r"is not a patch set .*impacts tile --scenes"):
        append_reviewed(_write(tmp_path, HEADER, GOOD), tmp_path, tmp_path / "patches")
    with pytest.raises(PatchSetError, match=r"not found; write it with `impacts review export"):
        read_hard_negatives(tmp_path / "absent.csv", tmp_path)
