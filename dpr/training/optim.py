"""Optimizer and learning-rate schedule."""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY = ("bias", "LayerNorm.weight")


def build_optimizer(
    model: nn.Module,
    *,
    learning_rate: float,
    weight_decay: float,
    eps: float,
    betas: tuple[float, float],
) -> AdamW:
    """AdamW with DPR's two parameter groups.

    Parameters whose names contain "bias" or "LayerNorm.weight" get no weight decay; every
    other one gets `weight_decay`. All parameters are listed (frozen ones simply never have
    gradients), so the state's parameter order matches DPR's.
    """
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if not any(nd in n for nd in NO_DECAY)],
         "weight_decay": weight_decay},
        {"params": [p for n, p in params if any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.0},
    ]
    return AdamW(groups, lr=learning_rate, eps=eps, betas=betas)


def linear_schedule(optimizer: Optimizer, *, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up from 0, then linear decay to 0 at `total_steps` (DPR's schedule).

    `total_steps` is the number of updates of the *whole* run; on resume the scheduler's saved
    step counter is restored on top, so the curve continues where it stopped.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)
