"""DPR retriever training records and their readers: DPR JSON arrays or JSON Lines of
`{"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}` objects,
optionally gzip-compressed. Every error names the file and the record.
"""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import open_text

logger = logging.getLogger(__name__)


class DataFormatError(InputError):
    """Raised for unreadable or malformed training data; the message names file and record."""


@dataclass(frozen=True)
class Passage:
    """The one passage record, whatever file it was read from: a DPR JSON context
    (`{"title", "text", "passage_id"}`) or a passage TSV row (`id`, `text`, `title`). `title`
    is empty when there is none, `passage_id` None when a JSON context has none."""

    title: str
    text: str
    passage_id: str | None = None

    @functools.cached_property
    def key(self) -> int:
        """Stable 63-bit identity: a hash of `passage_id` when present, else of title + text.

        Two contexts with the same key are the same passage (used to mask in-batch copies of a
        question's positive); the value is the same in every process and every run.
        """
        if self.passage_id is not None:
            data = "id\0" + self.passage_id
        else:
            data = "text\0" + self.title + "\0" + self.text
        digest = hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True)
class BiEncoderSample:
    """One training question with its positive and negative passages."""

    question: str
    answers: tuple[str, ...]
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...]
    hard_negatives: tuple[Passage, ...]


def expand_files(pattern: str) -> list[str]:
    """The files of a glob or comma-separated globs, sorted (so that their pairing with
    `--train_files_upsample_rates` is deterministic); `DataFormatError` if one matches none."""
    files: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if not part:
            continue
        matches = sorted(glob.glob(part))
        if not matches:
            raise DataFormatError(f"{part}: no file matches this path or pattern")
        files.extend(matches)
    if not files:
        raise DataFormatError(f"{pattern!r}: no file given")
    return files


def parse_upsample_rates(text: str | None, num_files: int) -> list[int]:
    """One integer repetition factor per file (fractions truncate, as in DPR) from
    `--train_files_upsample_rates` (e.g. "[1, 2, 1]"; None: 1 for every file), parsed as a
    literal, never evaluated as code.

    Raises:
        UsageError: If the text is not a list of finite non-negative numbers.
        InputError: If it does not have one rate per file (both are `ValueError`s).
    """
    if text is None:
        return [1] * num_files
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise UsageError(f"--train_files_upsample_rates {text!r} is not a literal list") from err
    if isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
        for v in value
    ):
        raise UsageError(f"--train_files_upsample_rates {text!r} must be a list of finite "
                         "non-negative numbers")
    if len(value) != num_files:
        raise InputError(f"--train_files_upsample_rates has {len(value)} rates but the train "
                         f"files expand to {num_files} file(s)")
    return [int(v) for v in value]


def read_json_records(path: str) -> list[Any]:
    """The records of a JSON array file or a JSON Lines file, optionally `.gz`
    (`DataFormatError` on an empty file or invalid JSON)."""
    try:
        with open_text(path) as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataFormatError(f"{path}: cannot be read: {err}") from err
    stripped = content.lstrip()
    if not stripped:
        raise DataFormatError(f"{path}: file is empty")
    if stripped[0] == "[":
        try:
            records = json.loads(content)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: invalid JSON at line {err.lineno}, column "
                                  f"{err.colno}: {err.msg}") from err
        return records
    records = []
    for line_no, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: line {line_no}: invalid JSON Lines record "
                                  f"({err.msg}); expected a JSON array of records or one JSON "
                                  "object per line") from err
    return records


def _parse_passages(value: Any, where: str, key: str) -> tuple[Passage, ...]:
    if not isinstance(value, list):
        raise DataFormatError(f"{where}: '{key}' must be a list of passages")
    passages = []
    for j, ctx in enumerate(value):
        if not isinstance(ctx, dict) or not isinstance(ctx.get("text"), str):
            raise DataFormatError(f"{where}: {key}[{j}] must be an object with a string 'text'")
        title = ctx.get("title") or ""
        if not isinstance(title, str):
            raise DataFormatError(f"{where}: {key}[{j}].title must be a string")
        passage_id = ctx.get("passage_id")
        if passage_id is not None and (
                isinstance(passage_id, bool) or not isinstance(passage_id, (str, int))):
            raise DataFormatError(f"{where}: {key}[{j}].passage_id must be a string or an "
                                  "integer")
        passages.append(Passage(title=title, text=ctx["text"],
                                passage_id=None if passage_id in (None, "") else str(passage_id)))
    return tuple(passages)


def parse_sample(record: Any, *, path: str, index: int) -> BiEncoderSample:
    """One validated record; `negative_ctxs` and `hard_negative_ctxs` may be absent (empty),
    a passage's `title` absent or null (no title). DataFormatError names the file and the
    record index (and question when known)."""
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataFormatError(f"{where}: 'question' must be a non-empty string")
    where = f"{where} (question {question[:60]!r})"
    if "positive_ctxs" not in record:
        raise DataFormatError(f"{where}: missing 'positive_ctxs'")
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataFormatError(f"{where}: 'answers' must be a list of strings")
    return BiEncoderSample(
        question=question, answers=tuple(answers),
        positives=_parse_passages(record["positive_ctxs"], where, "positive_ctxs"),
        negatives=_parse_passages(record.get("negative_ctxs", []), where, "negative_ctxs"),
        hard_negatives=_parse_passages(record.get("hard_negative_ctxs", []), where,
                                       "hard_negative_ctxs"))


def load_samples(pattern: str, upsample_rates: str | None = None) -> list[BiEncoderSample]:
    """The samples of every file of a glob (or comma-separated globs) in sorted-file order,
    each file repeated by its `--train_files_upsample_rates` rate, samples without positives
    dropped (`DataFormatError` for missing, empty or malformed files and records)."""
    files = expand_files(pattern)
    rates = parse_upsample_rates(upsample_rates, len(files))
    samples: list[BiEncoderSample] = []
    dropped = 0
    for path, rate in zip(files, rates):
        records = read_json_records(path)
        if not records:
            raise DataFormatError(f"{path}: contains no records")
        parsed = [parse_sample(r, path=path, index=i) for i, r in enumerate(records)]
        kept = [s for s in parsed if s.positives]
        dropped += len(parsed) - len(kept)
        logger.info("%s: %d records, %d with positives, upsampled x%d", path, len(parsed),
                    len(kept), rate)
        samples.extend(kept * rate)
    if dropped:
        logger.warning("Dropped %d sample(s) without positive passages", dropped)
    logger.info("Loaded %d samples from %d file(s) matching %s", len(samples), len(files),
                pattern)
    return samples
