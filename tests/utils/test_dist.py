"""Launcher environment parsing and the single-process collectives."""

from __future__ import annotations

import pytest
import torch

from dpr.utils.dist import (
    DistContext,
    all_gather_variable,
    all_reduce_sum,
    first_host,
    max_over_processes,
    rendezvous_address,
    resolve_ranks,
)
from dpr.utils.errors import UsageError


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS",
                 "SLURM_JOB_NODELIST", "SLURM_JOB_ID"):
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


def _slurm(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_resolve_ranks_reads_srun_tasks_without_rank_variables(monkeypatch) -> None:
    # Given the 4th task of `srun --ntasks 4` over 2 nodes (2 per node)
    _slurm(monkeypatch, SLURM_PROCID="3", SLURM_NTASKS="4", SLURM_LOCALID="1")
    # Then the global rank, local rank and world size are SLURM's
    assert resolve_ranks(-1) == (3, 1, 4)
    # And torchrun's variables win when present (torchrun started inside an allocation)
    _slurm(monkeypatch, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    assert resolve_ranks(-1) == (0, 0, 2)


def test_a_single_slurm_task_is_a_single_process(monkeypatch) -> None:
    _slurm(monkeypatch, SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_LOCALID="0")
    assert resolve_ranks(-1) == (0, -1, 1)


@pytest.mark.parametrize("nodelist,host", [
    ("node[01-04,07]", "node01"), ("a,b", "a"), ("gpu-[3-5],cpu1", "gpu-3"),
    ("r[2,4]-n[07-09],x", "r2-n07"), ("jean-zay-a101", "jean-zay-a101")])
def test_first_host_of_compressed_slurm_node_lists(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


@pytest.mark.parametrize("nodelist", ["", "node[01-04", "a]"])
def test_malformed_node_list_is_a_usage_error(nodelist: str) -> None:
    with pytest.raises(UsageError, match="SLURM_JOB_NODELIST"):
        first_host(nodelist)


def test_rendezvous_address_from_master_variables_or_the_job(monkeypatch) -> None:
    # Given an srun task without MASTER_ADDR/MASTER_PORT
    _slurm(monkeypatch, SLURM_JOB_NODELIST="node[12-13]", SLURM_JOB_ID="123456")
    # Then rank 0 is on the first node, at a port every task of the job derives alike
    host, port = rendezvous_address()
    assert (host, port) == ("node12", 15000 + 123456 % 20000)
    # And another job gets another port
    _slurm(monkeypatch, SLURM_JOB_NODELIST="node[12-13]", SLURM_JOB_ID="123457")
    assert rendezvous_address()[1] != port
    # And explicit variables win
    _slurm(monkeypatch, MASTER_ADDR="10.0.0.5", MASTER_PORT="29400")
    assert rendezvous_address() == ("10.0.0.5", 29400)


def test_max_over_one_process_is_its_value() -> None:
    assert max_over_processes(15, DistContext()) == 15
