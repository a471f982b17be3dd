"""Loading and applying a trained (or untrained) encoder, or a reranker, the one way every tool
does it, and the one corpus encoder writing resumable chunk files."""

from dpr.inference.loader import DenseEncoder, Reranker, load_encoder, load_reranker

__all__ = ["DenseEncoder", "Reranker", "load_encoder", "load_reranker"]
