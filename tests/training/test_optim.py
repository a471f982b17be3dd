from __future__ import annotations

import copy

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from dpr.training.optim import build_optimizer, load_optimizer_state, use_fused


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
    sched = get_linear_schedule_with_warmup(opt, 2, 6)
    assert _lrs(sched, opt, 7) == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_linear_schedule_state_restores_on_a_fresh_scheduler() -> None:
    # Given a schedule stopped after 4 updates and its saved state
    opt = build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                          betas=(0.9, 0.999))
    sched = get_linear_schedule_with_warmup(opt, 2, 10)
    _lrs(sched, opt, 4)
    saved = sched.state_dict()
    expected = _lrs(sched, opt, 3)
    # When a fresh scheduler over the whole run loads it (what the trainer does on resume)
    opt2 = build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                           betas=(0.9, 0.999))
    sched2 = get_linear_schedule_with_warmup(opt2, 2, 10)
    sched2.load_state_dict(saved)
    for group, lr in zip(opt2.param_groups, sched2.get_last_lr()):
        group["lr"] = lr
    # Then the learning rates continue where they stopped (no collapse to 0)
    assert expected == pytest.approx([0.75, 0.625, 0.5])
    assert _lrs(sched2, opt2, 3) == pytest.approx(expected)


def _dpr_schedule(optimizer, warmup: int, total: int) -> LambdaLR:
    """The schedule as checkpoints written before transformers' was used hold it: a LambdaLR
    over a plain function (its `state_dict` stores `lr_lambdas` as [None, None])."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return LambdaLR(optimizer, factor)


def test_a_schedule_state_saved_by_the_hand_written_schedule_resumes_exactly() -> None:
    # Given the state of the earlier hand-written schedule after 5 of 12 updates (warm-up 3)
    opt = build_optimizer(_Tiny(), learning_rate=2e-5, weight_decay=0.0, eps=1e-8,
                          betas=(0.9, 0.999))
    old = _dpr_schedule(opt, 3, 12)
    _lrs(old, opt, 5)
    saved = copy.deepcopy(old.state_dict())
    assert saved["lr_lambdas"] == [None, None] and saved["last_epoch"] == 5
    expected = _lrs(old, opt, 8)
    # When transformers' schedule over the same run loads it (as the trainer does on resume)
    opt2 = build_optimizer(_Tiny(), learning_rate=2e-5, weight_decay=0.0, eps=1e-8,
                           betas=(0.9, 0.999))
    new = get_linear_schedule_with_warmup(opt2, 3, 12)
    new.load_state_dict(saved)
    for group, lr in zip(opt2.param_groups, new.get_last_lr()):
        group["lr"] = lr
    # Then the learning rates continue as the old schedule's, to the last bit, down to 0
    assert _lrs(new, opt2, 8) == expected
    assert expected[-1] == 0.0 and expected[0] > 0.0
    # And the state it saves keeps the keys of the old one (what DPR's tools load)
    assert new.state_dict().keys() == saved.keys()


def _stepped(fused: bool, steps: int, seed: int = 0, state: dict | None = None):
    """A _Tiny model and its optimizer after `steps` updates on seeded random gradients."""
    torch.manual_seed(0)
    model = _Tiny()
    opt = build_optimizer(model, learning_rate=1e-2, weight_decay=0.01, eps=1e-8,
                          betas=(0.9, 0.999), fused=fused)
    if state is not None:
        state = copy.deepcopy(state)  # as if read back from a checkpoint file
        load_optimizer_state(opt, state)
        # continue from the saved weights too
        for p, saved in zip(model.parameters(), state["weights"]):
            p.data.copy_(saved)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    return model, opt


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_gives_the_updates_of_the_default_one_on_cpu() -> None:
    default, _ = _stepped(fused=False, steps=10)
    fused, opt = _stepped(fused=True, steps=10)
    assert all(group["fused"] for group in opt.param_groups)
    for a, b in zip(_weights(default), _weights(fused)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    assert not torch.equal(_weights(default)[0], _weights(_Tiny())[0])  # it did move


@pytest.mark.parametrize("saved_fused", [True, False])
def test_optimizer_state_saved_fused_or_not_resumes_under_the_other(saved_fused: bool) -> None:
    # Given a state saved after 5 updates with one implementation, and the 5 next updates
    model, opt = _stepped(fused=saved_fused, steps=5)
    state = {**opt.state_dict(), "weights": _weights(model)}
    reference, _ = _stepped(fused=saved_fused, steps=5, seed=1, state=state)
    # When an optimizer with the other implementation loads it and makes the same updates
    resumed, other = _stepped(fused=not saved_fused, steps=5, seed=1, state=state)
    # Then it keeps its own implementation, its step counters are where it needs them, and
    # the weights are those of continuing with the saving one
    assert all(bool(g["fused"]) is (not saved_fused) for g in other.param_groups)
    steps = [s["step"] for s in other.state.values()]
    assert steps and all(s.dtype == torch.float32 and s.device.type == "cpu" and s.item() == 10
                         for s in steps)
    for a, b in zip(_weights(reference), _weights(resumed)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()


def test_fused_is_the_default_when_every_parameter_is_on_one_gpu_or_the_cpu() -> None:
    params = list(_Tiny().parameters())
    assert use_fused(params)  # CPU: measured faster than the for-loop kernel
    meta = torch.nn.Linear(2, 2, device="meta")
    assert not use_fused([*params, meta.weight])  # devices mixed: not fused
    assert not build_optimizer(_Tiny(), learning_rate=1.0, weight_decay=0.0, eps=1e-8,
                               betas=(0.9, 0.999), fused=False).param_groups[0]["fused"]
