"""Loading and applying a trained (or untrained) encoder, the one way every tool does it.

`load_encoder` reads a DPR checkpoint file, a `dpr2hf` export folder or a plain Hugging Face /
sentence-transformers folder and returns a `DenseEncoder` that applies the model's whole
recipe (lower-casing, prefixes, pooling, normalisation) to questions and `(title, text)`
passages. It depends on `dpr.data` (text preparation, tokenizers) and `dpr.models` (towers,
checkpoints, exports), and is used by the entry points, `dpr.evaluation`, `data_prep` and
`dpr2hf`. `dpr.inference.corpus.encode_corpus` encodes a whole passage file with it into
resumable chunk files (`dpr.inference.chunks`), split over independent processes.
"""

from dpr.inference.loader import DenseEncoder, Tower, load_encoder

__all__ = ["DenseEncoder", "Tower", "load_encoder"]
