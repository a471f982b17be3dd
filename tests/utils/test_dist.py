"""Launcher environment parsing and the single-process collectives."""

from __future__ import annotations

import pytest
import torch

from dpr.utils.dist import DistContext, all_gather_variable, all_reduce_sum, resolve_ranks
from dpr.utils.errors import UsageError


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_resolve_ranks_single_process_and_flag() -> None:
    assert resolve_ranks(-1) == (0, -1, 1)
    assert resolve_ranks(0) == (0, 0, 1)


def test_resolve_ranks_uses_the_global_rank_of_torchrun(monkeypatch) -> None:
    # Given the environment of the second node's first process (2 nodes x 2 processes)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    # Then the global rank is 2, the local rank 0
    assert resolve_ranks(-1) == (2, 0, 4)


@pytest.mark.parametrize("env,message", [({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
                                         ({"WORLD_SIZE": "2", "RANK": "5"}, "outside")])
def test_resolve_ranks_bad_environment_is_a_usage_error(monkeypatch, env, message) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        resolve_ranks(-1)


def test_single_process_collectives_return_the_local_values() -> None:
    ctx = DistContext()
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_sum(values, ctx), values)
    rows = torch.arange(6.0).view(3, 2).requires_grad_()
    (gathered,) = all_gather_variable(rows, ctx)
    assert torch.equal(gathered, rows) and not gathered.requires_grad
    assert not ctx.distributed and ctx.is_main
