"""dpr2hf: DPR bi-encoder checkpoints (ours and the original DPR's) → verified Hugging Face models.

`python -m dpr2hf CHECKPOINT --output_dir DIR` writes `DIR/question_encoder` and
`DIR/ctx_encoder` (transformers + sentence-transformers folders with tokenizer and model card),
plus `DIR/dpr_question_encoder` / `DIR/dpr_ctx_encoder` (Hugging Face's `DPRQuestionEncoder` /
`DPRContextEncoder`) for BERT checkpoints. Every folder is reloaded and its vectors compared with
the bi-encoder's before anything appears under `DIR`. See docs/DPR2HF.md.
"""

from __future__ import annotations

from dpr2hf.convert import ConversionError, ConversionResult, convert

__all__ = ["ConversionError", "ConversionResult", "convert"]
