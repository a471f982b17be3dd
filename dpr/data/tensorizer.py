"""Text to token-id tensors, and the tokenizer factory.

Tokenizer choice (`build_tokenizer`):
- `hf_bert`: BERT WordPiece tokenizer of the folder.
- `hf_roberta`, `fairseq_roberta`: CamemBERT's SentencePiece tokenizer when the folder holds
  `sentencepiece.bpe.model`, its tokenizer config names a CamemBERT tokenizer, or its path
  contains "camembert" (any case); RoBERTa's byte-level BPE tokenizer otherwise.

`do_lower_case` means exactly one thing here: the text (questions, titles and passages) is
lower-cased with `str.lower()` before tokenization, for every tokenizer. The tokenizer's own
normalisation (e.g. an uncased BERT vocabulary's lowercasing and accent stripping) stays as
saved in its folder. The choice is stored in checkpoints and applied again at inference.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    BertTokenizerFast,
    CamembertTokenizerFast,
    PreTrainedTokenizerBase,
    RobertaTokenizerFast,
)

from dpr.utils.errors import InputError, UsageError

logger = logging.getLogger(__name__)

SENTENCEPIECE_FILE = "sentencepiece.bpe.model"


def is_camembert_folder(path: str) -> bool:
    """Tells whether a tokenizer folder (or hub name) holds a CamemBERT tokenizer."""
    folder = Path(path)
    if (folder / SENTENCEPIECE_FILE).is_file():
        return True
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            cls = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") or ""
        except (OSError, json.JSONDecodeError):
            cls = ""
        if cls.lower().startswith("camembert"):
            return True
    return "camembert" in os.fspath(path).lower()


def build_tokenizer(encoder_model_type: str, pretrained_model_cfg: str) -> PreTrainedTokenizerBase:
    """Loads the tokenizer that matches an encoder type.

    Args:
        encoder_model_type: `hf_bert`, `hf_roberta` or `fairseq_roberta`.
        pretrained_model_cfg: Tokenizer folder (or hub name where a hub is reachable).

    Returns:
        A fast Hugging Face tokenizer.
    """
    if not pretrained_model_cfg:
        raise UsageError("--pretrained_model_cfg is required to build the tokenizer")
    if encoder_model_type == "hf_bert":
        cls = BertTokenizerFast
    elif is_camembert_folder(pretrained_model_cfg):
        cls = CamembertTokenizerFast
    else:
        cls = RobertaTokenizerFast
    logger.info("Tokenizer %s from %s", cls.__name__, pretrained_model_cfg)
    return cls.from_pretrained(pretrained_model_cfg)


def strip_question_mark(question: str) -> str:
    """Removes one trailing '?' as DPR does at training time (and we do at inference too)."""
    return question[:-1] if question.endswith("?") else question


class Tensorizer:
    """Turns texts and (title, text) pairs into padded id tensors and attention masks.

    Sequences get the tokenizer's special tokens (`[CLS] title [SEP] text [SEP]` for BERT,
    `<s> title </s></s> text </s>` for RoBERTa/CamemBERT), are truncated to `max_length`
    ("longest_first" for pairs) and right-padded with the tokenizer's pad id. The attention
    mask is `ids != pad_token_id`.

    Args:
        tokenizer: A Hugging Face tokenizer.
        max_length: DPR's `--sequence_length`.
        lowercase: DPR's `--do_lower_case` (see the module docstring).
        pad_to_max: Pad every tensor to `max_length` (DPR's behaviour) instead of to the
            longest sequence of the batch.
        pad_to_multiple_of: With dynamic padding, round the length up to a multiple of this.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        lowercase: bool = False,
        pad_to_max: bool = True,
        pad_to_multiple_of: int = 1,
    ) -> None:
        if tokenizer.pad_token_id is None:
            raise InputError(f"tokenizer {type(tokenizer).__name__} has no pad token")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.lowercase = lowercase
        self.pad_to_max = pad_to_max
        self.pad_to_multiple_of = pad_to_multiple_of

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def _norm(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def encode(self, texts: Sequence[str], titles: Sequence[str] | None = None) -> list[list[int]]:
        """Tokenizes texts (with their titles when truthy) into unpadded id lists.

        Args:
            texts: Passage or question texts; surrounding whitespace is stripped.
            titles: Optional titles, one per text; empty titles mean no title.

        Returns:
            One id list per text, at most `max_length` long, special tokens included.
        """
        texts = [self._norm(t.strip()) for t in texts]
        titles = [self._norm(t) if t else "" for t in titles] if titles else [""] * len(texts)
        out: list[list[int] | None] = [None] * len(texts)
        kwargs = {"truncation": "longest_first", "max_length": self.max_length,
                  "add_special_tokens": True, "return_token_type_ids": False,
                  "return_attention_mask": False}
        single = [i for i, t in enumerate(titles) if not t]
        pair = [i for i, t in enumerate(titles) if t]
        if single:
            ids = self.tokenizer([texts[i] for i in single], **kwargs)["input_ids"]
            for i, seq in zip(single, ids):
                out[i] = seq
        if pair:
            ids = self.tokenizer([titles[i] for i in pair], [texts[i] for i in pair],
                                 **kwargs)["input_ids"]
            for i, seq in zip(pair, ids):
                out[i] = seq
        return out  # type: ignore[return-value]

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pads id lists into a tensor and builds the attention mask.

        Returns:
            ids [N × L] int64 and mask [N × L] bool, L = `max_length` when `pad_to_max`,
            else the longest sequence rounded up to `pad_to_multiple_of` (at most
            `max_length`).
        """
        if self.pad_to_max:
            width = self.max_length
        else:
            longest = max((len(s) for s in sequences), default=1)
            step = self.pad_to_multiple_of
            width = min(self.max_length, -(-longest // step) * step)
        ids = torch.full((len(sequences), max(width, 1)), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        return ids, ids != self.pad_id

    def tensorize(
        self, texts: Sequence[str], titles: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode` then `pad`: ids [N × L] and mask [N × L]."""
        return self.pad(self.encode(texts, titles))


def build_tensorizer(
    encoder_model_type: str,
    pretrained_model_cfg: str,
    *,
    sequence_length: int,
    do_lower_case: bool,
    pad_to_max: bool = True,
    pad_to_multiple_of: int = 1,
) -> Tensorizer:
    """Tokenizer factory + `Tensorizer` in one call (see `build_tokenizer`)."""
    tokenizer = build_tokenizer(encoder_model_type, pretrained_model_cfg)
    return Tensorizer(tokenizer, max_length=sequence_length, lowercase=do_lower_case,
                      pad_to_max=pad_to_max, pad_to_multiple_of=pad_to_multiple_of)
