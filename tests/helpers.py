"""Helpers shared by the training tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from dpr.data.batch import BiEncoderBatch, build_batch
from dpr.data.iterator import ShardedIterator
from dpr.data.records import BiEncoderSample
from dpr.data.tensorizer import Tensorizer
from dpr.utils.seed import make_rng

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launcher(launcher: str, args: list[str], *, nproc: int = 2,
                 timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs train_dense_encoder.py under `torch.distributed.launch` or `torchrun` (gloo, CPU)."""
    port = str(free_port())
    if launcher == "launch":
        cmd = [sys.executable, "-m", "torch.distributed.launch", f"--nproc_per_node={nproc}",
               f"--master_port={port}"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={port}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*cmd, "train_dense_encoder.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_log(output_dir: Path, event: str = "train") -> list[dict]:
    lines = (output_dir / "training_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def reference_batch(samples: list[BiEncoderSample], tensorizer: Tensorizer, *, seed: int,
                    epoch: int, iteration: int, world_size: int, batch_size: int,
                    num_hard: int, num_other: int) -> BiEncoderBatch:
    """The batch one process would see if it received every rank's batch, concatenated in
    rank order, at (epoch, iteration) of a training run."""
    indices: list[int] = []
    for rank in range(world_size):
        it = ShardedIterator(len(samples), rank=rank, world_size=world_size,
                             batch_size=batch_size, shuffle=True, seed=seed)
        indices += dict(it.batches(epoch))[iteration]
    return build_batch([samples[i] for i in indices], tensorizer, num_hard=num_hard,
                       num_other=num_other, rngs=[make_rng(seed, epoch, i) for i in indices])


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_dict"]


def blog_args(encoder_model_type: str, model: Path, train: Path, dev: Path,
              out: Path) -> list[str]:
    """The 2020 blog's training command, flag for flag; paths, sizes and epoch counts scaled
    down (the model folder serves as both --pretrained_file and --pretrained_model_cfg)."""
    return ["--max_grad_norm", "2.0", "--encoder_model_type", encoder_model_type,
            "--pretrained_file", str(model), "--seed", "12345", "--sequence_length", "64",
            "--warmup_steps", "4", "--batch_size", "4", "--do_lower_case",
            "--train_file", str(train), "--dev_file", str(dev), "--output_dir", f"{out}/",
            "--learning_rate", "2e-05", "--num_train_epochs", "3", "--dev_batch_size", "4",
            "--val_av_rank_start_epoch", "2", "--pretrained_model_cfg", f"{model}/"]

# passages of the evaluation tests' corpus: odd, so that 2 shards differ in size (DPR lost the
# last row)
NUM_PASSAGES = 17
