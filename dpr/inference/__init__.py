"""Loading and applying a trained (or untrained) encoder, the one way every tool does it
(`load_encoder`, `dpr.inference.loader`), and the one corpus encoder writing resumable chunk
files (`dpr.inference.corpus`, `dpr.inference.chunks`).
"""

from dpr.inference.loader import DenseEncoder, load_encoder

__all__ = ["DenseEncoder", "load_encoder"]
