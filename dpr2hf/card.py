"""Model cards (README.md) for exported folders, written from the model's recipe: how the
vectors (a reranker's: the scores) are computed, with snippets that compute them
(`tests/dpr2hf/test_card.py` runs them against the model's own vectors and scores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dpr.recipe import PassageFormat, Pooling, Recipe

QUESTION = "Quel est le plus haut sommet des Alpes ?"
PASSAGE = ("Mont Blanc", "Le mont Blanc culmine à 4 805 mètres.")


@dataclass
class CardInfo:
    """What a model card says about one exported folder."""

    side: str  # "question", "ctx" or "reranker"
    model_class: str
    checkpoint: str
    encoder_params: dict[str, Any]  # as stored in the checkpoint
    recipe: Recipe
    hidden_size: int
    projection_dim: int
    max_differences: dict[str, float]
    dpr_class: bool = False  # folder holds a DPRQuestionEncoder / DPRContextEncoder


_HEADER = """---
language: fr
library_name: {library}
pipeline_tag: feature-extraction
tags:
- dpr
- dense-passage-retrieval
- feature-extraction{st_tag}
---

# DPR {role} encoder ({model_class})

Converted with `python -m dpr2hf` from the DPR bi-encoder checkpoint `{checkpoint}`.
This folder is the **{role} tower**; encode {other} with the sibling `{sibling}` folder and
score with {score}.

- Base model: `{base}` ({encoder_type})
- Vector: {vector}; size {out_dim}
- Prefix: {prefix}
- Lower-casing: {lower}
- Maximum length: {length} tokens (the tokenizer's `model_max_length`)

Training flags stored in the checkpoint (`encoder_params`):

```json
{params}
```

## Input recipe (exactly what training saw)

- Questions: remove **one** trailing `?`, strip surrounding spaces{query_prefix}.
- Passages: {passages}, text stripped; an empty title means
  `tokenizer({passage_alone})` alone. Truncation is `longest_first` at
  {length} tokens.
- No `token_type_ids`: training used zeros; the saved tokenizer does not return them.
"""


def _joined(recipe: Recipe) -> bool:
    return recipe.passage_format == PassageFormat.JOINED


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix!r} + {name}" if prefix else name


def _passage_words(recipe: Recipe) -> str:
    first = _prefixed(recipe.passage_prefix, "title")
    if _joined(recipe):
        return f'**one string** `tokenizer({first} + " " + text)` (`passage_format` joined)'
    return f"the (title, text) **pair** `tokenizer({first}, text)` (`passage_format` pair)"


def _vector_words(info: CardInfo) -> str:
    recipe = info.recipe
    words = ["the first token's last hidden state" if recipe.pooling == Pooling.CLS
             else "the mean of the last hidden states over the tokens (prefix included)"]
    if info.projection_dim:
        words.append("projected by DPR's `encode_proj` (`encode_proj.safetensors`, weight and "
                     "bias)")
    if recipe.normalize:
        words.append("L2-normalised")
    if recipe.pooling == Pooling.CLS and not info.dpr_class:
        words.append("not `pooler_output` (BERT's pooler was never trained by DPR, and "
                     "RoBERTa-type exports have none)")
    return ", ".join(words)


def _question_code(prefix: str) -> list[str]:
    return [f"question = {QUESTION!r}",
            f"texts = [{prefix!r} + question.removesuffix('?').strip()]" if prefix else
            "texts = [question.removesuffix('?').strip()]"]


def _inputs(info: CardInfo) -> list[str]:
    """Lines setting `batch` with the recipe's text preparation."""
    if info.side == "question":
        return [*_question_code(info.recipe.query_prefix),
                'batch = tokenizer(texts, truncation=True, return_tensors="pt")']
    prefix = info.recipe.passage_prefix
    if _joined(info.recipe):
        one = '(f"{title} {text.strip()}" if title else text.strip())'
        return [f"title, text = {PASSAGE!r}", f"texts = [{_prefixed(prefix, one)}]",
                'batch = tokenizer(texts, truncation=True, return_tensors="pt")']
    return [f"title, text = {PASSAGE!r}",
            f"batch = tokenizer([{_prefixed(prefix, 'title')}], [text.strip()],",
            '                  truncation="longest_first", return_tensors="pt")']


def _pooling_code(recipe: Recipe, name: str) -> list[str]:
    """Lines setting `name` to the recipe's pooling of `hidden` over `batch`."""
    if recipe.pooling == Pooling.CLS:
        return [f"{name} = hidden[:, 0]  # the first token"]
    return ['mask = batch["attention_mask"].unsqueeze(-1).float()',
            f"{name} = (hidden * mask).sum(1) / mask.sum(1)  # mean over the tokens"]


def _transformers_code(info: CardInfo, folder: str) -> str:
    proj = info.projection_dim > 0
    lines = ["import torch", "from transformers import AutoModel, AutoTokenizer",
             *(["from safetensors.torch import load_file"] if proj else []), "",
             f'folder = "{folder}"', "tokenizer = AutoTokenizer.from_pretrained(folder)",
             "model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()",
             *_inputs(info), "with torch.no_grad():",
             "    hidden = model(**batch).last_hidden_state"]
    lines += _pooling_code(info.recipe, "vectors")
    if proj:
        lines += ['proj = load_file(f"{folder}/encode_proj.safetensors")',
                  'vectors = vectors @ proj["weight"].T + proj["bias"]']
    if info.recipe.normalize:
        lines.append("vectors = torch.nn.functional.normalize(vectors, dim=-1)")
    return "\n".join(lines)


def _st_code(info: CardInfo, folder: str) -> str:
    lines = ["from sentence_transformers import SentenceTransformer", "",
             f'model = SentenceTransformer("{folder}")']
    if info.side == "question":
        lines += [f"question = {QUESTION!r}",
                  "vectors = model.encode([question.removesuffix('?').strip()])"]
    else:
        one = 'f"{title} {text.strip()}"' if _joined(info.recipe) else "(title, text.strip())"
        lines += [f"title, text = {PASSAGE!r}",
                  f"vectors = model.encode([{one} if title else text.strip()])"]
    return "\n".join(lines)


def _dpr_code(info: CardInfo, folder: str, cls: str) -> str:
    return "\n".join(["import torch", f"from transformers import {cls}, AutoTokenizer", "",
                      f'folder = "{folder}"', "tokenizer = AutoTokenizer.from_pretrained(folder)",
                      f"model = {cls}.from_pretrained(folder).eval()", *_inputs(info),
                      "with torch.no_grad():",
                      "    vectors = model(**batch).pooler_output  # DPR's vector"])


def _st_words(info: CardInfo) -> str:
    recipe = info.recipe
    prompt, prefix = (("query", recipe.query_prefix) if info.side == "question"
                      else ("passage", recipe.passage_prefix))
    said = [f"puts the folder's default prompt `{prompt}` (`{prefix}`) in front by itself"
            if prefix else "adds no prompt (the model was trained without prefix)",
            f"pools {'the first token' if recipe.pooling == Pooling.CLS else 'the mean'}"]
    if info.projection_dim:
        said.append("applies the projection (`2_Dense`, identity activation)")
    said.append("normalises (`Normalize`)" if recipe.normalize else "does not normalise")
    if recipe.do_lower_case:
        said.append("lower-cases (its tokenizer does)")
    text = f"`encode` {', '.join(said)}, and truncates at {recipe.sequence_length} tokens."
    if info.side == "question":
        return text + " It does not remove the question mark: do it before encoding."
    if _joined(recipe):
        return text + (' Pass `f"{title} {text}"` strings (the text alone when untitled), not '
                       "tuples: training joined title and text with one space "
                       "(`passage_format` joined), the prompt before the title.")
    return text + (" Pass `(title, text)` tuples, not joined strings: sentence-transformers "
                   "then tokenizes the pair exactly as training did (`passage_format` pair, "
                   "the prompt before the title).")


def render_card(info: CardInfo) -> str:
    """The README.md of one exported folder."""
    params, recipe = info.encoder_params, info.recipe
    role = "question" if info.side == "question" else "passage (context)"
    prefix = "dpr_" if info.dpr_class else ""
    folder = f"{prefix}{info.side}_encoder"
    sibling = f"{prefix}{'ctx' if info.side == 'question' else 'question'}_encoder"
    own = recipe.query_prefix if info.side == "question" else recipe.passage_prefix
    text = _HEADER.format(
        library="transformers" if info.dpr_class else "sentence-transformers",
        st_tag="" if info.dpr_class else "\n- sentence-transformers", role=role,
        model_class=info.model_class, checkpoint=info.checkpoint,
        other="passages" if info.side == "question" else "questions", sibling=sibling,
        score="the cosine (the vectors are normalised: their dot product)" if recipe.normalize
        else "the dot product (no normalisation)",
        base=params.get("pretrained_file") or params.get("pretrained_model_cfg"),
        encoder_type=params.get("encoder_model_type"), vector=_vector_words(info),
        out_dim=info.projection_dim or info.hidden_size,
        prefix=f"`{own}` before every {'question' if info.side == 'question' else 'passage'}"
        if own else "none",
        lower="the saved (fast) tokenizer lower-cases every text itself (`do_lower_case` in "
        "training)" if recipe.do_lower_case else "none", length=recipe.sequence_length,
        params=json.dumps(params, indent=2, ensure_ascii=False, default=str),
        query_prefix=f", then put `{recipe.query_prefix}` in front" if recipe.query_prefix
        else "",
        passages=_passage_words(recipe),
        passage_alone=_prefixed(recipe.passage_prefix, "text"))
    if info.dpr_class:
        cls = "DPRQuestionEncoder" if info.side == "question" else "DPRContextEncoder"
        return text + (f"\n## With transformers' DPR classes\n\n```python\n"
                       f"{_dpr_code(info, folder, cls)}\n```\n\n`{cls}.pooler_output` *is* "
                       "DPR's vector (the first token's hidden state, then `encode_proj` when "
                       f"the model projects). Load the folder with `{cls}` explicitly: "
                       "`AutoModel` maps every DPR config to `DPRQuestionEncoder`, so on a "
                       "context folder it would build a *randomly initialised* question "
                       "encoder.\n" + _verification(info))
    return text + (f"\n## With sentence-transformers\n\n```python\n{_st_code(info, folder)}\n"
                   f"```\n\n{_st_words(info)}\n\n## With transformers\n\n```python\n"
                   f"{_transformers_code(info, folder)}\n```\n" + _verification(info))


def _verification(info: CardInfo) -> str:
    lines = [f"- {name}: {diff:.2g}" for name, diff in sorted(info.max_differences.items())]
    return ("\n## Verification\n\nAt conversion, this folder was reloaded and its vectors "
            "compared with the bi-encoder's on French questions and (title, text) passages "
            "(accents, upper case, truncated and short inputs); token ids were identical and "
            "the largest absolute differences were:\n\n" + "\n".join(lines) + "\n")


_RERANKER_HEADER = """---
language: fr
library_name: sentence-transformers
pipeline_tag: text-ranking
tags:
- dpr
- reranker
- cross-encoder
- sentence-transformers
---

# DPR reranker (cross-encoder, {model_class})

Converted with `python -m dpr2hf` from the reranker checkpoint `{checkpoint}`
(`train_reranker.py`). It reads a question and a passage together and gives one **raw score**
(higher: more relevant; no sigmoid): the score training ranked the candidates of a question by.

- Base model: `{base}` ({encoder_type})
- Score: {pooled}, then a linear layer to one number (`2_Dense`, identity activation)
- Lower-casing: {lower}
- Maximum length: {length} tokens for the pair (the tokenizer's `model_max_length`), truncated
  `longest_first`

Training flags stored in the checkpoint (`encoder_params`):

```json
{params}
```

## Input recipe (exactly what training saw)

- The question as written, surrounding spaces stripped (its `?` kept, no prefix).
- The passage as one string: `title + " " + text`, the text stripped; the text alone when the
  title is empty.
- The two as the tokenizer's text pair `tokenizer(question, passage)`; no `token_type_ids`
  (training used zeros; the saved tokenizer does not return them).
"""


def _reranker_inputs() -> list[str]:
    return [f"question = {QUESTION!r}", f"title, text = {PASSAGE!r}",
            'passage = f"{title} {text.strip()}" if title else text.strip()']


def _reranker_st_code(folder: str) -> str:
    return "\n".join(["from sentence_transformers import CrossEncoder", "",
                      f'model = CrossEncoder("{folder}")', *_reranker_inputs(),
                      "scores = model.predict([(question.strip(), passage)])"])


def _reranker_transformers_code(info: CardInfo, folder: str) -> str:
    lines = ["import torch", "from safetensors.torch import load_file",
             "from transformers import AutoModel, AutoTokenizer", "",
             f'folder = "{folder}"', "tokenizer = AutoTokenizer.from_pretrained(folder)",
             "model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()",
             *_reranker_inputs(),
             "batch = tokenizer([question.strip()], [passage], truncation=\"longest_first\",",
             '                  return_tensors="pt")', "with torch.no_grad():",
             "    hidden = model(**batch).last_hidden_state"]
    lines += _pooling_code(info.recipe, "pooled")
    lines += ['head = load_file(f"{folder}/2_Dense/model.safetensors")',
              'scores = (pooled @ head["linear.weight"].T + head["linear.bias"])[:, 0]']
    return "\n".join(lines)


def render_reranker_card(info: CardInfo, folder: str) -> str:
    """The README.md of a reranker's `CrossEncoder` folder, its snippets loading `folder`."""
    params, recipe = info.encoder_params, info.recipe
    text = _RERANKER_HEADER.format(
        model_class=info.model_class, checkpoint=info.checkpoint,
        base=params.get("pretrained_file") or params.get("pretrained_model_cfg"),
        encoder_type=params.get("encoder_model_type"),
        pooled="the first token's last hidden state" if recipe.pooling == Pooling.CLS
        else "the mean of the last hidden states over the tokens",
        lower="the saved (fast) tokenizer lower-cases every text itself (`do_lower_case` in "
        "training)" if recipe.do_lower_case else "none", length=recipe.sequence_length,
        params=json.dumps(params, indent=2, ensure_ascii=False, default=str))
    lines = [f"- {name}: {diff:.2g}" for name, diff in sorted(info.max_differences.items())]
    return text + (
        f"\n## With sentence-transformers\n\n```python\n{_reranker_st_code(folder)}\n```\n\n"
        "`predict` returns the raw scores (the folder's activation is the identity; pass "
        "`activation_fn=torch.nn.Sigmoid()` for numbers in (0, 1), same order), and "
        "`model.rank(question, passages)` orders passages by them. In Haystack, "
        "`SentenceTransformersSimilarityRanker(model=..., meta_fields_to_embed=[\"title\"], "
        "embedding_separator=\" \", scale_score=False)` gives the same scores for the "
        "stripped question and documents whose `meta[\"title\"]` is the title (absent when "
        "empty) and whose content is the stripped text.\n\n"
        f"## With transformers\n\n```python\n{_reranker_transformers_code(info, folder)}\n"
        "```\n\n## Verification\n\nAt conversion, this folder was reloaded (with "
        "sentence-transformers' `CrossEncoder`, and with the project's `load_reranker`) and "
        "its scores compared with the checkpoint's on French (question, passage) pairs "
        "(accents, upper case, truncated and short inputs, an untitled passage); token ids were "
        "identical and the largest absolute differences were:\n\n" + "\n".join(lines) + "\n")
