"""Process-group set-up and tensor collectives; with `dpr.training`, the only user of
`torch.distributed`. Launchers (torch.distributed.launch, torchrun, srun, one process) and how
SLURM's variables give the ranks and the rendezvous address: docs/RELIABILITY.md, "Launchers".
The *global* rank shards the data and locates this process's slot in gathered results.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dpr.utils.device import select_device
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0  # global
    local_rank: int = -1  # on this node; -1 when not distributed
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from err


def _slurm_tasks() -> int:
    """Number of tasks of this SLURM job step (1 outside `srun` or with `RANK` set)."""
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ or "SLURM_PROCID" not in os.environ:
        return 1
    return _env_int("SLURM_STEP_NUM_TASKS", _env_int("SLURM_NTASKS", 1))


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `node[01-04,07]` → `node01`, `a,b` → `a`;
    `UsageError` for an empty or malformed list."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):  # the first comma outside brackets ends the first item
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    item = nodelist[:end].strip()
    # Each bracket group names a set of numbers; the first host takes the first of each.
    host = re.sub(r"\[\s*([^\],\-]+)[^\]]*\]", r"\1", item)
    if not item or depth < 0 or any(c in host for c in "[],"):
        raise UsageError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot read its first host")
    return host


def rendezvous_address() -> tuple[str, int]:
    """(host, port) of rank 0 for a process started by `srun`: `MASTER_ADDR`/`MASTER_PORT`,
    else the first host of the job and a port in [15000, 35000) derived from its id."""
    host = os.environ.get("MASTER_ADDR") or first_host(os.environ.get("SLURM_JOB_NODELIST", ""))
    port = _env_int("MASTER_PORT", -1)
    if port == -1:
        port = 15000 + _env_int("SLURM_JOB_ID", 0) % 20000
    return host, port


def resolve_ranks(local_rank_arg: int) -> tuple[int, int, int]:
    """(global rank, local rank, world size) from `--local_rank` (-1 if not given) and the
    launcher's environment; `UsageError` for a non-integer variable or a rank outside the
    world size."""
    if _slurm_tasks() > 1:
        rank, world_size = _env_int("SLURM_PROCID", 0), _slurm_tasks()
        local_rank = _env_int("SLURM_LOCALID", 0)
        if not 0 <= rank < world_size:
            raise UsageError(f"SLURM_PROCID {rank} is outside the {world_size} tasks")
        return rank, local_rank, world_size
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = local_rank_arg if local_rank_arg != -1 else _env_int("LOCAL_RANK", -1)
    rank = _env_int("RANK", local_rank if local_rank != -1 else 0)
    if world_size > 1 and local_rank == -1:
        local_rank = rank
    if not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is outside the world size {world_size}")
    return rank, local_rank, world_size


def init_distributed(local_rank_arg: int = -1, *, no_cuda: bool = False,
                     device: str | None = None, timeout_minutes: float = 30.0) -> DistContext:
    """Initialises the default process group when the launcher asked for several processes
    (NCCL when every process has a GPU, gloo otherwise), on the device `select_device` picks;
    a process waits `timeout_minutes` for the others (rendezvous, each collective), then fails.
    """
    rank, local_rank, world_size = resolve_ranks(local_rank_arg)
    chosen = select_device(device, no_cuda=no_cuda, local_rank=local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        timeout = timedelta(minutes=timeout_minutes)
        if _slurm_tasks() > 1:
            host, port = rendezvous_address()
            logger.info("SLURM task %d of %d (local %d): rendezvous at %s:%d", rank, world_size,
                        local_rank, host, port)
            dist.init_process_group(backend=backend, init_method=f"tcp://{host}:{port}",
                                    rank=rank, world_size=world_size, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=chosen)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Returns the element-wise sum of `values` over all processes."""
    if not ctx.distributed:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def max_over_processes(value: int, ctx: DistContext) -> int:
    """The largest `value` of all processes (every process gets the same answer)."""
    if not ctx.distributed:
        return value
    out = torch.tensor([value], device=ctx.device, dtype=torch.long)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return int(out.item())


def barrier(ctx: DistContext) -> None:
    """Waits until every process reaches this point (a no-op for a single process)."""
    if ctx.distributed:
        dist.barrier()


def all_gather_variable(tensor: torch.Tensor, ctx: DistContext, *,
                        sizes: Sequence[int] | None = None) -> list[torch.Tensor]:
    """One detached tensor per process, in global-rank order, whose first dimension may
    differ between processes (trailing ones must agree): the project's one variable-size
    gather. The sizes go first (unless given: `sizes`, every process's first dimension in rank
    order, saves a collective and a read on the host), then the data padded to the largest,
    with fixed-shape collectives, so that nothing is pickled.
    """
    if not ctx.distributed:
        return [tensor.detach()]
    if sizes is None:
        local = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        gathered = torch.empty(ctx.world_size, device=tensor.device, dtype=torch.long)
        dist.all_gather_into_tensor(gathered, local)
        sizes = gathered.tolist()
    longest, rest = max(sizes), tensor.shape[1:]
    padded = tensor.detach().new_zeros((longest, *rest))
    padded[: tensor.shape[0]] = tensor.detach()
    out = tensor.new_empty((ctx.world_size * longest, *rest))
    dist.all_gather_into_tensor(out, padded)
    chunks = out.view(ctx.world_size, longest, *rest)
    return [chunks[rank, :size] for rank, size in enumerate(sizes)]


def cleanup() -> None:
    """Destroys the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
