from __future__ import annotations

import pytest
import torch

from dpr.training.optim import build_optimizer, linear_schedule


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(2, 2)
        self.LayerNorm = torch.nn.LayerNorm(2)


def test_optimizer_groups_exclude_bias_and_layernorm_weight_from_decay() -> None:
    model = _Tiny()
    opt = build_optimizer(model, learning_rate=1e-3, weight_decay=0.01, eps=1e-8,
                          betas=(0.9, 0.98))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert [p.data_ptr() for p in decay["params"]] == [model.dense.weight.data_ptr()]
    assert len(no_decay["params"]) == 3
    assert decay["betas"] == (0.9, 0.98)


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    opt = build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                          betas=(0.9, 0.999))
    sched = linear_schedule(opt, warmup_steps=2, total_steps=6)
    assert _lrs(sched, opt, 7) == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_linear_schedule_state_restores_on_a_fresh_scheduler() -> None:
    # Given a schedule stopped after 4 updates and its saved state
    opt = build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                          betas=(0.9, 0.999))
    sched = linear_schedule(opt, warmup_steps=2, total_steps=10)
    _lrs(sched, opt, 4)
    saved = sched.state_dict()
    expected = _lrs(sched, opt, 3)
    # When a fresh scheduler over the whole run loads it (what the trainer does on resume)
    opt2 = build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                           betas=(0.9, 0.999))
    sched2 = linear_schedule(opt2, warmup_steps=2, total_steps=10)
    sched2.load_state_dict(saved)
    for group, lr in zip(opt2.param_groups, sched2.get_last_lr()):
        group["lr"] = lr
    # Then the learning rates continue where they stopped (no collapse to 0)
    assert expected == pytest.approx([0.75, 0.625, 0.5])
    assert _lrs(sched2, opt2, 3) == pytest.approx(expected)
