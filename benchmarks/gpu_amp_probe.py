"""Why is autocast slower than float32 at the blog's batch size on a GPU? Times one
camembert-base-sized bi-encoder step in float32 and bfloat16 at fixed and varying lengths in
one process, then profiles a bfloat16 step (top CUDA kernels and CPU-side time)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import build_model  # noqa: E402

from dpr.data.batch import BiEncoderBatch  # noqa: E402
from dpr.training.optim import build_optimizer  # noqa: E402
from dpr.training.step import plain_step  # noqa: E402
from dpr.utils.dist import DistContext  # noqa: E402

dev = torch.device("cuda")


def batch(q_len: int, c_len: int) -> BiEncoderBatch:
    q = torch.randint(5, 32000, (16, q_len), device=dev)
    c = torch.randint(5, 32000, (32, c_len), device=dev)
    q[:, -3:] = 1
    c[:, -10:] = 1
    return BiEncoderBatch(q, q != 1, c, c != 1, torch.arange(16, device=dev) * 2, [])


def run(dtype, lengths, model, opt, steps=10) -> float:
    auto = (lambda: torch.autocast("cuda", dtype=dtype)) if dtype else contextlib.nullcontext
    times = []
    for i, (ql, cl) in enumerate(lengths[: steps + 3]):
        b = batch(ql, cl)
        torch.cuda.synchronize()
        t = time.perf_counter()
        plain_step(model, b, dctx=DistContext(device=dev), autocast=auto, scale=lambda x: x,
                   loss_factor=1.0, no_sync=contextlib.nullcontext)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


model = build_model(dev).train()
opt = build_optimizer(model, learning_rate=1e-5, weight_decay=0.0, eps=1e-8, betas=(0.9, 0.999))
fixed = [(256, 256)] * 13
varying = [(16 + 8 * (i % 3), 136 + 8 * i) for i in range(13)]
same_dyn = [(24, 160)] * 13
for name, lengths in (("fixed 256", fixed), ("dynamic, new shape each step", varying),
                      ("dynamic, same shape", same_dyn)):
    for dtype in (None, torch.bfloat16):
        print(f"{name:30s} {str(dtype):15s} {run(dtype, lengths, model, opt) * 1000:8.1f} ms/step",
              flush=True)
auto = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
b = batch(24, 160)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                        torch.profiler.ProfilerActivity.CUDA]) as prof:
    plain_step(model, b, dctx=DistContext(device=dev), autocast=auto, scale=lambda x: x,
               loss_factor=1.0, no_sync=contextlib.nullcontext)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=8, max_name_column_width=60))
