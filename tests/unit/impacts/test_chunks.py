"""Job-array chunks: every line of a scene list goes to exactly one element."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impacts.chunks import Chunking, index_list, read_scene_list, select
from impacts.errors import ConfigError, SceneError, SceneNotFoundError


def _all_lines(chunking: Chunking, total: int) -> list[int]:
    return [line for i in range(1, chunking.elements(total) + 1) for line in chunking.lines(total, i)]


@given(total=st.integers(0, 5000), array_size=st.integers(1, 1000))
def test_array_size_cuts_the_list_into_near_equal_contiguous_chunks_covering_every_line_once(
    total: int, array_size: int
) -> None:
    chunking = Chunking(array_size=array_size)
    assert chunking.elements(total) == array_size
    assert _all_lines(chunking, total) == list(range(total))  # in order, each once
    sizes = [len(chunking.lines(total, i)) for i in range(1, array_size + 1)]
    assert max(sizes) - min(sizes) <= 1


@given(total=st.integers(0, 5000), chunk_size=st.integers(1, 500))
def test_chunk_size_gives_element_i_lines_i_minus_1_times_k_onwards(total: int, chunk_size: int) -> None:
    chunking = Chunking(chunk_size=chunk_size)
    assert chunking.elements(total) == -(-total // chunk_size)
    assert _all_lines(chunking, total) == list(range(total))
    for i in range(1, chunking.elements(total) + 1):
        assert chunking.lines(total, i).start == (i - 1) * chunk_size
    owner = chunking.element_of_lines(total)
    assert all(owner[line] == line // chunk_size + 1 for line in range(total))


def test_the_112000_scene_archive_fits_one_lsf_array() -> None:
    chunking = Chunking(array_size=500)
    assert [len(chunking.lines(112_000, i)) for i in (1, 250, 500)] == [224, 224, 224]
    assert Chunking(chunk_size=224).elements(112_000) == 500


def test_index_alone_takes_one_line_and_no_index_takes_all() -> None:
    items = ["a", "b", "c"]
    assert select(items, 2) == ["b"]
    assert select(items, None) == items
    assert select(items, 2, Chunking(chunk_size=2)) == ["c"]
    assert select(items, 1, Chunking(array_size=5)) == []  # more elements than lines


@pytest.mark.parametrize(
    ("index", "chunking", "bound"),
    [(4, Chunking(), "1..3"), (0, Chunking(array_size=2), "1..2"), (3, Chunking(chunk_size=2), "1..2")],
)
def test_an_index_out_of_range_says_how_to_size_the_array(index: int, chunking: Chunking, bound: str) -> None:
    with pytest.raises(SceneNotFoundError, match=rf"array index {index} is outside {bound} .*\[1-"):
        select(["a", "b", "c"], index, chunking)


def test_conflicting_or_pointless_chunking_is_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Chunking(array_size=2, chunk_size=3)
    with pytest.raises(ConfigError, match="at least 1"):
        Chunking(chunk_size=0)
    with pytest.raises(ConfigError, match="needs --array-index"):
        select(["a"], None, Chunking(array_size=2))


@pytest.mark.parametrize(
    ("indices", "text"),
    [([3], "3"), ([19, 17, 3, 18], "3,17-19"), ([1, 2, 3, 5, 7, 8], "1-3,5,7-8"), ([2, 2], "2")],
)
def test_index_list_is_lsf_array_syntax(indices: list[int], text: str) -> None:
    assert index_list(indices) == text


@given(st.sets(st.integers(1, 1000)))
def test_index_list_names_exactly_the_given_elements(indices: set[int]) -> None:
    named: set[int] = set()
    for part in filter(None, index_list(indices).split(",")):
        first, _, last = part.partition("-")
        named.update(range(int(first), int(last or first) + 1))
    assert named == indices


def test_scene_list_skips_blank_and_comment_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    listing = tmp_path / "scenes.txt"
    listing.write_text("# CTX\n/data/a.tif\n\n  rel/b.tif  \n")
    assert [(s.line, s.path, s.name) for s in read_scene_list(listing)] == [
        (2, Path("/data/a.tif"), "a"),
        (4, Path("rel/b.tif"), "b"),
    ]


def test_bad_scene_lists_name_the_line_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError, match="does not exist"):
        read_scene_list(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(SceneNotFoundError, match="names no scene"):
        read_scene_list(empty)
    twice = tmp_path / "twice.txt"
    twice.write_text("x/a.tif\ny/a.tif\n")
    with pytest.raises(SceneError, match="lines 1 and 2 both name scene a"):
        read_scene_list(twice)
    bad = tmp_path / "bad.txt"
    bad.write_text("a.tif\nb_mask.tif\n")
    with pytest.raises(SceneError, match=r"line 2: 'b_mask\.tif' is not a scene file name"):
        read_scene_list(bad)
