"""Dense passage retrieval (DPR) training toolkit for French and other languages."""

__version__ = "0.1.0"
