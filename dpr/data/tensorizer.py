"""Tokenizer choice (`build_tokenizer`) and `Tensorizer`, the input recipe (`dpr.data.recipe`)
bound to a tokenizer.

A folder gets its own fast tokenizer, as `AutoTokenizer` resolves it; our one rule is for the
folders it cannot read: a fairseq folder (`sentencepiece.bpe.model` without a tokenizer
configuration or a `model_type`, as the 2020 blog's `camembert-base`) is read as CamemBERT.
`do_lower_case` is applied by the recipe (`str.lower()`, for every tokenizer); a BERT tokenizer
of an `hf_bert` model also gets it as its own `do_lower_case` (accent stripping following it),
as DPR's `BertTokenizer.from_pretrained(cfg, do_lower_case=...)` did.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub.errors import HFValidationError
from transformers import (
    AutoTokenizer,
    BertTokenizerFast,
    CamembertTokenizerFast,
    PreTrainedTokenizerBase,
)

from dpr.data.recipe import Item, tokenize
from dpr.recipe import Recipe
from dpr.utils.errors import InputError, UsageError

logger = logging.getLogger(__name__)


def _no_mistral_false_alarm(record: logging.LogRecord) -> bool:
    """Drops transformers' "incorrect regex pattern ... set fix_mistral_regex=True" warning.

    transformers 4.57.3 to 4.57.x print it for any local tokenizer folder saved by those
    versions whatever its model (transformers issue 42591, fixed in later releases); it is
    about Mistral's pre-tokenizer, which none of the encoders this project loads (BERT,
    RoBERTa, XLM-R, CamemBERT) uses.
    """
    return "fix_mistral_regex" not in record.getMessage()


logging.getLogger("transformers.tokenization_utils_base").addFilter(_no_mistral_false_alarm)

SENTENCEPIECE_FILE = "sentencepiece.bpe.model"


class TokenizerError(InputError):
    """A tokenizer folder that cannot be loaded or used; the message names it."""


def is_fairseq_folder(path: str | os.PathLike[str]) -> bool:
    """A fairseq SentencePiece folder, read as CamemBERT: `sentencepiece.bpe.model` without a
    tokenizer configuration or a `config.json` naming a `model_type`."""
    folder = Path(path)
    if not (folder / SENTENCEPIECE_FILE).is_file() or (folder / "tokenizer_config.json").exists():
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not (isinstance(config, dict) and config.get("model_type"))


def build_tokenizer(encoder_model_type: str, pretrained_model_cfg: str, *,
                    do_lower_case: bool | None = None, **kwargs: Any) -> PreTrainedTokenizerBase:
    """The folder's own fast tokenizer (module docstring).

    Args:
        do_lower_case: For a BERT tokenizer of `hf_bert`, its own lowercasing (None: as saved).
        kwargs: Other `from_pretrained` settings (`model_max_length`...).

    Raises:
        UsageError: Without a folder.
        TokenizerError: If the folder holds no loadable tokenizer.
    """
    if not pretrained_model_cfg:
        raise UsageError("--pretrained_model_cfg is required to build the tokenizer")
    try:
        if is_fairseq_folder(pretrained_model_cfg):
            tokenizer = CamembertTokenizerFast.from_pretrained(pretrained_model_cfg, **kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(pretrained_model_cfg, **kwargs)
            if encoder_model_type == "hf_bert" and isinstance(tokenizer, BertTokenizerFast) \
                    and do_lower_case is not None and tokenizer.do_lower_case != do_lower_case:
                tokenizer = AutoTokenizer.from_pretrained(
                    pretrained_model_cfg, do_lower_case=bool(do_lower_case), **kwargs)
    except (OSError, ValueError, HFValidationError) as err:
        raise TokenizerError(f"cannot load a tokenizer from {pretrained_model_cfg!r} (pass "
                             f"--pretrained_model_cfg): {str(err).splitlines()[0]}") from err
    logger.info("Tokenizer %s from %s", type(tokenizer).__name__, pretrained_model_cfg)
    return tokenizer


class Tensorizer:
    """The recipe bound to one tokenizer (`self.recipe`: `max_length` is `--sequence_length`,
    `lowercase` `--do_lower_case`): prepared items (`question_items` / `passage_items`), its
    one way in, to ids with the tokenizer's special tokens, truncated to `max_length`
    (`longest_first` for pairs) and right-padded with its pad id; the mask is
    `ids != pad_token_id`. `pad_to_max` pads to `max_length` (DPR's), else to the longest row
    rounded up to `pad_to_multiple_of`.

    Raises:
        TokenizerError: If the tokenizer has no pad token.
        UsageError: A prefix that leaves no room for the text within `max_length`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, max_length: int,
                 lowercase: bool = False, query_prefix: str = "", passage_prefix: str = "",
                 passage_format: str = "pair", pad_to_max: bool = True,
                 pad_to_multiple_of: int = 1) -> None:
        if tokenizer.pad_token_id is None:
            raise TokenizerError(f"tokenizer {type(tokenizer).__name__} has no pad token")
        self.tokenizer = tokenizer
        self.recipe = Recipe(do_lower_case=lowercase, sequence_length=max_length,
                             query_prefix=query_prefix or "",
                             passage_prefix=passage_prefix or "", passage_format=passage_format)
        self.pad_to_max = pad_to_max
        self.pad_to_multiple_of = pad_to_multiple_of
        # Tokenizing in one call and padding in another is deliberate (length buckets, the
        # next window tokenized while this one is encoded): no advice to call __call__.
        tokenizer.deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True
        self._check_prefixes()

    def _check_prefixes(self) -> None:
        for flag, prefix in (("query_prefix", self.recipe.query_prefix),
                             ("passage_prefix", self.recipe.passage_prefix)):
            if not prefix:
                continue
            used = len(self.tokenizer(prefix + "x", add_special_tokens=True)["input_ids"])
            if used > self.max_length:
                raise UsageError(f"--{flag} {prefix!r} leaves no room for the text: with the "
                                 f"special tokens it takes {used - 1} of the "
                                 f"{self.max_length} tokens of --sequence_length")

    @property
    def max_length(self) -> int:
        return self.recipe.sequence_length

    def encode_items(self, items: Sequence[Item]) -> list[list[int]]:
        """Unpadded token ids of prepared items (`dpr.data.recipe.tokenize`)."""
        return tokenize(self.tokenizer, items, max_length=self.max_length)

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pads id lists with the tokenizer (`tokenizer.pad`).

        Returns:
            ids [N × L] int64 and mask [N × L] bool, L = `max_length` when `pad_to_max`,
            else the longest sequence rounded up to `pad_to_multiple_of` (at most
            `max_length`).
        """
        if not sequences:
            return torch.zeros((0, 1), dtype=torch.long), torch.zeros((0, 1), dtype=torch.bool)
        longest = max(len(s) for s in sequences)
        step = self.pad_to_multiple_of
        if self.pad_to_max or -(-longest // step) * step > self.max_length:
            width = {"padding": "max_length", "max_length": self.max_length}
        else:
            width = {"padding": "longest", "pad_to_multiple_of": step}
        # Lists back (not return_tensors="pt", whose checks took 8x the padding), then numpy.
        batch = self.tokenizer.pad({"input_ids": [list(s) for s in sequences]}, **width)
        return (torch.from_numpy(np.array(batch["input_ids"], dtype=np.int64)),
                torch.from_numpy(np.array(batch["attention_mask"], dtype=np.bool_)))

    def tensorize(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_items` then `pad`: ids [N × L] and mask [N × L]."""
        return self.pad(self.encode_items(items))


def build_tensorizer(encoder_model_type: str, pretrained_model_cfg: str, *, sequence_length: int,
                     do_lower_case: bool, query_prefix: str = "", passage_prefix: str = "",
                     passage_format: str = "pair", pad_to_max: bool = True,
                     pad_to_multiple_of: int = 1) -> Tensorizer:
    """Tokenizer factory + `Tensorizer` in one call (see `build_tokenizer`)."""
    tokenizer = build_tokenizer(encoder_model_type, pretrained_model_cfg,
                                do_lower_case=do_lower_case)
    return Tensorizer(tokenizer, max_length=sequence_length, lowercase=do_lower_case,
                      query_prefix=query_prefix, passage_prefix=passage_prefix,
                      passage_format=passage_format, pad_to_max=pad_to_max,
                      pad_to_multiple_of=pad_to_multiple_of)


def tensorizer_for(params: Mapping[str, Any], *, pad_to_max: bool = False,
                   pad_to_multiple_of: int = 8) -> Tensorizer:
    """The training tensorizer of resolved encoder parameters (a checkpoint's, see
    `dpr.models.checkpoint.resolve_encoder_params`), with inference's dynamic padding."""
    recipe = Recipe.from_params(params)
    return build_tensorizer(
        params["encoder_model_type"], params["pretrained_model_cfg"] or params["pretrained_file"],
        sequence_length=recipe.sequence_length, do_lower_case=recipe.do_lower_case,
        query_prefix=recipe.query_prefix, passage_prefix=recipe.passage_prefix,
        passage_format=recipe.passage_format, pad_to_max=pad_to_max,
        pad_to_multiple_of=pad_to_multiple_of)


def export_tensorizer(folder: str | os.PathLike[str], params: Mapping[str, Any], *,
                      use_fast: bool = True, pad_to_multiple_of: int = 8) -> Tensorizer:
    """The tensorizer of an exported tower folder (`dpr2hf`): its own tokenizer
    (`AutoTokenizer`) with the recipe of its `dpr` config entry (`params`)."""
    recipe = Recipe.from_params(params)
    return Tensorizer(AutoTokenizer.from_pretrained(folder, use_fast=use_fast),
                      max_length=recipe.sequence_length, lowercase=recipe.do_lower_case,
                      query_prefix=recipe.query_prefix, passage_prefix=recipe.passage_prefix,
                      passage_format=recipe.passage_format, pad_to_max=False,
                      pad_to_multiple_of=pad_to_multiple_of)
