"""Where a process computes (`select_device`) and in which precision (`autocast_dtype`): the
one decision of each, for every tool.
"""

from __future__ import annotations

import logging

import torch

from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


def _parse(name: str, flag: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"{flag} {name!r}: {err}") from err
    if device.type == "cuda" and (not torch.cuda.is_available() or
                                  (device.index or 0) >= torch.cuda.device_count()):
        raise UsageError(f"{flag} {name}: no such CUDA device here")
    return device


def select_device(device: str | None = None, *, no_cuda: bool = False, local_rank: int = -1,
                  flag: str = "--device") -> torch.device:
    """The device this process computes on.

    Without a `device` name, the GPU of this process (by local rank, -1 for a single process)
    when there is one, else the CPU; `no_cuda` (DPR's `--no_cuda`) means the CPU. An explicit
    CUDA device of a process started by a launcher gives way to the GPU of its local rank,
    with a warning, so that processes do not share a GPU. An unknown device name or a GPU
    that is not there is a `UsageError` naming `flag`.
    """
    if no_cuda:
        return torch.device("cpu")
    if device is not None:
        chosen = _parse(device, flag)
        if chosen.type != "cuda" or local_rank < 0:
            return chosen
        if chosen.index is not None:
            logger.warning("%s %s ignored: each process uses the GPU of its local rank", flag,
                           device)
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", max(local_rank, 0) % torch.cuda.device_count())


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX); without them
    bfloat16 matmuls are emulated, about 100 times slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(use_amp: bool, choice: str, device: torch.device, *,
                   flag: str = "--fp16") -> torch.dtype | None:
    """The autocast type that mixed precision (`flag`) with `--amp_dtype choice` means on
    `device`, None for float32: `auto` is bfloat16 on GPUs that support it, else float16; on a
    CPU, bfloat16 where it has bfloat16 instructions, else float32 with a warning (float16 and
    emulated bfloat16 run far slower there: docs/PERFORMANCE.md). `bfloat16` / `float16` force
    that type.
    """
    if not use_amp:
        return None
    if choice != "auto":
        return getattr(torch, choice)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_has_fast_bf16():
        return torch.bfloat16
    logger.warning("%s: this CPU has no bfloat16 instructions (AVX512-BF16/AMX), where mixed "
                   "precision runs far slower than float32; staying in float32 (--amp_dtype "
                   "bfloat16 forces it)", flag)
    return None
