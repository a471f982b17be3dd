"""data_prep's BM25 hard negatives (data_prep.bm25_negatives): own paragraph and answers left
out, split mask, deeper retries, and ties broken by passage order end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_prep.bm25_negatives import NegativeQuery, bm25_negatives
from data_prep.passages import PassageSpan
from data_prep.squad2dpr import main
from dpr.data.answers import prepare_answers
from dpr.retrieval.bm25 import BM25Retriever


def _passages(texts: list[str], paragraphs: list[str]) -> list[PassageSpan]:
    return [PassageSpan(passage_id=f"p{i}", title="Ville", text=text, paragraph_key=key)
            for i, (text, key) in enumerate(zip(texts, paragraphs))]


def test_negatives_skip_own_paragraph_answers_and_other_splits_and_retry_deeper() -> None:
    # Given 40 passages about Lyon: the first 30 name the answer, the 4 after that are of the
    # question's own paragraph (p30, p31) or of another split (p32, p33)
    texts = ["Lyon, ville du Rhône."] * 30
    texts += [f"Lyon est une ville de France {'très ' * (1 + i % 3)}belle." for i in range(10)]
    paragraphs = [f"par{i}" for i in range(40)]
    paragraphs[30] = paragraphs[31] = "own"
    passages = _passages(texts, paragraphs)
    allowed = np.array([i not in (32, 33) for i in range(40)])
    bm25 = BM25Retriever([p.title for p in passages], texts)
    query = NegativeQuery(tokens=bm25.query_tokens(["Quelle ville est Lyon ?"])[0],
                          answers=prepare_answers(["Rhône"]), paragraph_key="own")
    assert set(bm25.top_k([query.tokens], 16)[0][0].tolist()) <= set(range(30))
    # When 3 negatives are wanted (the first search, 16 deep, finds only answer passages)
    (negatives,) = bm25_negatives(bm25, [query], passages, allowed=allowed, top_k=3)
    # Then the 3 best allowed passages without answer outside the paragraph are kept, in order
    rows = [row for row, _ in negatives]
    assert len(rows) == 3 and all(34 <= row < 40 for row in rows)
    all_scores = bm25.scores(query.tokens) * allowed
    expected = [r for r in np.lexsort((np.arange(40), -all_scores)) if r >= 34][:3]
    assert rows == [int(r) for r in expected]
    assert [s for _, s in negatives] == sorted((s for _, s in negatives), reverse=True)


def test_question_without_indexed_word_gets_no_negative() -> None:
    passages = _passages(["Lyon est une ville.", "Paris aussi."], ["a", "b"])
    bm25 = BM25Retriever(["t", "t"], [p.text for p in passages])
    query = NegativeQuery(tokens=bm25.query_tokens(["Xyz ?"])[0], answers=[], paragraph_key="a")
    assert bm25_negatives(bm25, [query], passages, allowed=np.ones(2, bool), top_k=2) == [[]]


def test_squad2dpr_tied_negatives_are_the_first_passages(tmp_path: Path) -> None:
    # Given 40 one-paragraph articles alike but for a number no other one names, so that
    # every other passage ties for each question
    articles = [{"title": "Chats", "paragraphs": [{
        "context": f"Le chat dort dans la maison numéro {100 + i}.",
        "qas": [{"id": f"q{i}", "question": "Où dort le chat ?",
                 "answers": [{"text": f"{100 + i}", "answer_start": 35}]}]}]}
        for i in range(40)]
    source = tmp_path / "chats.json"
    source.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    out = tmp_path / "out"
    # When data_prep keeps 3 BM25 negatives of each question (every article in train)
    assert main([str(source), "--output_dir", str(out), "--sentence_splitter", "regex",
                 "--quiet", "--bm25_top_k", "3", "--dev_ratio", "0.2", "--seed", "1"]) == 0
    # Then each question's negatives are the first 3 passages of its split but its own,
    # in passage order (ties broken by passage order, as documented)
    ids = [line.split("\t")[0] for line in
           (out / "passages.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    for split in ("train", "dev"):
        records = json.loads((out / f"DPR_FR_{split}.json").read_text(encoding="utf-8"))
        members = {ctx["passage_id"] for r in records for ctx in r["positive_ctxs"]}
        order = [i for i in ids if i in members]
        for record in records:
            own = record["positive_ctxs"][0]["passage_id"]
            got = [ctx["passage_id"] for ctx in record["hard_negative_ctxs"]]
            assert got == [i for i in order if i != own][:3], (split, own)
