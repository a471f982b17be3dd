"""What one evaluation runs: :class:`EvalOptions`, and the parsing of the values of
``--dpr_model``, ``--retrievers``, ``--fusion_dpr`` and ``--pairs`` (pure, raising
:class:`~dpr.utils.errors.UsageError` naming the flag)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dpr.retrieval.bm25 import BM25Settings
from dpr.retrieval.fusion import DEFAULT_FUSION_WEIGHT
from dpr.utils.errors import UsageError

BASE_RETRIEVERS = ("bm25", "dpr", "hybrid", "rrf", "fusion", "sbert")
FUSIONS = ("hybrid", "rrf", "fusion")
NEEDS_BM25 = frozenset({"bm25", *FUSIONS})
TOP_KS = (1, 5, 10, 20, 50, 100)
TUNE_METRICS = tuple(f"top{k}" for k in TOP_KS) + ("mrr10",)
DEFAULT_TUNE_METRIC = "mrr10"  # top-20 is flat on a few hundred tuning questions (many ties)
TUNABLE_FUSIONS = ("hybrid", "fusion")
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class DprModelSpec:
    """One DPR model of the evaluation: retriever ``dpr`` (unlabelled) or ``dpr:<label>``."""

    path: str
    label: str | None = None

    @property
    def name(self) -> str:
        """The retriever name in reports."""
        return f"dpr:{self.label}" if self.label else "dpr"


def parse_dpr_models(values: Sequence[str] | None) -> tuple[DprModelSpec, ...]:
    """``--dpr_model`` values (repeatable, each ``PATH``, ``LABEL=PATH`` or a comma list).

    Raises:
        UsageError: For several models without labels, or a label used twice.
    """
    specs = []
    for value in values or ():
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            label, sep, path = item.partition("=")
            if sep and _LABEL.match(label) and path:
                specs.append(DprModelSpec(path, label))
            else:
                specs.append(DprModelSpec(item))
    if len(specs) > 1 and any(s.label is None for s in specs):
        raise UsageError("--dpr_model: give every model a label (LABEL=PATH) when evaluating "
                         "several")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--dpr_model: a label is used twice ({', '.join(names)})")
    return tuple(specs)


def resolve_retrievers(text: str, models: Sequence[DprModelSpec]) -> tuple[str, ...]:
    """The retriever names of ``--retrievers``; ``dpr`` stands for every DPR model.

    Raises:
        UsageError: For an unknown or repeated name, or DPR retrievers without a model.
    """
    tokens = [n.strip() for n in text.split(",") if n.strip()]
    model_names = [m.name for m in models]
    unknown = [n for n in tokens if n not in BASE_RETRIEVERS and n not in model_names]
    if unknown or not tokens:
        choices = ", ".join([*BASE_RETRIEVERS, *(n for n in model_names if n != "dpr")])
        raise UsageError(f"--retrievers: unknown {unknown} (choose among {choices})")
    if not models and ({"dpr", *FUSIONS} & set(tokens)):
        raise UsageError("dpr, hybrid, rrf and fusion need --dpr_model")
    names: list[str] = []
    for token in tokens:
        names.extend(model_names if token == "dpr" else [token])
    if len(set(names)) != len(names):
        raise UsageError("--retrievers: a retriever is listed twice")
    return tuple(names)


def fusion_model(models: Sequence[DprModelSpec], label: str | None) -> DprModelSpec | None:
    """The model whose scores the fusions use: ``--fusion_dpr`` (a label), default the last.

    Raises:
        UsageError: For a label no model has.
    """
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
    searched for each DPR model that has one, as ``(retriever name, folder)``.

    Raises:
        UsageError: For an index without a model, an unknown label, an unlabelled folder with
            several models, or a model given two indexes.
    """
    out: dict[str, str] = {}
    for value in values or ():
        label, sep, folder = value.partition("=")
        labelled = bool(sep and _LABEL.match(label) and folder)
        if not labelled and len(models) != 1:
            raise UsageError(f"--index {value}: give the model's label (LABEL=FOLDER) with "
                             f"{len(models)} --dpr_model")
        spec = next((m for m in models if m.label == label), None) if labelled else models[0]
        if spec is None:
            raise UsageError(f"--index {value}: no --dpr_model has the label {label!r} "
                             f"({', '.join(m.name for m in models)})")
        if spec.name in out:
            raise UsageError(f"--index: two indexes for {spec.name}")
        out[spec.name] = folder if labelled else value
    return tuple(out.items())


def parse_pairs(text: str | None, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--pairs "A>B,C>D"``: the pairs to sign-test, ``A`` being the expected winner.

    Raises:
        UsageError: For a malformed pair or a retriever not evaluated.
    """
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


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how (the flags of ``python -m dpr.evaluate``)."""

    retrievers: tuple[str, ...]
    ctx_file: str | None = None
    qa_file: str | None = None
    squad: str | None = None
    relevance: str | None = None
    match: str = "string"
    dpr_models: tuple[DprModelSpec, ...] = ()
    fusion_dpr: str | None = None
    pretrained_model_cfg: str | None = None
    pretrained_file: str | None = None
    do_lower_case: bool = False  # plain encoder folders only (untrained bi-encoders)
    sequence_length: int = 512  # plain encoder folders only
    pooling: str | None = None  # plain encoder folders only: the recipe flags (None = the
    similarity: str | None = None  # folder's sentence-transformers recipe, else DPR's)
    query_prefix: str | None = None
    passage_prefix: str | None = None
    fp16: bool = False  # mixed-precision encoding (`dpr.utils.device.autocast_dtype`)
    amp_dtype: str = "auto"
    sbert_model: str | None = None
    batch_size: int = 32
    device: str | None = None  # `dpr.utils.device.select_device`
    allow_unsafe_pickle: bool = False
    indexes: tuple[tuple[str, str], ...] = ()  # (DPR retriever name, saved index folder)
    nprobe: int | None = None
    ef_search: int | None = None
    validation_workers: int = 1
    hybrid_lambda: float = 1.1
    fusion_method: str | None = None
    fusion_weight: float | None = None
    tune_lambda_on: str | None = None
    tune: tuple[str, ...] = TUNABLE_FUSIONS
    tune_metric: str = DEFAULT_TUNE_METRIC
    fusion_depth: int = 2000
    rrf_k: int = 60
    bm25: BM25Settings = field(default_factory=BM25Settings)
    n_docs: int = 100
    trec_dir: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    quiet: bool = False
    command: str = ""

    @property
    def encoder_cli(self) -> dict[str, Any]:
        """The encoder flags given to `dpr.inference.load_encoder` (paths for checkpoints; the
        rest for plain model folders, checkpoints and exports carrying their own)."""
        return {"pretrained_model_cfg": self.pretrained_model_cfg,
                "pretrained_file": self.pretrained_file, "do_lower_case": self.do_lower_case,
                "sequence_length": self.sequence_length, "pooling": self.pooling,
                "similarity": self.similarity, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix}

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

    def index_of(self, spec: DprModelSpec) -> str | None:
        """The saved index folder searched for a DPR model (None: encode the corpus)."""
        return dict(self.indexes).get(spec.name)

    def wants(self, *names: str) -> bool:
        """Whether any retriever of ``names`` was asked for."""
        return any(name in self.retrievers for name in names)
