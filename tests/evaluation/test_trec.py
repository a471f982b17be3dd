"""``dpr.evaluate --trec_dir``: TREC runs and qrels that ir-measures (trec_eval's measures)
scores like our report."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import ir_measures
import pytest
from ir_measures import AP, RR, R, Success

from dpr import evaluate
from dpr.data.answers import has_answer
from dpr.evaluation.trec import run_file_name

CITIES = ["Lyon", "Brest", "Nantes", "Lille", "Rennes", "Dijon", "Nancy", "Metz", "Caen"]
RETRIEVERS = ("bm25", "dpr", "hybrid", "rrf")
TOL = 1e-6


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """110 passages (each city in 12 or 13 of them, so more than 10 relevant passages for
    city answers; one passage without title) and 7 questions, one without any relevant
    passage."""
    folder = tmp_path_factory.mktemp("trec_corpus")
    rows = []
    for i in range(110):
        city = CITIES[i % len(CITIES)]
        rows.append((f"doc-{i}", f"En {1900 + i}, la ville de {city} comptait {1000 + 37 * i} "
                     f"habitants et {i % 7 + 1} gares.", "" if i == 3 else f"Ville {city}"))
    passages = folder / "passages.tsv"
    with passages.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        writer.writerows(rows)
    qas = [("Quelle ville comptait 1037 habitants ?", ["Brest"]),
           ("Combien d'habitants comptait Lyon en 1909 ?", ["1333"]),
           ("Quelle ville a trois gares ?", ["Nantes", "Metz"]),
           ("Où se trouve la gare de Caen ?", ["Caen"]),
           ("Quand Rennes comptait-elle 1148 habitants ?", ["1904"]),
           ("Quelle est la capitale du Groenland ?", ["Nuuk"]),
           ("Combien de gares à Lille ?", ["Lille"])]
    qa_file = folder / "qas.tsv"
    qa_file.write_text("".join(f"{q}\t{json.dumps(a, ensure_ascii=False)}\n" for q, a in qas),
                       encoding="utf-8")
    return passages, qa_file


@pytest.fixture(scope="module")
def trec_eval_run(tmp_path_factory: pytest.TempPathFactory, big_corpus, checkpoint: Path
                  ) -> tuple[Path, dict]:
    """(TREC folder, results.json) of BM25, DPR and two fusions on the 110 passages."""
    out = tmp_path_factory.mktemp("trec_eval")
    assert evaluate.main([
        "--quiet", "--ctx_file", str(big_corpus[0]), "--qa_file", str(big_corpus[1]),
        "--retrievers", ",".join(RETRIEVERS), "--dpr_model", str(checkpoint), "--no_cuda",
        "--output_dir", str(out), "--trec_dir", str(out / "trec")]) == 0
    return out / "trec", json.loads((out / "results.json").read_text(encoding="utf-8"))


def _read_run(path: Path) -> dict[str, list[tuple[str, int, float, str]]]:
    rows: dict[str, list[tuple[str, int, float, str]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, q0, docid, rank, score, name = line.split()
        assert q0 == "Q0"
        rows[qid].append((docid, int(rank), float(score), name))
    return rows


def test_qrels_are_every_retrieved_passage_containing_an_answer(trec_eval_run,
                                                                big_corpus) -> None:
    # Given the qrels written by the evaluation
    folder, results = trec_eval_run
    qrels = defaultdict(set)
    for line in (folder / "qrels.txt").read_text(encoding="utf-8").splitlines():
        qid, zero, docid, rel = line.split()
        assert (zero, rel) == ("0", "1")
        qrels[int(qid)].add(docid)
    # When has_answer is applied to every passage some retriever returned for the question
    retrieved = defaultdict(set)
    for name in RETRIEVERS:
        for qid, rows in _read_run(folder / run_file_name(name)).items():
            retrieved[int(qid)].update(docid for docid, *_ in rows)
    with big_corpus[0].open(encoding="utf-8") as handle:
        passages = list(csv.reader(handle, delimiter="\t"))[1:]
    questions = [line.split("\t") for line in big_corpus[1].read_text("utf-8").splitlines()]
    want = {q: {pid for pid, text, _ in passages
                if pid in retrieved[q] and has_answer(json.loads(answers), text)}
            for q, (_, answers) in enumerate(questions)}
    # Then the qrels are exactly those passages (none for the Greenland question), some
    # question has more than 10, and results.json says what R is
    assert {q: qrels.get(q, set()) for q in want} == want
    assert 5 not in qrels and max(len(docs) for docs in qrels.values()) > 10
    assert results["num_relevant"] == {"definition": "relevant among retrieved",
                                       "pool": list(RETRIEVERS), "depth": 100}


def test_runs_hold_top_n_docs_in_rank_order(trec_eval_run, big_corpus) -> None:
    # Given the run of every retriever
    folder, results = trec_eval_run
    for name in RETRIEVERS:
        run = _read_run(folder / run_file_name(name))
        # Then each question has ranks 1..100, distinct passages, non-increasing scores and
        # the retriever's name as run tag
        assert sorted(run, key=int) == [str(q) for q in range(7)]
        for rows in run.values():
            assert [rank for _, rank, _, _ in rows] == list(range(1, 101))
            assert len({docid for docid, *_ in rows}) == 100
            scores = [score for _, _, score, _ in rows]
            assert all(a >= b for a, b in zip(scores, scores[1:]))
            assert {tag for *_, tag in rows} == {name}


MEASURES = [RR @ 10, R @ 20, R @ 100, AP @ 10, Success @ 1, Success @ 5, Success @ 20]


def _library_means(run: dict[str, list[tuple[str, int, float, str]]], qrels: list,
                   questions: int) -> dict[str, float]:
    """ir-measures on a run ordered by its rank column, averaged over all questions (ours
    count questions without relevant passage as 0; trec_eval skips them); AP@10 rescaled
    from trec_eval's 1/R to our 1/min(R, 10)."""
    scored = [ir_measures.ScoredDoc(qid, docid, -float(rank))
              for qid, rows in run.items() for docid, rank, _, _ in rows]
    num_rel: dict[str, int] = defaultdict(int)
    for qrel in qrels:
        num_rel[qrel.query_id] += 1
    sums: dict[str, float] = defaultdict(float)
    for metric in ir_measures.iter_calc(MEASURES, qrels, scored):
        value = metric.value
        if metric.measure == AP @ 10:
            value *= num_rel[metric.query_id] / min(num_rel[metric.query_id], 10)
        sums[str(metric.measure)] += value
    return {measure: total / questions for measure, total in sums.items()}


def test_ir_measures_on_trec_files_reproduces_our_metrics(trec_eval_run) -> None:
    # Given the TREC files and our results.json
    folder, results = trec_eval_run
    qrels = list(ir_measures.read_trec_qrels(str(folder / "qrels.txt")))
    for name in RETRIEVERS:
        ours = results["results"][name]
        # When ir-measures scores the run
        got = _library_means(_read_run(folder / run_file_name(name)), qrels, 7)
        # Then MRR@10, recall@20/100, MAP@10 and top-1/5/20 accuracy equal ours
        want = {"RR@10": ours["mrr@10"], "R@20": ours["recall"]["20"],
                "R@100": ours["recall"]["100"], "AP@10": ours["map@10"],
                "Success@1": ours["top_k"]["1"], "Success@5": ours["top_k"]["5"],
                "Success@20": ours["top_k"]["20"]}
        assert got == pytest.approx(want, abs=TOL, rel=0), name



def test_squad_mode_qrels_are_the_gold_paragraphs(tmp_path: Path) -> None:
    # Given a SQuAD file (6 paragraphs, 14 questions) evaluated with BM25, relevance by paragraph
    squad = Path(__file__).resolve().parents[1] / "fixtures" / "squad_fr_small.json"
    assert evaluate.main(["--quiet", "--squad", str(squad), "--retrievers", "bm25",
                          "--output_dir", str(tmp_path), "--trec_dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    # When the qrels and the run are read back
    qrels = list(ir_measures.read_trec_qrels(str(tmp_path / "qrels.txt")))
    run = _read_run(tmp_path / run_file_name("bm25"))
    # Then each question has exactly one relevant passage, ranked where results.json says
    assert sorted(int(q.query_id) for q in qrels) == list(range(14))
    gold = {q.query_id: q.doc_id for q in qrels}
    for qid, rank in enumerate(results["results"]["bm25"]["first_hit_rank"]):
        ids = [docid for docid, *_ in run[str(qid)]]
        assert (ids.index(gold[str(qid)]) if gold[str(qid)] in ids else None) == rank
    # And ir-measures' MRR@10 and AP@10 both equal our MAP@10 (R = 1) and MRR@10
    got = _library_means(run, qrels, 14)
    assert got["RR@10"] == pytest.approx(results["results"]["bm25"]["mrr@10"], abs=TOL)
    assert got["AP@10"] == pytest.approx(results["results"]["bm25"]["map@10"], abs=TOL)


def test_passage_id_with_whitespace_among_written_ones_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a passage id with a space, which a TREC line cannot hold
    passages = tmp_path / "passages.tsv"
    with passages.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out, delimiter="\t").writerows([["p 1", "Brest est un port.", "Brest"],
                                                   ["p2", "Lyon est une ville.", "Lyon"]])
    qas = tmp_path / "qas.tsv"
    qas.write_text('Quel port ?\t["Brest"]\n', encoding="utf-8")
    # When BM25 ranks it and TREC files are asked for
    code = evaluate.main(["--quiet", "--ctx_file", str(passages), "--qa_file", str(qas),
                          "--retrievers", "bm25", "--trec_dir", str(tmp_path / "trec")])
    # Then it exits 1 naming the id, and writes no TREC file
    assert code == 1 and "'p 1'" in caplog.text
    assert not (tmp_path / "trec" / "qrels.txt").exists()
