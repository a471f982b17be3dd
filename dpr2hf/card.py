"""Model cards (README.md) for exported folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class CardInfo:
    """What a model card says about one exported folder."""

    side: str  # "question" or "ctx"
    model_class: str
    checkpoint: str
    encoder_params: dict[str, Any]
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
score with the dot product (no normalisation).

- Base model: `{base}` ({encoder_type})
- Output vector size: {out_dim}{proj_note}
- Inputs are lower-cased before tokenization: **{lower}** (`do_lower_case`, also recorded as
  `dpr.do_lower_case` in config.json and in sentence_bert_config.json)
- Maximum length: {length} tokens (the tokenizer's `model_max_length`)

Training flags stored in the checkpoint (`encoder_params`):

```json
{params}
```
"""

_RECIPE = """
## Input recipe (exactly what training saw)

- Questions: remove **one** trailing `?`, strip surrounding spaces{lower_q}.
- Passages: the (title, text) **pair** `tokenizer(title, text)` (text stripped{lower_p});
  an empty title means `tokenizer(text)` alone. Truncation is `longest_first` at {length} tokens.
- Attention mask: `input_ids != pad_token_id`, which is what the tokenizer returns.
- No `token_type_ids`: training used zeros; the saved tokenizer does not return them.
- Representation: {representation}
"""

_TRANSFORMERS = """
## With transformers

```python
import torch
from transformers import AutoModel, AutoTokenizer
{proj_import}
tokenizer = AutoTokenizer.from_pretrained("{folder}")
model = AutoModel.from_pretrained("{folder}", add_pooling_layer=False).eval()
{example_inputs}
with torch.no_grad():
    vectors = model(**batch).last_hidden_state[:, 0]{proj_apply}
```
"""

_ST = """
## With sentence-transformers

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{folder}")
{st_example}
```

The configuration pools the first token (CLS pooling){st_dense}, truncates at {length} tokens
and {st_lower}.
{st_pair}
"""

_DPR = """
## With transformers' DPR classes

```python
import torch
from transformers import {cls}, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{folder}")
model = {cls}.from_pretrained("{folder}").eval()
{example_inputs}
with torch.no_grad():
    vectors = model(**batch).pooler_output  # DPR's vector (first token{proj_word})
```

`{cls}.pooler_output` *is* DPR's representation (the first token's hidden state
{proj_word2}); these classes have no BERT pooler. Load the folder with `{cls}` explicitly:
`AutoModel` maps every DPR config to `DPRQuestionEncoder`, so on a context folder it
would build a *randomly initialised* question encoder.
"""


def _lower_words(lower: bool) -> tuple[str, str]:
    if lower:
        return ", then `text.lower()`", "; title and text lower-cased with `str.lower()`"
    return "", ""


def _example_inputs(side: str, lower: bool) -> str:
    low = ".lower()" if lower else ""
    if side == "question":
        return ('question = "Quel est le plus haut sommet des Alpes ?"\n'
                f'text = question[:-1] if question.endswith("?") else question\n'
                f'batch = tokenizer([text.strip(){low}], truncation=True, return_tensors="pt")')
    return ('title, text = "Mont Blanc", "Le mont Blanc culmine à 4 805 mètres."\n'
            f'batch = tokenizer([title{low}], [text.strip(){low}], truncation="longest_first",\n'
            '                  return_tensors="pt")')


def render_card(info: CardInfo, *, pair_note: str) -> str:
    """The README.md of one exported folder."""
    params = info.encoder_params
    lower = bool(params.get("do_lower_case"))
    role = "question" if info.side == "question" else "passage (context)"
    prefix = "dpr_" if info.dpr_class else ""
    folder = f"{prefix}{info.side}_encoder"
    sibling = f"{prefix}{'ctx' if info.side == 'question' else 'question'}_encoder"
    proj = info.projection_dim > 0
    out_dim = info.projection_dim if proj else info.hidden_size
    proj_note = (f" (hidden size {info.hidden_size} projected by DPR's `encode_proj` linear "
                 f"layer)" if proj else "")
    text = _HEADER.format(
        library="transformers" if info.dpr_class else "sentence-transformers",
        st_tag="" if info.dpr_class else "\n- sentence-transformers", role=role,
        model_class=info.model_class, checkpoint=info.checkpoint,
        other="passages" if info.side == "question" else "questions", sibling=sibling,
        base=params.get("pretrained_file") or params.get("pretrained_model_cfg"),
        encoder_type=params.get("encoder_model_type"), out_dim=out_dim, proj_note=proj_note,
        lower=str(lower).lower(), length=params.get("sequence_length"),
        params=json.dumps(params, indent=2, ensure_ascii=False, default=str))
    lower_q, lower_p = _lower_words(lower)
    if info.dpr_class:
        representation = ("the DPR class's `pooler_output`, which is the first token's last "
                          "hidden state" + (" followed by DPR's projection (`encode_proj`)."
                                            if proj else "."))
    else:
        representation = (
            "the **first token's last hidden state** (`last_hidden_state[:, 0]`)"
            + (", then DPR's projection stored in `encode_proj.safetensors` (weight, bias): "
               "`v @ weight.T + bias`" if proj else "")
            + ". Not `pooler_output`: BERT's pooler was never trained by DPR and "
              "RoBERTa/CamemBERT exports have none (`AutoModel` adds a randomly initialised "
              "one and warns about it unless loaded with `add_pooling_layer=False`).")
    text += _RECIPE.format(lower_q=lower_q, lower_p=lower_p,
                           length=params.get("sequence_length"), representation=representation)
    example = _example_inputs(info.side, lower)
    if info.dpr_class:
        cls = "DPRQuestionEncoder" if info.side == "question" else "DPRContextEncoder"
        text += _DPR.format(cls=cls, folder=folder, example_inputs=example,
                            proj_word=", projected" if proj else "",
                            proj_word2="followed by `encode_proj`" if proj else "")
    else:
        text += _TRANSFORMERS.format(
            folder=folder, example_inputs=example,
            proj_import="from safetensors.torch import load_file\n" if proj else "",
            proj_apply=(f'\nproj = load_file("{folder}/encode_proj.safetensors")\n'
                        'vectors = vectors @ proj["weight"].T + proj["bias"]  # required'
                        if proj else ""))
        text += _st_section(info, folder=folder, lower=lower, pair_note=pair_note)
    return text + _verification(info)


def _st_section(info: CardInfo, *, folder: str, lower: bool, pair_note: str) -> str:
    if info.side == "question":
        example = 'vectors = model.encode(["Quel est le plus haut sommet des Alpes"])'
    else:
        example = 'vectors = model.encode([("Mont Blanc", "Le mont Blanc culmine à 4 805 m.")])'
    return _ST.format(
        folder=folder, st_example=example, length=info.encoder_params.get("sequence_length"),
        st_dense=", then applies the projection (`2_Dense`, identity activation)"
        if info.projection_dim > 0 else "",
        st_lower="lower-cases the input itself (`do_lower_case: true`)" if lower
        else "does not lower-case (`do_lower_case: false`)",
        st_pair=pair_note if info.side == "ctx" else
        "sentence-transformers does not remove the question mark: do it before encoding.")


def _verification(info: CardInfo) -> str:
    lines = [f"- {name}: {diff:.2g}" for name, diff in sorted(info.max_differences.items())]
    return ("\n## Verification\n\nAt conversion, this folder was reloaded and its vectors "
            "compared with the bi-encoder's on French questions and (title, text) passages "
            "(accents, upper case, truncated and short inputs); token ids were identical and "
            "the largest absolute differences were:\n\n" + "\n".join(lines) + "\n")
