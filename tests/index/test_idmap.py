"""The id map: passage ids of index rows, written in pieces and read memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpr.index.idmap import IdMap, IdMapWriter, lookup
from dpr.utils.errors import InputError


def test_idmap_round_trip_keeps_order_and_accents(tmp_path: Path) -> None:
    # Given ids written in two shards, with accents and other scripts
    first, second = ["p0", "élève:1", "œuvre"], ["Zürich", "東京", "p5"]
    with IdMapWriter(tmp_path) as writer:
        writer.add(first, source="a.npy")
        writer.add(second, source="b.npy")
        writer.finish()
    # When read back
    ids = IdMap(tmp_path)
    # Then every row maps to its id, in add order, and missing results (-1) are left out
    assert len(ids) == 6 and list(ids) == first + second
    assert lookup(ids, np.array([[4, 1, -1], [0, -1, -1]])) == [["東京", "élève:1"], ["p0"]]


def test_idmap_empty_round_trip(tmp_path: Path) -> None:
    with IdMapWriter(tmp_path) as writer:
        writer.finish()
    assert len(IdMap(tmp_path)) == 0


def test_idmap_refuses_a_duplicate_id_naming_it(tmp_path: Path) -> None:
    # Given the same id in two shards
    with IdMapWriter(tmp_path) as writer:
        writer.add(["p0", "p1"], source="a.npy")
        writer.add(["p2", "p1"], source="b.npy")
        # Then finishing refuses it, naming the id
        with pytest.raises(InputError, match="'p1' occurs in several"):
            writer.finish()


def test_idmap_refuses_ids_with_line_breaks_naming_the_file(tmp_path: Path) -> None:
    with IdMapWriter(tmp_path) as writer, pytest.raises(InputError, match="b.npy.*'x\\\\ny'"):
        writer.add(["x\ny"], source="b.npy")


def test_idmap_detects_offsets_that_do_not_match(tmp_path: Path) -> None:
    # Given an id map whose text file was cut
    with IdMapWriter(tmp_path) as writer:
        writer.add(["p0", "p1"], source="a.npy")
        writer.finish()
    (tmp_path / "ids.txt").write_bytes(b"p0\n")
    # Then reading it says which file is wrong
    with pytest.raises(InputError, match="ids.offsets.npy"):
        IdMap(tmp_path)
