"""Bi-encoder training: configuration, optimisation, the training loop and validation."""
