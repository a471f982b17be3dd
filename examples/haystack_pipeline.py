"""A Haystack pipeline over a trained model: BM25 + DPR joined by reciprocal rank fusion, then
optionally re-ranked by a trained reranker.

    python examples/haystack_pipeline.py --model_file demo_out/hf \
        --ctx_file demo_out/data/passages.tsv --qa_file demo_out/data/qas_dev.tsv \
        --num_questions 3 [--reranker RERANKER_FOLDER]

Indexing: every passage becomes a Haystack ``Document`` (content = text, ``meta["title"]`` =
title) embedded by ``SentenceTransformersDocumentEmbedder`` with the export's ``ctx_encoder``
folder and written into an ``InMemoryDocumentStore(embedding_similarity_function=
"dot_product")``. Querying: ``SentenceTransformersTextEmbedder`` (``question_encoder``) →
``InMemoryEmbeddingRetriever`` and ``InMemoryBM25Retriever``, joined by
``DocumentJoiner(join_mode="reciprocal_rank_fusion")``. With ``--reranker`` (a reranker
checkpoint exported by ``python -m dpr2hf``: a sentence-transformers ``CrossEncoder`` folder),
``SentenceTransformersSimilarityRanker`` re-orders the fused top ``--fusion_depth`` passages
with the reranker's own scores (:func:`passage_ranker`: the passage is ``title + " " + text``,
as the reranker was trained on, the raw scores unscaled) and keeps the top ``--n_docs``.

The model's recipe (docs/HAYSTACK.md): a passage is encoded as the pair (title, text), a
question without its trailing '?', each with the model's prefix when it was trained with one
(each exported tower's default sentence-transformers prompt, which the embedders apply by
themselves). The document embedder encodes one string, ``meta fields + embedding_separator +
content``; with the separator ``</s></s>`` (CamemBERT/RoBERTa) or ``[SEP]`` (BERT: the exported
tokenizer returns no ``token_type_ids``, training fed zeros) that string tokenizes into exactly
the pair's ids, and :func:`pair_separator` checks it on the export's own tokenizer. When no
separator does, the passages are embedded with sentence-transformers pairs and written with
their embeddings. A model trained with ``--passage_format joined`` read ``title text``, one
string: its separator is a space.

``--model_file`` may also be a DPR checkpoint or a plain Hugging Face / sentence-transformers
folder: the project's loader (``dpr.inference.load_encoder``) then embeds passages and
questions, with the same recipe every other tool applies, through the two small components
below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from haystack import Document, Pipeline, component  # noqa: E402
from haystack.components.joiners import DocumentJoiner  # noqa: E402
from haystack.components.retrievers.in_memory import (  # noqa: E402
    InMemoryBM25Retriever,
    InMemoryEmbeddingRetriever,
)
from haystack.components.writers import DocumentWriter  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402
from haystack.utils import ComponentDevice  # noqa: E402
from haystack_integrations.components.embedders.sentence_transformers import (  # noqa: E402
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)
from haystack_integrations.components.rankers.sentence_transformers import (  # noqa: E402
    SentenceTransformersSimilarityRanker,
)

from dpr.cli.flags import add_debug_flag, add_device_flags, add_flag  # noqa: E402
from dpr.cli.main import run_main  # noqa: E402
from dpr.data.answers import has_answer  # noqa: E402
from dpr.data.recipe import strip_question_mark  # noqa: E402
from dpr.data.tsv import read_passages, read_qas  # noqa: E402
from dpr.inference import DenseEncoder, load_encoder  # noqa: E402
from dpr.models.export import exported_params, is_hf_export, is_reranker_export  # noqa: E402
from dpr.recipe import PassageFormat, Recipe  # noqa: E402
from dpr.utils.device import select_device  # noqa: E402
from dpr.utils.errors import InputError, read_input  # noqa: E402

logger = logging.getLogger("haystack_pipeline")
_PROBE = ("Brocéliande", "La forêt où Merlin rencontra Viviane, près de Paimpont.")


def pair_separator(ctx_folder: str | os.PathLike[str]) -> str | None:
    """The ``embedding_separator`` that makes ``title + separator + text`` what training
    encoded: one space for a model trained on joined passages (``--passage_format joined``),
    else the string that tokenizes exactly as the pair (title, text), checked on the folder's
    tokenizer (``</s></s>`` for RoBERTa types, ``[SEP]`` for BERT); None when no such string
    exists."""
    from transformers import AutoTokenizer

    if Recipe.from_params(exported_params(ctx_folder)).passage_format == PassageFormat.JOINED:
        return " "
    tokenizer = AutoTokenizer.from_pretrained(ctx_folder)
    pair = dict(tokenizer(*_PROBE))
    for separator in (tokenizer.sep_token * 2, tokenizer.sep_token):
        if dict(tokenizer(f"{_PROBE[0]}{separator}{_PROBE[1]}")) == pair:
            return separator
    return None


@component
class ProjectTextEmbedder:
    """Embeds a question with the project's loader (any model `load_encoder` reads)."""

    def __init__(self, model: DenseEncoder) -> None:
        self.model = model

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, Any]:
        return {"embedding": self.model.encode_questions([text])[0].tolist()}


def embed_documents(model: DenseEncoder, documents: list[Document]) -> list[Document]:
    """Documents with the project loader's passage vectors, (title, text) as in training."""
    vectors = model.encode_passages([(d.meta.get("title", ""), d.content or "")
                                     for d in documents])
    return [Document(id=d.id, content=d.content, meta=d.meta, embedding=v.tolist())
            for d, v in zip(documents, vectors)]


def passage_documents(path: str) -> list[Document]:
    """The passages of a DPR TSV as Documents (id = passage id; text stripped as in training;
    ``meta["title"]`` only when the title is not empty, so that the text is encoded alone)."""
    return [Document(id=p.passage_id, content=p.text.strip(),
                     meta={"title": p.title} if p.title else {})
            for p in read_passages(path).values()]


def index_passages(store: InMemoryDocumentStore, documents: list[Document], ctx_folder: str, *,
                   batch_size: int = 32, device: str = "cpu") -> None:
    """Embeds the documents with the context encoder as DPR pairs (its default prompt, the
    passage prefix, put in front by sentence-transformers) and writes them."""
    separator = pair_separator(ctx_folder)
    if separator is None:
        from sentence_transformers import SentenceTransformer

        logger.info("No separator string gives the pairs: passages embedded as "
                    "sentence-transformers pairs")
        model = SentenceTransformer(ctx_folder, device=device)
        items = [(d.meta["title"], d.content) if "title" in d.meta else d.content or ""
                 for d in documents]
        vectors = model.encode(items, batch_size=batch_size, show_progress_bar=False)
        store.write_documents([Document(id=d.id, content=d.content, meta=d.meta,
                                        embedding=v.tolist()) for d, v in zip(documents, vectors)])
        return
    indexing = Pipeline()
    indexing.add_component("embedder", SentenceTransformersDocumentEmbedder(
        model=ctx_folder, meta_fields_to_embed=["title"], embedding_separator=separator,
        batch_size=batch_size, progress_bar=False, local_files_only=True,
        device=ComponentDevice.from_str(device)))
    indexing.add_component("writer", DocumentWriter(document_store=store))
    indexing.connect("embedder.documents", "writer.documents")
    indexing.run({"embedder": {"documents": documents}})


def passage_ranker(folder: str, *, top_k: int,
                   device: str = "cpu") -> SentenceTransformersSimilarityRanker:
    """Haystack's cross-encoder ranker over a reranker's ``CrossEncoder`` folder (``dpr2hf``),
    scoring as the reranker does: the query as given (pass it stripped), the passage
    ``meta["title"] + " " + content`` (the content alone for a document without a title, as
    :func:`passage_documents` makes them), raw scores (``scale_score=False``: no sigmoid)."""
    return SentenceTransformersSimilarityRanker(
        model=folder, top_k=top_k, meta_fields_to_embed=["title"], embedding_separator=" ",
        scale_score=False, device=ComponentDevice.from_str(device))


def query_pipeline(store: InMemoryDocumentStore, question: str | DenseEncoder, *, top_k: int,
                   depth: int, device: str = "cpu", reranker: str | None = None) -> Pipeline:
    """Dense (``dense``) and BM25 (``bm25``) top ``depth`` lists fused by RRF (``joiner``),
    its top ``top_k`` kept; with ``reranker``, its top ``depth`` re-ranked by
    :func:`passage_ranker` (``ranker``), the top ``top_k`` kept.

    Args:
        question: An export's ``question_encoder`` folder (Haystack's sentence-transformers
            embedder: the folder's default prompt is its query prefix) or a model of the
            project's loader.
        reranker: A reranker's ``CrossEncoder`` folder written by ``dpr2hf``.
    """
    pipeline = Pipeline()
    if isinstance(question, DenseEncoder):
        embedder: Any = ProjectTextEmbedder(question)
    else:
        embedder = SentenceTransformersTextEmbedder(
            model=question, progress_bar=False, local_files_only=True,
            device=ComponentDevice.from_str(device))
    pipeline.add_component("text_embedder", embedder)
    pipeline.add_component("dense", InMemoryEmbeddingRetriever(document_store=store,
                                                               top_k=depth))
    pipeline.add_component("bm25", InMemoryBM25Retriever(document_store=store, top_k=depth))
    pipeline.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion",
                                                    top_k=depth if reranker else top_k))
    pipeline.connect("text_embedder.embedding", "dense.query_embedding")
    pipeline.connect("dense.documents", "joiner.documents")
    pipeline.connect("bm25.documents", "joiner.documents")
    if reranker:
        pipeline.add_component("ranker", passage_ranker(reranker, top_k=top_k, device=device))
        pipeline.connect("joiner.documents", "ranker.documents")
    return pipeline


def ask(pipeline: Pipeline, question: str) -> dict[str, list[Document]]:
    """Runs the pipeline on one question (the dense side without its trailing '?', the ranker
    on the stripped question, as the reranker read it).

    Returns:
        ``{"dense": [...], "bm25": [...], "fused": [...]}``, best first, and ``"reranked"``
        when the pipeline has a ranker.
    """
    inputs: dict[str, dict[str, Any]] = {
        "text_embedder": {"text": strip_question_mark(question).strip()},
        "bm25": {"query": question}}
    reranking = "ranker" in pipeline.graph.nodes
    if reranking:
        inputs["ranker"] = {"query": question.strip()}
    out = pipeline.run(inputs, include_outputs_from={"dense", "bm25", "joiner"})
    found = {"dense": out["dense"]["documents"], "bm25": out["bm25"]["documents"],
             "fused": out["joiner"]["documents"]}
    if reranking:
        found["reranked"] = out["ranker"]["documents"]
    return found


def build_parser() -> argparse.ArgumentParser:
    """The example's flags."""
    parser = argparse.ArgumentParser(
        prog="python examples/haystack_pipeline.py",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Index a passage TSV with a dpr2hf export in Haystack and print the top "
        "passages of BM25 + DPR (reciprocal rank fusion), re-ranked by --reranker if given, for "
        "a few questions.")
    add_flag(parser, "--model_file", "--model", default="demo_out/hf",
             help="dpr2hf output folder (question_encoder/ and ctx_encoder/: Haystack's own "
             "sentence-transformers embedders), or a DPR checkpoint or Hugging Face / "
             "sentence-transformers folder (embedded by the project's loader)")
    add_flag(parser, "--ctx_file", "--passages", default="demo_out/data/passages.tsv",
             help="passage TSV (id, text, title)")
    add_flag(parser, "--qa_file", "--qa", default="demo_out/data/qas_dev.tsv",
             help="QA TSV: question<TAB>answers list")
    add_flag(parser, "--num_questions", "--questions", type=int, default=3,
             help="questions asked (the first)")
    add_flag(parser, "--n_docs", "--n-docs", "--top_k", type=int, default=5,
             help="fused passages printed")
    add_flag(parser, "--fusion_depth", "--depth", type=int, default=20,
             help="each retriever's list fused (and, with --reranker, the fused passages "
             "re-ranked)")
    parser.add_argument("--reranker", default=None,
                        help="a reranker's CrossEncoder folder (python -m dpr2hf on a "
                        "train_reranker.py checkpoint): re-ranks the fused passages")
    parser.add_argument("--batch_size", type=int, default=32, help="passages per forward pass")
    add_device_flags(parser)
    add_debug_flag(parser)
    return parser


def _show(question: str, answers: Sequence[str], docs: Sequence[Document], *,
          score: str = "rrf") -> None:
    print(f"\nQ: {question}   (answers: {' | '.join(answers)})")
    for rank, doc in enumerate(docs, start=1):
        mark = "✓" if has_answer(answers, doc.content or "") else " "
        title = doc.meta.get("title", "")
        print(f"  {rank}. {mark} [{doc.id}] {title}: {(doc.content or '')[:90]}"
              f"  ({score} {doc.score:.4f})")


def run(args: argparse.Namespace) -> int:
    """Indexes the passages and prints the fused top passages of the first questions."""
    logging.getLogger("transformers").setLevel(logging.ERROR)  # the exports' unused pooler
    # Inputs first: a bad file fails before any model loads.
    documents = read_input(passage_documents, args.ctx_file, flag="--ctx_file", what="passages")
    questions = read_input(read_qas, args.qa_file, flag="--qa_file", what="questions")
    if args.reranker and not is_reranker_export(args.reranker):
        raise InputError(f"--reranker {args.reranker}: not a reranker's CrossEncoder folder "
                         "(export a train_reranker.py checkpoint with python -m dpr2hf)")
    model, device = Path(args.model_file), str(select_device(args.device))
    store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
    question: str | DenseEncoder
    if is_hf_export(model):
        index_passages(store, documents, str(model / "ctx_encoder"), batch_size=args.batch_size,
                       device=device)
        question = str(model / "question_encoder")
    elif model.exists():
        question = load_encoder(model, {}, batch_size=args.batch_size, device=device)
        logger.info("Model: %s", question.description)
        store.write_documents(embed_documents(question, documents))
    else:
        raise InputError(f"--model_file {model}: no such file or folder")
    logger.info("%d passages indexed", store.count_documents())
    pipeline = query_pipeline(store, question, top_k=args.n_docs, depth=args.fusion_depth,
                              device=device, reranker=args.reranker)
    for text, answers in questions[:args.num_questions]:
        found = ask(pipeline, text)
        if args.reranker:
            _show(text, answers, found["reranked"], score="reranker")
        else:
            _show(text, answers, found["fused"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_main(build_parser(), argv, run, prog="haystack_pipeline")


if __name__ == "__main__":
    sys.exit(main())
