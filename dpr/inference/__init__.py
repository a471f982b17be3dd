"""Loading and applying a trained (or untrained) encoder, the one way every tool does it, and
the one corpus encoder writing resumable chunk files."""

from dpr.inference.loader import DenseEncoder, load_encoder

__all__ = ["DenseEncoder", "load_encoder"]
