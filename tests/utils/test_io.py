"""Text input (plain or gzip) and atomic writes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from dpr.utils.io import (
    atomic_write,
    open_text,
    remove_stale_temp_files,
    staged_folder,
    temp_file_target,
)


def test_open_text_reads_plain_and_gzip_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("élève\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("œuvre\n")
    with open_text(tmp_path / "a.txt") as a, open_text(tmp_path / "b.txt.gz") as b:
        assert (a.read(), b.read()) == ("élève\n", "œuvre\n")


def test_atomic_write_replaces_the_file_only_on_success(tmp_path: Path) -> None:
    # Given an existing file
    target = tmp_path / "sub" / "out.json"
    with atomic_write(target) as handle:
        handle.write("old")
    # When a later write fails half-way
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("new, trunc")
        raise RuntimeError("interrupted")
    # Then the old content is intact and no temporary file is left
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    with atomic_write(target, "wb") as handle:
        handle.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_write_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def test_stale_temporary_files_of_chosen_targets_are_removed(tmp_path: Path) -> None:
    # Given the temporary files two killed writes left, one of them for another program's file
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "ckpt.0.4", "wb"):
        raise KeyboardInterrupt  # cleaned up by atomic_write itself
    mine = tmp_path / ".ckpt.0.4.k2j_9x0a.tmp"
    other = tmp_path / ".notes.txt.abcdefgh.tmp"
    for path in (mine, other, tmp_path / "ckpt.0.8"):
        path.write_bytes(b"x")
    assert temp_file_target(mine.name) == "ckpt.0.4"
    assert temp_file_target("ckpt.0.8") is None and temp_file_target(".a.short.tmp") is None
    # When removing those whose final name starts with "ckpt"
    removed = remove_stale_temp_files(tmp_path, lambda name: name.startswith("ckpt"))
    # Then only that one is gone
    assert removed == [mine]
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "ckpt.0.8"]
    assert remove_stale_temp_files(tmp_path / "missing", lambda name: True) == []


def test_atomic_write_temporary_names_are_recognised(tmp_path: Path) -> None:
    seen = []
    with atomic_write(tmp_path / "best.json") as handle:
        seen = [p.name for p in tmp_path.iterdir()]
        handle.write("{}")
    (name,) = seen
    assert temp_file_target(name) == "best.json"


def test_staged_folder_appears_only_when_complete(tmp_path: Path) -> None:
    # Given a folder written through staged_folder that fails half-way
    target = tmp_path / "idx"
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"half")
        raise RuntimeError("killed")
    # Then nothing is left, neither the folder nor its staging folder
    assert list(tmp_path.iterdir()) == []
    # When it succeeds
    with staged_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"whole")
    # Then the folder holds the files and no staging folder remains
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    assert (target / "a.bin").read_bytes() == b"whole"


def test_staged_folder_refuses_an_existing_folder_unless_overwrite(tmp_path: Path) -> None:
    # Given an existing folder
    target = tmp_path / "idx"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    # Then it is refused by default, and replaced as a whole with overwrite
    with pytest.raises(FileExistsError), staged_folder(target):
        pass
    with staged_folder(target, overwrite=True) as staging:
        (staging / "new.bin").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
