"""The optimizer: AdamW with DPR's two parameter groups, and loading a saved state into it.
The schedule is transformers' `get_linear_schedule_with_warmup` (DPR's `get_schedule_linear`;
its `state_dict` is a `LambdaLR`'s, as DPR's checkpoints store), built in the trainer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim import AdamW, Optimizer

NO_DECAY = ("bias", "LayerNorm.weight")
HEAD = "encode_proj."  # a reranker's one-score head
# The settings that choose AdamW's implementation, not its arithmetic: they stay this
# optimizer's own when a saved state (which carries them) is loaded.
IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable")


def use_fused(params: list[nn.Parameter]) -> bool:
    """The default of `build_optimizer(fused=None)`: fused when every parameter is on a GPU
    (one kernel launch for all parameters, and GradScaler's inf check stays on the device),
    or every one on the CPU (measured ~15x faster than the for-loop kernel there,
    docs/PERFORMANCE.md)."""
    devices = {p.device.type for p in params}
    return devices in ({"cuda"}, {"cpu"})


def build_optimizer(model: nn.Module, *, learning_rate: float, weight_decay: float, eps: float,
                    betas: tuple[float, float], fused: bool | None = None,
                    head_learning_rate: float | None = None) -> AdamW:
    """AdamW with DPR's two parameter groups: no weight decay for parameters whose names
    contain "bias" or "LayerNorm.weight". All parameters are listed (frozen ones never have
    gradients), so the state's parameter order matches DPR's.

    Args:
        head_learning_rate: A reranker's: its head (`encode_proj.*`) in two more groups (with
            and without decay) at this learning rate; the schedule scales both alike.
        fused: Use torch's fused AdamW kernel; None = `use_fused` (build the optimizer after
            moving the model to its device). The same updates either way (within float
            rounding), and states load across both (`load_optimizer_state`).
    """
    params = list(model.named_parameters())
    parts = [(params, {})]
    if head_learning_rate is not None:
        parts = [([(n, p) for n, p in params if not n.startswith(HEAD)], {}),
                 ([(n, p) for n, p in params if n.startswith(HEAD)], {"lr": head_learning_rate})]
    groups = [group for named, extra in parts for group in (
        {"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)],
         "weight_decay": weight_decay, **extra},
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.0, **extra})]
    if fused is None:
        fused = use_fused([p for _, p in params])
    return AdamW(groups, lr=learning_rate, eps=eps, betas=betas, fused=fused or None)


def load_optimizer_state(optimizer: Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)`, keeping `optimizer`'s own implementation.

    A saved state carries the implementation flags of the optimizer that saved it (fused or
    not) and keeps each `step` counter where that one wanted it; torch would adopt both. Here
    the flags stay this optimizer's, and the counters move to where it needs them: a float32
    tensor on the parameter's device when fused (or capturable), on the CPU otherwise. A
    state that does not fit is `load_state_dict`'s `ValueError`.
    """
    own = [{key: group.get(key) for key in IMPLEMENTATION_KEYS}
           for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, own):
        group.update(flags)
        on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            step = optimizer.state.get(param, {}).get("step")
            if isinstance(step, torch.Tensor):
                device = param.device if on_device else torch.device("cpu")
                optimizer.state[param]["step"] = step.to(device=device, dtype=torch.float32)
