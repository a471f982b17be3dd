"""A reranker's scores of training passages, the teacher of `--distill_scores`: the file that
`python -m data_prep.score_candidates` writes and train_dense_encoder.py reads.

The file is JSON Lines, one object per training question:
``{"question": "...", "scores": {"<passage key>": score, ...}}``, a passage's key being
`dpr.data.records.Passage.key` (a hash of its `passage_id`, or of its title and text without
one), so that a score follows its passage whatever order the training file lists it in and
whichever negatives a batch draws. A question repeated in the training files has one line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import torch

from dpr.data.records import BiEncoderSample, DataFormatError, read_json_records
from dpr.utils.io import atomic_write

TeacherScores = dict[str, dict[int, float]]  # question -> passage key -> score
SCORE_TOOL = "python -m data_prep.score_candidates"


def sample_passages(sample: BiEncoderSample) -> list:
    """Every passage a batch may draw for `sample` (positives, other and hard negatives), each
    once (by key), in file order."""
    seen: dict[int, object] = {}
    for passage in (*sample.positives, *sample.negatives, *sample.hard_negatives):
        seen.setdefault(passage.key, passage)
    return list(seen.values())


def write_teacher_scores(path: str | os.PathLike[str],
                         rows: Iterable[tuple[str, Mapping[int, float]]]) -> None:
    """Writes (question, {passage key: score}) rows, atomically."""
    with atomic_write(path) as out:
        for question, scores in rows:
            out.write(json.dumps({"question": question,
                                  "scores": {str(k): float(v) for k, v in scores.items()}},
                                 ensure_ascii=False) + "\n")


def read_teacher_scores(path: str) -> TeacherScores:
    """The scores of a teacher file (lines of one question merged); `DataFormatError` naming
    the file and the line of a malformed one."""
    table: TeacherScores = {}
    for index, record in enumerate(read_json_records(path), start=1):
        where = f"{path}: line {index}"
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) \
                or not isinstance(record.get("scores"), dict):
            raise DataFormatError(f"{where}: expected {{\"question\": text, \"scores\": "
                                  f"{{passage key: score}}}} as {SCORE_TOOL} writes")
        scores = table.setdefault(record["question"], {})
        for key, value in record["scores"].items():
            try:
                number = float(value)
                scores[int(key)] = number
            except (TypeError, ValueError):
                raise DataFormatError(f"{where}: passage key {key!r} with score {value!r}: "
                                      "expected an integer key and a number") from None
            if not math.isfinite(number):
                raise DataFormatError(f"{where}: passage key {key}: score {value} is not "
                                      "finite")
    return table


def check_teacher_scores(table: TeacherScores, samples: Sequence[BiEncoderSample],
                         path: str) -> None:
    """Refuses (`DataFormatError` naming the first question and passage) a teacher file
    without a score for every passage of every training sample: it was written from other
    training files."""
    for sample in samples:
        scores = table.get(sample.question)
        missing = [p for p in sample_passages(sample) if scores is None or p.key not in scores]
        if missing:
            passage = missing[0]
            name = f"passage_id {passage.passage_id}" if passage.passage_id is not None \
                else f"passage {passage.title or passage.text[:40]!r}"
            what = "no line" if scores is None else f"no score for {name} ({len(missing)} " \
                "passage(s) of this question lack one)"
            raise DataFormatError(
                f"{path}: {what} for question {sample.question[:60]!r}: score the training "
                f"files themselves with {SCORE_TOOL}")


def teacher_summary(table: TeacherScores, samples: Sequence[BiEncoderSample]) -> str:
    """One line on what a teacher says of the training labels: the questions whose best
    positive it scores above every negative, and the negatives it scores above the question's
    best positive (unlabelled answer-bearing passages, or the teacher's mistakes)."""
    questions = right = above = negatives = 0
    for sample in {s.question: s for s in samples}.values():
        scores = table[sample.question]
        keys = {p.key for p in sample.positives}
        best = max(scores[k] for k in keys)
        others = [scores[p.key] for p in sample_passages(sample) if p.key not in keys]
        questions += 1
        negatives += len(others)
        right += all(best > o for o in others)
        above += sum(o > best for o in others)
    return (f"the positive scored above every negative for {right} of {questions} questions "
            f"({100 * right / max(questions, 1):.1f} %); {above} of {negatives} negatives "
            f"({100 * above / max(negatives, 1):.2f} %) scored above their question's positive")


def teacher_column(table: TeacherScores, questions: Sequence[str], ctx_keys: torch.Tensor,
                   positive_idx: torch.Tensor) -> torch.Tensor:
    """[C] float32: the teacher's score of each column of a bi-encoder batch for the question
    whose block holds it (blocks: `dpr.models.loss.own_groups`)."""
    owners = torch.bucketize(torch.arange(ctx_keys.shape[0]), positive_idx, right=True) - 1
    return torch.tensor([table[questions[q]][k] for q, k in
                         zip(owners.tolist(), ctx_keys.tolist())], dtype=torch.float32)
