"""Tests of the passage and QA TSV readers (dpr.data.tsv)."""

from __future__ import annotations

from pathlib import Path

from dpr.data.tsv import read_passages, read_qas

BOM = b"\xef\xbb\xbf"


def test_read_passages_skips_a_byte_order_mark_before_the_header(tmp_path: Path) -> None:
    # Given a passage TSV whose header row starts with a UTF-8 byte-order mark
    path = tmp_path / "passages.tsv"
    path.write_bytes(BOM + b"id\ttext\ttitle\np1\tLa Loire.\tLoire\n")
    # When reading it
    passages = read_passages(path)
    # Then the header is still recognised and skipped: one passage, id without the mark
    assert list(passages) == ["p1"]
    assert passages["p1"].text == "La Loire."


def test_read_qas_skips_a_byte_order_mark_before_the_first_question(tmp_path: Path) -> None:
    # Given a QA TSV starting with a UTF-8 byte-order mark
    path = tmp_path / "qas.tsv"
    path.write_bytes(BOM + b'Quel fleuve ?\t["Loire"]\n')
    # When reading it
    # Then the first question does not carry the mark
    assert read_qas(path) == [("Quel fleuve ?", ["Loire"])]
