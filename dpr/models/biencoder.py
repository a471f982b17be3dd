"""The bi-encoder: independent question and passage towers (DPR), or one shared encoder.

A shared encoder is one `Encoder` registered under both names, so that `state_dict()` keeps
DPR's layout (`question_model.*` and `ctx_model.*`, the same tensors: `torch.save` stores them
once) while the parameters, the optimizer state and the gradients exist once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from dpr.models.encoder import Encoder
from dpr.utils.errors import UsageError


class BiEncoder(nn.Module):
    """Question and passage towers as in DPR, or one shared encoder (`ctx_model` None or
    `question_model` itself). `fix_ctx_encoder` freezes the passage tower (no gradients, run
    under no_grad); a shared encoder refuses it (`UsageError` naming the flags)."""

    def __init__(self, question_model: Encoder, ctx_model: Encoder | None = None,
                 fix_ctx_encoder: bool = False) -> None:
        super().__init__()
        self.question_model = question_model
        self.ctx_model = question_model if ctx_model is None else ctx_model
        self.fix_ctx_encoder = fix_ctx_encoder
        if fix_ctx_encoder and self.shared:
            raise UsageError("--fix_ctx_encoder cannot be used with --shared_encoder (one "
                             "encoder serves both sides)")
        if fix_ctx_encoder:
            self.ctx_model.requires_grad_(False)

    @property
    def shared(self) -> bool:
        """Whether questions and passages go through one encoder."""
        return self.ctx_model is self.question_model

    def encode_questions(self, ids: torch.Tensor, mask: torch.Tensor,
                         lengths: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """[B × T] ids and mask → [B × D] question vectors (`lengths`: see `Encoder`)."""
        return self.question_model(ids, mask, lengths)

    def encode_contexts(self, ids: torch.Tensor, mask: torch.Tensor,
                        lengths: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """[C × T] ids and mask → [C × D] passage vectors (no graph when the tower is fixed)."""
        guard = torch.no_grad() if self.fix_ctx_encoder else contextlib.nullcontext()
        with guard:
            return self.ctx_model(ids, mask, lengths)

    def forward(self, question_ids: torch.Tensor | None, question_mask: torch.Tensor | None,
                ctx_ids: torch.Tensor | None, ctx_mask: torch.Tensor | None,
                question_lengths: Sequence[int] | torch.Tensor | None = None,
                ctx_lengths: Sequence[int] | torch.Tensor | None = None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Question vectors [B × D] and passage vectors [C × D]; a side whose ids are None is
        returned as None (as in DPR). The CPU row lengths serve length buckets only."""
        q = (None if question_ids is None
             else self.encode_questions(question_ids, question_mask, question_lengths))
        c = None if ctx_ids is None else self.encode_contexts(ctx_ids, ctx_mask, ctx_lengths)
        return q, c
