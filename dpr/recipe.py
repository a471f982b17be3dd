"""The encoder's recipe, declared once: how a model turns text into vectors and compares them.

DPR's (first token, raw dot product, no prefix, two towers) is the default; models such as
multilingual-e5 were trained otherwise and lose what makes them good under it (the README's
"A model's own recipe"). `Recipe`'s fields are the flags (`dpr.utils.options.opt`), the
entries a checkpoint's `encoder_params` store when they differ from DPR's (`stored`: DPR's
own command keeps writing DPR's six keys; an absent entry is DPR's value, `from_params`), and
those of an export (`config.json`'s `dpr` entry, its sentence-transformers files). The text
side is applied by `dpr.data.recipe`, the vector side by `dpr.models.encoder`, the temperature
by the loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dpr.utils.errors import UsageError
from dpr.utils.options import at_least, opt


class Pooling(StrEnum):
    """How a sequence's hidden states become one vector."""

    CLS = "cls"  # the first token's state (DPR)
    MEAN = "mean"  # the mean over the non-padding tokens (sentence-transformers, E5)


class Similarity(StrEnum):
    """How question and passage vectors are compared."""

    DOT = "dot"  # raw inner product (DPR)
    COSINE = "cosine"  # inner product of L2-normalised vectors


class PassageFormat(StrEnum):
    """How a (title, text) passage becomes the model's input."""

    PAIR = "pair"  # the tokenizer's pair (title, text) (DPR)
    JOINED = "joined"  # one string "title text" (what E5 was pretrained on)


POOLINGS = tuple(p.value for p in Pooling)
SIMILARITIES = tuple(s.value for s in Similarity)
PASSAGE_FORMATS = tuple(f.value for f in PassageFormat)
# The temperature of a cosine recipe trained without --temperature: sentence-transformers'
# MultipleNegativesRankingLoss (scale 20 = 1 / 0.05).
COSINE_TEMPERATURE = 0.05
_STORED = "Stored in checkpoints and exports, which apply their own."


@dataclass(frozen=True)
class Recipe:
    """The recipe a model is trained and applied with (defaults: DPR's)."""

    do_lower_case: bool = opt(
        False, "Lower-case every text, prefix included, with str.lower() before tokenization "
        f"(a BERT tokenizer also gets it as its own do_lower_case, DPR's meaning). {_STORED}")
    sequence_length: int = opt(
        512, "Maximum length in tokens of questions and passages, special tokens included (a "
        f"plain model folder: 512, or its position limit when lower). {_STORED}",
        type=at_least(4))
    pooling: str = opt(
        Pooling.CLS.value, "How hidden states become one vector: cls (the first token, DPR's) "
        "or mean (over the non-padding tokens). Default: a sentence-transformers folder's own "
        f"pooling, else cls. {_STORED}", choices=POOLINGS)
    similarity: str = opt(
        Similarity.DOT.value, "dot (raw dot product, DPR's) or cosine (the encoder "
        "L2-normalises its vectors). Default: cosine for a sentence-transformers folder that "
        f"normalises or declares it, else dot. {_STORED}", choices=SIMILARITIES)
    query_prefix: str = opt(
        "", "Text put before every question, e.g. 'query: ' for multilingual-e5. Default: a "
        f"sentence-transformers folder's 'query' prompt, else none. {_STORED}")
    passage_prefix: str = opt(
        "", "Text put before every passage (before its title when it has one), e.g. "
        "'passage: '. Default: the folder's 'passage' (or 'document') prompt, else none. "
        f"{_STORED}")
    passage_format: str = opt(
        PassageFormat.PAIR.value, "How a passage is given to the model: pair (the tokenizer's "
        "pair (title, text), DPR's) or joined (one string: the prefix, the title, a space, the "
        f"text; what multilingual-e5 was pretrained on). {_STORED}", choices=PASSAGE_FORMATS)
    temperature: float | None = opt(
        None, "Training: the loss divides scores by this (contrastive temperature). Default: 1 "
        f"with dot; {COSINE_TEMPERATURE} with cosine (sentence-transformers' "
        "MultipleNegativesRankingLoss scale 20; multilingual-e5 was trained at 0.01), logged.")
    shared_encoder: bool = opt(
        False, "Training: one encoder for questions and passages instead of DPR's two towers "
        "(checkpoints keep both key prefixes, holding the same weights).")
    freeze_embeddings: bool = opt(
        False, "Training: keep each encoder's word-embedding matrix fixed: less memory and "
        "optimizer work for multilingual models (96M of multilingual-e5-small's 118M "
        "parameters are its 250k-row embedding matrix); everything else trains. Stored in "
        "checkpoints, so that a resumed run stays frozen.")

    def __post_init__(self) -> None:
        for name, choices in (("pooling", POOLINGS), ("similarity", SIMILARITIES),
                              ("passage_format", PASSAGE_FORMATS)):
            if getattr(self, name) not in choices:
                raise UsageError(f"--{name} must be one of {', '.join(choices)}, got "
                                 f"{getattr(self, name)!r}")
        t = self.temperature
        if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise UsageError(f"--temperature must be a positive number, got {t}")
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"--{name} must be a string, got {getattr(self, name)!r}")
        if self.sequence_length < 4:
            raise UsageError(f"--sequence_length must be >= 4, got {self.sequence_length}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Recipe:
        """The recipe of encoder parameters (a checkpoint's `encoder_params`, an export's `dpr`
        entry, flags): absent or None entries are DPR's."""
        given = {f.name: params.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in given.items() if v is not None})

    @property
    def normalize(self) -> bool:
        """Whether the encoder L2-normalises its vectors."""
        return self.similarity == Similarity.COSINE

    @property
    def score_temperature(self) -> float:
        """What the training loss divides scores by (see `temperature`)."""
        if self.temperature is not None:
            return float(self.temperature)
        return COSINE_TEMPERATURE if self.normalize else 1.0

    def stored(self) -> dict[str, Any]:
        """The entries a checkpoint or an export stores: those that differ from DPR's."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def describe(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.pooling} pooling", self.similarity]
        if self.temperature is not None:
            parts[-1] += f" / temperature {self.temperature:g}"
        if self.query_prefix or self.passage_prefix:
            parts.append(f"prefixes {self.query_prefix!r} / {self.passage_prefix!r}")
        if self.passage_format == PassageFormat.JOINED:
            parts.append("joined passages")
        parts.append("shared encoder" if self.shared_encoder else "two towers")
        return ", ".join(parts)


# The recipe entries that matter when a model is applied (the model flags of every tool that
# loads one); the others only shape training.
APPLIED = ("do_lower_case", "sequence_length", "pooling", "similarity", "query_prefix",
           "passage_prefix", "passage_format")
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))
