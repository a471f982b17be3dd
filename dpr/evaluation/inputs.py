"""What an evaluation reads: the corpus searched and the questions asked, from a passage TSV
with a QA TSV or DPR training JSON, or from one SQuAD-format file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dpr.data.records import read_json_records
from dpr.data.squad import load_squad_file
from dpr.data.tsv import read_qas
from dpr.retrieval.corpus import Corpus
from dpr.utils.errors import InputError, naming_flag, require_items

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuestionSet:
    """Questions with their answers and, in SQuAD mode, their gold passage rows."""

    source: str
    questions: list[str]
    answers: list[list[str]]
    gold: list[set[int]] | None = None


def read_squad(path: str, *, flag: str = "--squad") -> tuple[Corpus, QuestionSet]:
    """A SQuAD-format file as corpus and questions.

    The corpus is the file's paragraphs (identical title + context kept once; paragraphs
    without ``qas`` included, blank ones left out), the questions its answerable questions,
    each question's gold set its own paragraph.

    Raises:
        DataFormatError: On a malformed file (see :func:`dpr.data.squad.load_squad_file`).
        InputError: If the file has no answerable question (errors name `flag`).
    """
    corpus = Corpus([], [], [], path)
    qset = QuestionSet(path, [], [], gold=[])
    position: dict[tuple[str, str], int] = {}
    with naming_flag(flag):
        squad = load_squad_file(path, source=Path(path).stem)
        for paragraph in squad.paragraphs:
            key = (paragraph.title, paragraph.context)
            if key not in position:
                position[key] = len(corpus.ids)
                corpus.ids.append(paragraph.key)
                corpus.titles.append(paragraph.title)
                corpus.texts.append(" ".join(paragraph.context.split()))
            for question in paragraph.questions:
                qset.questions.append(question.question)
                qset.answers.append(list(dict.fromkeys(a.text for a in question.answers)))
                qset.gold.append({position[key]})
        if not qset.questions:
            raise InputError(f"{path}: no answerable questions")
    logger.info("%s: %d paragraphs searched; %d have no questions (corpus only)",
                path, len(corpus.ids), squad.stats["paragraphs_without_questions"])
    return corpus, qset


def read_questions(path: str, *, flag: str = "--qa_file") -> QuestionSet:
    """Questions and answers of a QA TSV file or of a DPR training JSON / JSON Lines file
    (records with a ``question`` string and an ``answers`` list: data_prep's
    ``DPR_FR_*.json``).

    Raises:
        InputError: On a malformed file or record (the message names `flag`, the file and
            the record), or a file without questions.
    """
    qset = QuestionSet(path, [], [])
    with naming_flag(flag):
        if path.removesuffix(".gz").endswith((".json", ".jsonl")):
            for i, record in enumerate(read_json_records(path)):
                if not isinstance(record, dict) or not isinstance(record.get("question"), str) \
                        or not isinstance(record.get("answers"), list):
                    raise InputError(f"{path}: record {i} lacks a 'question' string or "
                                          "an 'answers' list")
                qset.questions.append(record["question"])
                qset.answers.append([str(a) for a in record["answers"]])
        else:
            for question, answers in read_qas(path):
                qset.questions.append(question)
                qset.answers.append(answers)
        require_items(qset.questions, path=path, what="questions")
    return qset
