"""The encoder recipe beyond DPR's: pooling, similarity, temperature, prefixes, shared tower.

DPR (2020) represents a text by its first token, scores by raw dot product, adds no prefix and
trains two towers. Models such as multilingual-e5 or the sentence-transformers family were
trained otherwise (mean pooling, L2-normalised vectors compared by cosine with a contrastive
temperature, text prefixes such as `query: ` / `passage: `, one encoder for both sides);
fine-tuned or applied by DPR's recipe they lose what makes them good. The recipe therefore
travels with the model:

- training takes it from the flags, else from a sentence-transformers folder's own files
  (`folder_recipe`), else DPR's defaults (`RECIPE_DEFAULTS`);
- a checkpoint stores, in `encoder_params`, only the entries that differ from DPR's defaults,
  so that DPR's own command keeps writing exactly DPR's six keys and an absent entry means
  DPR's value;
- every tool that loads a model applies the same recipe (`dpr.inference`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


class Pooling(StrEnum):
    """How a sequence's hidden states become one vector."""

    CLS = "cls"  # the first token's state (DPR)
    MEAN = "mean"  # the mean over the non-padding tokens (sentence-transformers, E5)


class Similarity(StrEnum):
    """How question and passage vectors are compared."""

    DOT = "dot"  # raw inner product (DPR)
    COSINE = "cosine"  # inner product of L2-normalised vectors


POOLINGS = tuple(p.value for p in Pooling)
SIMILARITIES = tuple(s.value for s in Similarity)
# DPR's recipe; a checkpoint stores only the entries that differ from these.
RECIPE_DEFAULTS: dict[str, Any] = {
    "pooling": Pooling.CLS.value, "similarity": Similarity.DOT.value, "temperature": None,
    "query_prefix": "", "passage_prefix": "", "shared_encoder": False}
RECIPE_KEYS = tuple(RECIPE_DEFAULTS)


@dataclass(frozen=True)
class EncoderRecipe:
    """The recipe a model is trained and applied with.

    Attributes:
        pooling: `cls` or `mean`.
        similarity: `dot` or `cosine` (cosine: vectors are L2-normalised by the encoder).
        temperature: The training scores are divided by it (None: 1 for `dot`; required for
            `cosine`, whose scores lie in [-1, 1]).
        query_prefix: Text put before every question (e.g. `query: `).
        passage_prefix: Text put before every passage (before its title when it has one).
        shared_encoder: One encoder for questions and passages.
    """

    pooling: str = Pooling.CLS.value
    similarity: str = Similarity.DOT.value
    temperature: float | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    shared_encoder: bool = False

    def __post_init__(self) -> None:
        check_recipe(asdict(self))

    @property
    def normalize(self) -> bool:
        """Whether the encoder L2-normalises its vectors."""
        return self.similarity == Similarity.COSINE

    @property
    def score_temperature(self) -> float:
        """What the training loss divides scores by."""
        return 1.0 if self.temperature is None else float(self.temperature)

    def stored(self) -> dict[str, Any]:
        """The entries a checkpoint stores: those that differ from DPR's defaults."""
        return {k: v for k, v in asdict(self).items() if v != RECIPE_DEFAULTS[k]}

    def describe(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.pooling} pooling", self.similarity]
        if self.temperature is not None:
            parts[-1] += f" / temperature {self.temperature:g}"
        if self.query_prefix or self.passage_prefix:
            parts.append(f"prefixes {self.query_prefix!r} / {self.passage_prefix!r}")
        parts.append("shared encoder" if self.shared_encoder else "two towers")
        return ", ".join(parts)


def check_recipe(values: Mapping[str, Any], *, training: bool = False) -> None:
    """Validates recipe values (None entries = not given, not checked).

    Args:
        values: Recipe entries.
        training: Also require a temperature with cosine (the loss needs one; applying a
            model does not).

    Raises:
        UsageError: Naming the flag.
    """
    pooling, similarity = values.get("pooling"), values.get("similarity")
    if pooling is not None and pooling not in POOLINGS:
        raise UsageError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if similarity is not None and similarity not in SIMILARITIES:
        raise UsageError(f"--similarity must be one of {', '.join(SIMILARITIES)}, got "
                         f"{similarity!r}")
    temperature = values.get("temperature")
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a positive number, got {temperature}")
    if training and similarity == Similarity.COSINE and temperature is None:
        raise UsageError("--similarity cosine needs --temperature: cosine scores lie in "
                         "[-1, 1] and the loss needs them sharpened (0.01 to 0.05 are usual; "
                         "sentence-transformers' default is 0.05, multilingual-e5 was trained "
                         "at 0.01)")
    for name in ("query_prefix", "passage_prefix"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise UsageError(f"--{name} must be a string, got {values[name]!r}")


def recipe_of(params: Mapping[str, Any]) -> EncoderRecipe:
    """The recipe of resolved encoder parameters (absent or None entries: DPR's defaults)."""
    values = {k: params.get(k) for k in RECIPE_KEYS}
    values = {k: RECIPE_DEFAULTS[k] if v is None else v for k, v in values.items()}
    values["shared_encoder"] = bool(values["shared_encoder"])
    return EncoderRecipe(**values)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None


# Prompt names used for passages by sentence-transformers models, in order of preference.
PASSAGE_PROMPT_NAMES = ("passage", "document", "corpus", "search_document")
QUERY_PROMPT_NAMES = ("query", "search_query")
# Families whose prefixes are part of the model but which hub copies may not declare as
# sentence-transformers prompts: recognised by the name the folder's config.json records.
KNOWN_PREFIXES = ((re.compile(r"(^|[/_-])(multilingual-)?e5-(small|base|large)(-v2)?($|[/_-])",
                              re.IGNORECASE), "query: ", "passage: "),)


def _known_prefixes(folder: Path) -> dict[str, str]:
    """The prefixes of a known family (E5) when its config.json or folder name says so."""
    config = _read_json(folder / "config.json") or {}
    names = [str(config.get("_name_or_path") or ""), folder.name]
    for pattern, query, passage in KNOWN_PREFIXES:
        if any(pattern.search(name) for name in names):
            return {"query_prefix": query, "passage_prefix": passage}
    return {}


def folder_recipe(path: str | None) -> dict[str, Any]:
    """The recipe a sentence-transformers folder declares (empty for any other folder).

    Read from `modules.json` (a `Pooling` module's mode, a `Normalize` module) and
    `config_sentence_transformers.json` (`prompts`, `similarity_fn_name`). A copy of an E5
    model (its `config.json` or folder named `multilingual-e5-small`, `e5-base-v2`...) that
    declares no prompts gets E5's `query: ` / `passage: `, which those models need.

    Returns:
        Some of `pooling`, `similarity`, `query_prefix`, `passage_prefix`.
    """
    if not path:
        return {}
    folder = Path(path)
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return {}
    found: dict[str, Any] = {}
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            pooling = _read_json(folder / str(module.get("path", "")) / "config.json") or {}
            if pooling.get("pooling_mode_mean_tokens"):
                found["pooling"] = Pooling.MEAN.value
            elif pooling.get("pooling_mode_cls_token"):
                found["pooling"] = Pooling.CLS.value
            else:
                logger.warning("%s: its sentence-transformers pooling (%s) is neither cls nor "
                               "mean; pass --pooling", path, pooling)
    st_config = _read_json(folder / "config_sentence_transformers.json") or {}
    normalized = any(t.endswith("Normalize") for t in types)
    if normalized or st_config.get("similarity_fn_name") == "cosine":
        found["similarity"] = Similarity.COSINE.value
    elif st_config.get("similarity_fn_name") == "dot":
        found["similarity"] = Similarity.DOT.value
    prompts = st_config.get("prompts") or {}
    for key, names in (("query_prefix", QUERY_PROMPT_NAMES),
                       ("passage_prefix", PASSAGE_PROMPT_NAMES)):
        for name in names:
            if isinstance(prompts.get(name), str) and prompts[name]:
                found[key] = prompts[name]
                break
    if "query_prefix" not in found and "passage_prefix" not in found:
        known = _known_prefixes(folder)
        if known:
            logger.info("%s: an E5 model without declared prompts: its prefixes %r / %r "
                        "are the defaults", path, known["query_prefix"], known["passage_prefix"])
            found |= known
    return found
