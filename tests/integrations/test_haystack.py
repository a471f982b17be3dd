"""Haystack over a dpr2hf export: the same top-10 passages as ``dpr.evaluate``, a reranker's
export ordering passages as the project's reranker does, and the
examples/haystack_pipeline.py example run end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_tiny_checkpoint
from helpers import exported_reranker, train_e5_checkpoint
from transformers import AutoModel, AutoTokenizer

from dpr import evaluate, tiny
from dpr.data.tsv import read_passages, read_qas
from dpr.inference import load_reranker
from dpr.models.st_folder import save_sentence_transformer
from dpr2hf.cli import main as dpr2hf_main

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("haystack_pipeline",
                                               ROOT / "examples" / "haystack_pipeline.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def _spread(model_dir: Path, out: Path, factor: float = 20.0) -> Path:
    """A copy of a tiny model with its matrices scaled: at the default initialisation every
    first-token vector is nearly the same (dot products tie in float32), which would make the
    ranking comparison meaningless."""
    model = AutoModel.from_pretrained(model_dir)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(factor)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path, tiny_bert: Path,
            dpr_files) -> dict[str, Path]:
    """dpr2hf exports of tiny CamemBERT and BERT bi-encoders trained for one epoch."""
    root = tmp_path_factory.mktemp("haystack")
    out = {}
    for kind, encoder_type, base in (("camembert", "hf_roberta", tiny_camembert),
                                     ("bert", "hf_bert", tiny_bert)):
        (root / kind).mkdir()
        ckpt = train_tiny_checkpoint(root / kind, encoder_type,
                                     _spread(base, root / f"{kind}_base"), dpr_files[0],
                                     records=slice(0, 8))
        out[kind] = root / f"hf_{kind}"
        assert dpr2hf_main([str(ckpt), "--output_dir", str(out[kind])]) == 0
    return out


@pytest.fixture(scope="module", params=["pair", "joined"])
def e5_export(tmp_path_factory: pytest.TempPathFactory, tiny_e5: Path, dpr_files,
              request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(checkpoint, dpr2hf export) of a tiny e5-shaped model trained by its own recipe
    (mean pooling, cosine, prefixes 'query: ' / 'passage: ', one shared encoder), on passage
    pairs or on joined passages."""
    root = tmp_path_factory.mktemp("haystack_e5")
    base = root / "e5_base"
    save_sentence_transformer(_spread(tiny_e5, root / "e5_plain"), base, tiny.E5_RECIPE)
    ckpt = train_e5_checkpoint(root, base, dpr_files[0], "--temperature", "0.05",
                               "--shared_encoder", "--passage_format", request.param)
    assert dpr2hf_main([str(ckpt), "--output_dir", str(root / "hf")]) == 0
    return ckpt, root / "hf"


@pytest.fixture(scope="module")
def reranker_export(tmp_path_factory: pytest.TempPathFactory, tiny_camembert: Path
                    ) -> tuple[Path, Path]:
    """(checkpoint, dpr2hf CrossEncoder folder) of a random tiny CamemBERT reranker."""
    return exported_reranker(tmp_path_factory.mktemp("haystack_reranker"), tiny_camembert,
                             "hf_roberta", sequence_length=64)


def _reranker_order(ckpt: Path, question: str, passages: list) -> tuple[list[str], list]:
    """The project's reranker's order of (id, title, text) passages for a question, and its
    scores in that order."""
    scores = load_reranker(ckpt).score_pairs([(question, (p.title, p.text)) for p in passages])
    order = np.argsort(-scores, kind="stable")
    return [passages[i].passage_id for i in order], [float(scores[i]) for i in order]


def test_haystack_ranker_orders_passages_as_the_reranker(reranker_export, corpus) -> None:
    # Given a reranker checkpoint, its dpr2hf export and the corpus as the example's Documents
    ckpt, folder = reranker_export
    passages = list(read_passages(corpus[0]).values())
    documents = example.passage_documents(str(corpus[0]))
    ranker = example.passage_ranker(str(folder), top_k=len(documents))
    for question, _ in read_qas(corpus[1]):
        # When Haystack's ranker orders every passage for the (stripped) question
        got = ranker.run(query=question.strip(), documents=documents)["documents"]
        # Then it is the project's reranker's order, with its raw scores
        want_ids, want_scores = _reranker_order(ckpt, question, passages)
        assert [d.id for d in got] == want_ids, question
        assert [d.score for d in got] == pytest.approx(want_scores, abs=1e-4)


def test_pipeline_reranks_the_fused_passages_as_the_reranker(exports, reranker_export,
                                                             corpus) -> None:
    # Given the example's pipeline with the CamemBERT export and the reranker's folder
    ckpt, folder = reranker_export
    store = example.InMemoryDocumentStore(embedding_similarity_function="dot_product")
    example.index_passages(store, example.passage_documents(str(corpus[0])),
                           str(exports["camembert"] / "ctx_encoder"))
    pipeline = example.query_pipeline(store, str(exports["camembert"] / "question_encoder"),
                                      top_k=3, depth=6, reranker=str(folder))
    passages = read_passages(corpus[0])
    for question, _ in read_qas(corpus[1]):
        # When a question is asked
        found = example.ask(pipeline, question)
        # Then the top 3 re-ranked are the reranker's best 3 of the 6 fused passages
        assert len(found["fused"]) == 6
        want_ids, _ = _reranker_order(ckpt, question, [passages[d.id] for d in found["fused"]])
        assert [d.id for d in found["reranked"]] == want_ids[:3], question


def _evaluate_top10(export: Path, corpus: tuple[Path, Path], folder: Path) -> dict[int, list]:
    """Per question, the top-10 passage ids of ``dpr.evaluate``'s TREC run."""
    assert evaluate.main(["--quiet", "--ctx_file", str(corpus[0]), "--qa_file", str(corpus[1]),
                          "--retrievers", "dpr", "--dpr_model", str(export), "--no_cuda",
                          "--n_docs", "10", "--trec_dir", str(folder)]) == 0
    top: dict[int, list] = {}
    for line in (folder / "run.dpr.txt").read_text(encoding="utf-8").splitlines():
        qid, _, docid, rank, score, _ = line.split()
        top.setdefault(int(qid), []).append((docid, float(score)))
    return top


def test_separator_reproduces_camembert_and_bert_pairs(exports, corpus) -> None:
    # Given the context encoders' tokenizers and the corpus's (title, text) pairs
    passages = list(read_passages(corpus[0]).values())
    cam = AutoTokenizer.from_pretrained(exports["camembert"] / "ctx_encoder")
    # When the separator check runs
    separator = example.pair_separator(exports["camembert"] / "ctx_encoder")
    # Then CamemBERT's is </s></s>, and title + it + text gives every pair's ids (truncation
    # at the export's sequence length included)
    assert separator == "</s></s>"
    for p in passages:
        joined = cam(f"{p.title}{separator}{p.text.strip()}", truncation=True, max_length=64)
        assert joined["input_ids"] == cam(p.title, p.text.strip(), truncation="longest_first",
                                          max_length=64)["input_ids"]
    # And Haystack's default separator ("\n") does not
    assert any(cam(f"{p.title}\n{p.text.strip()}")["input_ids"] != cam(p.title, p.text.strip())[
        "input_ids"] for p in passages if p.title)
    # And BERT's is [SEP]: the exported tokenizer returns no token_type_ids (training fed
    # zeros), so title + [SEP] + text has every pair's ids
    assert example.pair_separator(exports["bert"] / "ctx_encoder") == "[SEP]"
    bert = AutoTokenizer.from_pretrained(exports["bert"] / "ctx_encoder")
    assert "token_type_ids" not in bert("Loire", "La Loire.")
    for p in passages:
        joined = bert(f"{p.title}[SEP]{p.text.strip()}", truncation=True, max_length=64)
        assert joined["input_ids"] == bert(p.title, p.text.strip(), truncation="longest_first",
                                           max_length=64)["input_ids"]


@pytest.mark.parametrize("kind", ["camembert", "bert"])
def test_haystack_dense_top10_equals_dpr_evaluate(exports, corpus, kind, tmp_path) -> None:
    # Given dpr.evaluate's DPR ranking of the corpus with the export
    want = _evaluate_top10(exports[kind], corpus, tmp_path / "trec")
    # When the passages are indexed in Haystack as the example does (document embedder with
    # the pair separator, or pre-computed pairs for BERT) and each question is asked
    store = example.InMemoryDocumentStore(embedding_similarity_function="dot_product")
    example.index_passages(store, example.passage_documents(str(corpus[0])),
                           str(exports[kind] / "ctx_encoder"))
    pipeline = example.query_pipeline(store, str(exports[kind] / "question_encoder"), top_k=10,
                                      depth=10)
    for qid, (question, _) in enumerate(read_qas(corpus[1])):
        got = example.ask(pipeline, question)["dense"]
        # Then the top 10 are the same passages in the same order, with the same dot products
        assert [d.id for d in got] == [docid for docid, _ in want[qid]], question
        assert [d.score for d in got] == pytest.approx([s for _, s in want[qid]], abs=1e-4)


def test_haystack_applies_the_exports_prefixes_and_the_loader_path_agrees(
        e5_export, corpus, tmp_path) -> None:
    # Given dpr.evaluate's ranking with an export trained with prefixes and mean pooling
    ckpt, export = e5_export
    want = _evaluate_top10(export, corpus, tmp_path / "trec")
    from sentence_transformers import SentenceTransformer

    for side, prompt in (("question", "query"), ("ctx", "passage")):
        assert SentenceTransformer(str(export / f"{side}_encoder")).default_prompt_name == prompt
    # When Haystack's own embedders serve the export, and the loader serves the checkpoint
    for source in (export, ckpt):
        store = example.InMemoryDocumentStore(embedding_similarity_function="dot_product")
        documents = example.passage_documents(str(corpus[0]))
        if source == export:
            example.index_passages(store, documents, str(export / "ctx_encoder"))
            question = str(export / "question_encoder")
        else:
            question = example.load_encoder(ckpt)
            store.write_documents(example.embed_documents(question, documents))
        pipeline = example.query_pipeline(store, question, top_k=10, depth=10)
        for qid, (text, _) in enumerate(read_qas(corpus[1])):
            got = example.ask(pipeline, text)["dense"]
            # Then both give dpr.evaluate's top 10 with its cosine scores
            assert [d.id for d in got] == [docid for docid, _ in want[qid]], (source, text)
            assert [d.score for d in got] == pytest.approx([s for _, s in want[qid]], abs=1e-4)


def test_example_prints_fused_top_passages(exports, corpus, capsys) -> None:
    # Given the tiny CamemBERT export, the corpus and its questions
    questions = read_qas(corpus[1])
    # When the example runs on two questions with the top 3
    code = example.main(["--model_file", str(exports["camembert"]), "--ctx_file", str(corpus[0]),
                         "--qa_file", str(corpus[1]), "--num_questions", "2", "--n_docs", "3"])
    out = capsys.readouterr().out
    # Then it prints both questions with three ranked passages of the corpus each
    ids = set(read_passages(corpus[0]))
    assert code == 0
    blocks = out.split("\nQ: ")[1:]
    assert [b.splitlines()[0].split("   (answers")[0] for b in blocks] == \
        [q for q, _ in questions[:2]]
    for block in blocks:
        lines = block.splitlines()[1:4]
        assert [line.split(".")[0].strip() for line in lines] == ["1", "2", "3"]
        assert all(line.split("[")[1].split("]")[0] in ids for line in lines)


def test_example_prints_reranked_passages(exports, reranker_export, corpus, capsys) -> None:
    # When the example runs with the reranker's folder, Then each question's three passages
    # are shown with the reranker's scores
    assert example.main(["--model_file", str(exports["camembert"]), "--ctx_file",
                         str(corpus[0]), "--qa_file", str(corpus[1]), "--num_questions", "1",
                         "--n_docs", "3", "--reranker", str(reranker_export[1])]) == 0
    lines = capsys.readouterr().out.split("\nQ: ")[1].splitlines()[1:4]
    assert [line.split(".")[0].strip() for line in lines] == ["1", "2", "3"]
    assert all("(reranker " in line for line in lines)
    # And a folder that is no reranker export is one error, exit 1
    assert example.main(["--model_file", str(exports["camembert"]), "--ctx_file",
                         str(corpus[0]), "--qa_file", str(corpus[1]),
                         "--reranker", str(exports["camembert"])]) == 1


def test_example_help_and_bad_model_folder(tmp_path, corpus, capsys) -> None:
    # Given the example, --help exits 0 and names the flags
    assert example.main(["--help"]) == 0
    assert "--ctx_file" in capsys.readouterr().out
    # And a folder that is no model is one error, exit 1, as is a missing path
    assert example.main(["--model_file", str(tmp_path), "--ctx_file", str(corpus[0]),
                         "--qa_file", str(corpus[1])]) == 1
    assert example.main(["--model_file", str(tmp_path / "missing"), "--ctx_file", str(corpus[0]),
                         "--qa_file", str(corpus[1])]) == 1


@pytest.mark.parametrize("which", ["--ctx_file", "--qa_file"])
def test_example_empty_input_file_is_one_error_naming_flag_and_file(
        tmp_path, exports, corpus, caplog, which) -> None:
    # Given a real export and one input file that holds nothing (a passage TSV with its header
    # only, or an empty QA file)
    files = {"--ctx_file": str(corpus[0]), "--qa_file": str(corpus[1])}
    files[which] = str(tmp_path / "empty.tsv")
    (tmp_path / "empty.tsv").write_text("id\ttext\ttitle\n" if which == "--ctx_file" else "",
                                        encoding="utf-8")
    # When running the example
    status = example.main(["--model_file", str(exports["camembert"]), "--ctx_file",
                           files["--ctx_file"], "--qa_file", files["--qa_file"]])
    # Then it exits 1 with one error naming the flag and the file, before indexing anything
    assert status == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    what = "passages" if which == "--ctx_file" else "questions"
    assert errors == [f"{which} {tmp_path / 'empty.tsv'}: no {what} (is the file empty?)"]
    assert not any("indexed" in r.getMessage() for r in caplog.records)
