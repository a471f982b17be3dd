"""The one input recipe: how questions and passages become model inputs in training
(`build_batch`), inference (`dpr.inference`) and the export check (`dpr2hf.verify`), so that
they cannot drift apart. The rules are those docs/DPR2HF.md ("Using the exported models") gives
users: a question loses one trailing '?' (DPR's training-time rule), then surrounding spaces; a
passage is a `(title, text)` pair, its text stripped, its title kept as is, an empty title
meaning the text alone (with `passage_format` joined: one string `title + " " + text`, what
E5 was pretrained on); a prefix goes before the question, or before the title (the text
without one), as sentence-transformers puts a prompt before a pair or a text; `do_lower_case`
lower-cases every text, prefix included, as sentence-transformers' lower-casing tokenizer does,
so that an exported model computes what training did. A reranker reads a (question, passage)
pair at once (`prepare_pair`): the question as written (stripped: no '?' removed, no prefix),
the passage as one string, `title + " " + text` (the text alone when untitled), both
lower-cased with `do_lower_case`, so that an exported `CrossEncoder` gets the same scores from
`predict([(question, f"{title} {text}")])`. `encode_in_batches` runs any
`(ids, mask) -> vectors` function over prepared items in batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from tqdm import tqdm

from dpr.recipe import PassageFormat

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from dpr.recipe import Recipe

# A prepared input: a question or title-less passage text, or a (title, text) pair.
Item = str | tuple[str, str]
# A passage as every tool passes it: (title, text); "" = no title.
PassageText = tuple[str, str]

# Items tokenized at a time by `encode_in_batches` when sorting by length (bounds memory).
SORT_WINDOW_BATCHES = 64


class ItemTokenizer(Protocol):
    """What `encode_in_batches` needs: a `Tensorizer` (`dpr.data.tensorizer`)."""

    def encode_items(self, items: Sequence[Item]) -> list[list[int]]: ...

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]: ...


def strip_question_mark(question: str) -> str:
    """Removes one trailing '?' as DPR does at training time (and we do at inference too)."""
    return question[:-1] if question.endswith("?") else question


def _case(text: str, recipe: Recipe) -> str:
    return text.lower() if recipe.do_lower_case else text


def prepare_question(question: str, recipe: Recipe) -> str:
    """A question as training saw it (module docstring)."""
    return _case(recipe.query_prefix + strip_question_mark(question).strip(), recipe)


def prepare_passage(passage: PassageText, recipe: Recipe) -> Item:
    """A `(title, text)` passage as training saw it (module docstring)."""
    title, text = passage
    text = (text or "").strip()
    if title and recipe.passage_format == PassageFormat.PAIR:
        return _case(recipe.passage_prefix + title, recipe), _case(text, recipe)
    if title:
        text = f"{title} {text}"
    return _case(recipe.passage_prefix + text, recipe)


def question_items(questions: Sequence[str], recipe: Recipe) -> list[Item]:
    """Prepared questions."""
    return [prepare_question(q, recipe) for q in questions]


def passage_items(passages: Sequence[PassageText], recipe: Recipe) -> list[Item]:
    """Prepared `(title, text)` passages."""
    return [prepare_passage(p, recipe) for p in passages]


def prepare_pair(question: str, passage: PassageText, recipe: Recipe) -> tuple[str, str]:
    """A (question, `(title, text)` passage) pair as the reranker reads it (module docstring)."""
    title, text = passage
    text = (text or "").strip()
    return _case(question.strip(), recipe), _case(f"{title} {text}" if title else text, recipe)


def pair_items(pairs: Sequence[tuple[str, PassageText]], recipe: Recipe) -> list[Item]:
    """Prepared (question, `(title, text)` passage) pairs: the tokenizer's text pairs."""
    return [prepare_pair(q, p, recipe) for q, p in pairs]


def tokenize(tokenizer: PreTrainedTokenizerBase, items: Sequence[Item], *,
             max_length: int) -> list[list[int]]:
    """One unpadded id list per prepared item (`question_items` / `passage_items`), special
    tokens added, at most `max_length` long (`longest_first` truncation for pairs): one
    tokenizer call, texts and pairs mixed (fast and slow tokenizers take each item as a text
    or a pair; the same ids as tokenizing texts and pairs apart, checked on BERT, RoBERTa,
    CamemBERT and XLM-R tokenizers)."""
    if not items:  # a fast tokenizer fails on an empty batch
        return []
    ids = tokenizer(list(items), truncation="longest_first", max_length=max_length,
                    add_special_tokens=True, return_token_type_ids=False,
                    return_attention_mask=False)["input_ids"]
    return [list(seq) for seq in ids]


def _windows(tensorizer: ItemTokenizer, items: Sequence[Item], window: int,
             prefetch: bool) -> Iterator[tuple[int, list[list[int]]]]:
    """(start, token ids) of consecutive windows of `items`; with `prefetch` the next window
    is tokenized in a thread while the caller encodes the current one (fast tokenizers release
    the GIL), so tokenization leaves the critical path."""
    starts = range(0, len(items), window)
    if not prefetch or len(starts) < 2:
        for start in starts:
            yield start, tensorizer.encode_items(items[start:start + window])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
        pending = pool.submit(tensorizer.encode_items, items[0:window])
        for start in starts:
            ids = pending.result()
            if start + window < len(items):
                pending = pool.submit(tensorizer.encode_items,
                                      items[start + window:start + 2 * window])
            yield start, ids


def _padded_on(tensorizer: ItemTokenizer, ids: list[list[int]],
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids and mask [B × T] of one batch, sent to `device` (pinned for a GPU)."""
    batch, mask = tensorizer.pad(ids)
    if device.type == "cuda":
        batch, mask = batch.pin_memory(), mask.pin_memory()
    return batch.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def encode_in_batches(encode_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      tensorizer: ItemTokenizer, items: Sequence[Item], *, dim: int,
                      batch_size: int, device: torch.device | str = "cpu",
                      sort_by_length: bool = True, amp_dtype: torch.dtype | None = None,
                      prefetch: bool = True, desc: str = "Encoding",
                      quiet: bool = True) -> np.ndarray:
    """Vectors of prepared items, computed `batch_size` at a time without gradients.

    Args:
        encode_fn: ids [B × T], mask [B × T] on `device` → vectors [B × D].
        items: Prepared inputs (`question_items` / `passage_items`).
        dim: D, the vector size (for the empty case).
        sort_by_length: Batch items of similar token length together (less padding), in
            windows of `SORT_WINDOW_BATCHES` batches; rows come back in the input order.
            False encodes in input order (one window per batch).
        amp_dtype: Run `encode_fn` under autocast in this dtype (None: the model's own).
        prefetch: Tokenize the next window in a thread while encoding the current one.
        quiet: No progress bar.

    Returns:
        float32 [N × D], row i for item i.
    """
    out = np.zeros((len(items), dim), dtype=np.float32)
    device = torch.device(device)
    window = batch_size * (SORT_WINDOW_BATCHES if sort_by_length else 1)
    pending: tuple[list[int], torch.Tensor] | None = None

    def collect() -> None:  # copies the previous batch back once the next one is queued
        if pending is not None:
            out[pending[0]] = pending[1].float().cpu().numpy()

    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast, tqdm(total=len(items), desc=desc, unit=" texts",
                                                disable=quiet) as bar:
        for start, ids in _windows(tensorizer, items, window, prefetch):
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i])) if sort_by_length \
                else list(range(len(ids)))
            for first in range(0, len(order), batch_size):
                rows = order[first:first + batch_size]
                vectors = encode_fn(*_padded_on(tensorizer, [ids[i] for i in rows],
                                                device))  # [B × D]
                collect()
                pending = ([start + i for i in rows], vectors)
                bar.update(len(rows))
        collect()
    return out
