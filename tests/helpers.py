"""Helpers shared by the training tests."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpr.data.batch import BiEncoderBatch, build_batch
from dpr.data.iterator import ShardedIterator
from dpr.data.records import BiEncoderSample
from dpr.data.tensorizer import Tensorizer
from dpr.models.checkpoint import (
    CheckpointState,
    encoder_params_of,
    save_checkpoint,
    to_reranker_layout,
)
from dpr.models.factory import build_reranker
from dpr.recipe import Recipe
from dpr.training.command_line import build_parser, config_from_args
from dpr.training.config import Config
from dpr.training.curves import TrainingCurves
from dpr.utils.errors import UsageError
from dpr.utils.seed import make_rng

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PIAF = ROOT / ".." / "shared" / "data" / "piaf-v1.0.json"


def skip_or_fail(reason: str) -> None:
    """Skips the calling test for a missing dependency, or fails it under CI=true (where every
    dependency must be present)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; required when CI=true", pytrace=False)
    pytest.skip(reason)


def piaf_location() -> Path:
    """PIAF v1.0 JSON: ``$PIAF_PATH`` if set, else ``../shared/data/piaf-v1.0.json``."""
    return Path(os.environ.get("PIAF_PATH") or DEFAULT_PIAF)


def require_piaf() -> Path:
    """The PIAF file; skips when absent, except under CI=true where absence is a failure."""
    path = piaf_location()
    if not path.is_file():
        skip_or_fail(f"PIAF data set not found at {path} (set PIAF_PATH or place "
                     "piaf-v1.0.json in ../shared/data/)")
    return path


def tiny_run_args(model: Path, train: Path, out: Path, *extra: str) -> list[str]:
    """The flags every tiny hf_roberta training test starts with, then `extra`."""
    return ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(model),
            "--train_file", str(train), "--output_dir", str(out), *extra]


def dev_run_args(model: Path, files: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    """A tiny run on the sample's (train, dev) files, 4 questions per batch (8 batches per
    epoch), 32 tokens, then `extra`."""
    train, dev = files
    return tiny_run_args(model, train, out, "--dev_file", str(dev), "--batch_size", "4",
                         "--sequence_length", "32", *extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launcher(launcher: str, args: list[str], *, nproc: int = 2, timeout: int = 300,
                 script: str = "train_dense_encoder.py") -> subprocess.CompletedProcess:
    """Runs `script` (train_dense_encoder.py) under `torch.distributed.launch` or `torchrun`
    (gloo, CPU)."""
    port = str(free_port())
    if launcher == "launch":
        cmd = [sys.executable, "-m", "torch.distributed.launch", f"--nproc_per_node={nproc}",
               f"--master_port={port}"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={port}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*cmd, script, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def training_env(**extra: str) -> dict[str, str]:
    """The environment of a training subprocess: offline, unbuffered, no launcher variables
    inherited from the test's own environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "MASTER_")) and k not in ("RANK", "WORLD_SIZE",
                                                                     "LOCAL_RANK")}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1", **extra}


def start_training(args: list[str], log: Path, *, prefix: tuple[str, ...] = (),
                   env: dict[str, str] | None = None,
                   script: str = "train_dense_encoder.py") -> subprocess.Popen:
    """Starts `python [prefix] script args` in the background; stdout and stderr go to `log`
    (a pipe could fill up and block the process)."""
    with open(log, "w", encoding="utf-8") as handle:
        return subprocess.Popen([sys.executable, *prefix, script, *args],
                                cwd=ROOT, env=env or training_env(), stdout=handle,
                                stderr=subprocess.STDOUT)


def wait_for_log_lines(out: Path, count: int, proc: subprocess.Popen, console: Path) -> None:
    """Waits until the run writing `out` has logged `count` lines (fails if it exits)."""
    log = out / "training_log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, console.read_text()[-3000:]
        if log.is_file() and log.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.002)
    proc.kill()
    pytest.fail("the run never wrote its log")


def checkpoint_names(folder: Path, prefix: str = "dpr_biencoder") -> list[str]:
    """Sorted names of the checkpoints (and their temporary files) in `folder`."""
    return sorted(p.name for p in folder.glob(f"{prefix}*")) if folder.exists() else []


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


def log_records(folder: Path) -> list[dict]:
    """Every record of a run's log, with checkpoint paths reduced to their file names."""
    lines = (folder / "training_log.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        if "checkpoint" in record:
            record["checkpoint"] = Path(record["checkpoint"]).name
    return records


def assert_same_run(got: Path, reference: Path, final: str) -> None:
    """Same weights in the checkpoint `final` (1e-6) and the same log, record for record."""
    a, b = load_weights(got / final), load_weights(reference / final)
    for key, value in b.items():
        assert torch.allclose(a[key], value, atol=1e-6), key
    mine, theirs = log_records(got), log_records(reference)
    assert [(r["event"], r["epoch"], r["iteration"]) for r in mine] == \
        [(r["event"], r["epoch"], r["iteration"]) for r in theirs]
    for x, y in zip(mine, theirs):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-6), (x, key)
            else:
                assert x[key] == y[key], (x, key)


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


def inbatch_case() -> dict[str, torch.Tensor]:
    """A global in-batch pool of 4 questions x 8 passages with known duplicate positives.

    Rank 0 holds questions 0-1 and passages 0-3, rank 1 questions 2-3 and passages 4-7;
    each question's block is [positive, hard negative]. Keys: q0's positive (100) is also
    q1's positive (same rank) and q2's hard negative (other rank); q1 has a second positive
    (200), q0's hard negative; q2's positive (400) is q1's (other rank) and q3's hard negative.
    Expected masked columns: q0 {2, 5}, q1 {0, 1, 5}, q2 {3, 7}, q3 none.
    """
    generator = torch.Generator().manual_seed(0)
    return {
        "q": torch.randn(4, 3, generator=generator),
        "ctx": torch.randn(8, 3, generator=generator),
        "positive_idx": torch.tensor([0, 2, 4, 6]),
        "ctx_keys": torch.tensor([100, 200, 100, 400, 400, 100, 500, 400]),
        "positive_keys": torch.tensor([[100, -1], [100, 200], [400, -1], [500, -1]]),
    }


def inbatch_worker(rank: int, port: int, out: str) -> None:
    """One of 2 gloo processes computing `inbatch_loss` on its half of `inbatch_case()`;
    saves its loss, counts and its local vectors' gradients to `<out>.<rank>`."""
    import torch.distributed as dist

    from dpr.training.step import inbatch_loss
    from dpr.utils.dist import DistContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        case = inbatch_case()
        q = case["q"][2 * rank : 2 * rank + 2].clone().requires_grad_()
        ctx = case["ctx"][4 * rank : 4 * rank + 4].clone().requires_grad_()
        width = 2 if rank == 0 else 1  # the processes' key widths differ
        result = inbatch_loss(q, ctx, torch.tensor([0, 2]),
                              DistContext(rank=rank, local_rank=rank, world_size=2),
                              ctx_keys=case["ctx_keys"][4 * rank : 4 * rank + 4],
                              positive_keys=case["positive_keys"][2 * rank : 2 * rank + 2,
                                                                  :width])
        result.loss.backward()
        torch.save({"loss": result.loss.detach(), "correct": int(result.correct),
                    "questions": result.questions, "masked": result.masked,
                    "q_grad": q.grad, "ctx_grad": ctx.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def train_e5_checkpoint(folder: Path, model: Path, train_file: Path, *extra: str,
                        records: int = 16) -> Path:
    """Trains a tiny e5-shaped model (`dpr.tiny.make_tiny_e5`) for one epoch of batch 8 on the
    first `records` records, with `extra` recipe flags; returns the checkpoint."""
    import train_dense_encoder

    subset = folder / "train.json"
    chosen = json.loads(train_file.read_text(encoding="utf-8"))[:records]
    subset.write_text(json.dumps(chosen, ensure_ascii=False), encoding="utf-8")
    out = folder / "out"
    assert train_dense_encoder.main([
        "--encoder_model_type", "hf_bert", "--pretrained_model_cfg", str(model),
        "--train_file", str(subset), "--output_dir", str(out), "--batch_size", "8",
        "--sequence_length", "64", "--num_train_epochs", "1", "--warmup_steps", "0",
        "--learning_rate", "1e-3", *extra]) == 0
    (path,) = out.glob("dpr_biencoder.*")
    return path


class NoSpaceWriter:
    """A writable file that fails as a full disk does (ENOSPC) once `room` bytes are written."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room, self.written = handle, room, 0

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def parse_config(argv: list[str]) -> Config:
    """The `Config` of a training command line, ending through `parser.error` (exit 2) on
    invalid values, as `train_dense_encoder.py` does."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return config_from_args(parser, argv, args)
    except UsageError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def read_curves(log_file: Path, *, batches: int, accumulation: int) -> dict:
    """The points of a `training_log.jsonl` (see `TrainingCurves.points`)."""
    curves = TrainingCurves(batches=batches, accumulation=accumulation)
    for line in log_file.read_text(encoding="utf-8").splitlines():
        curves.add(json.loads(line))
    return curves.points()


def snippets(card: str) -> list[str]:
    """The Python code blocks of a model card."""
    return re.findall(r"^```python\n(.*?)^```", card, flags=re.S | re.M)


def spread_weights(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every weight matrix but the layer norms' drawn at std 0.3 (the global
    generator), so that its outputs differ by more than rounding."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and "LayerNorm" not in name:
                param.normal_(std=0.3)
    return model


def reranker_checkpoint(path: Path, base: Path, encoder_type: str, recipe: Recipe) -> Path:
    """A random tiny reranker trained by `recipe`, its weights large enough that the pairs'
    scores differ by more than rounding."""
    torch.manual_seed(0)
    model = spread_weights(build_reranker(encoder_type, str(base), recipe=recipe,
                                          head_init="random"))
    params = encoder_params_of({"encoder_model_type": encoder_type,
                                "pretrained_model_cfg": str(base), "pretrained_file": None,
                                "projection_dim": 0, **vars(recipe)}, reranker=True)
    save_checkpoint(CheckpointState(model_dict=to_reranker_layout(model.state_dict()),
                                    encoder_params=params), path)
    return path


def exported_reranker(root: Path, base: Path, encoder_type: str, *,
                      sequence_length: int) -> tuple[Path, Path]:
    """(checkpoint, CrossEncoder folder `root/ce`) of `reranker_checkpoint` on `base`
    exported with `python -m dpr2hf` (positional form)."""
    from dpr2hf.cli import main

    ckpt = reranker_checkpoint(root / "reranker.0.0", base, encoder_type,
                               Recipe(sequence_length=sequence_length))
    assert main([str(ckpt), "--output_dir", str(root / "ce")]) == 0
    return ckpt, root / "ce"
