"""CUDA checks (marker `gpu`, deselected by default): run with `pytest -m gpu tests/gpu` on a
machine with a GPU. NCCL process group, float16 (loss scaling) and bfloat16 autocast steps,
and the equivalences of dynamic padding and gradient caching on the GPU."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from helpers import read_log, run_launcher

import train_dense_encoder
from dpr.data.batch import build_batch
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.factory import build_biencoder
from dpr.training.step import grad_cache_step, plain_step
from dpr.utils.dist import DistContext

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def _args(model: Path, train: Path, out: Path) -> list[str]:
    return ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(model),
            "--train_file", str(train), "--output_dir", str(out), "--batch_size", "8",
            "--sequence_length", "64", "--num_train_epochs", "2", "--learning_rate", "1e-3",
            "--warmup_steps", "0"]


def test_nccl_process_group_trains_under_torchrun(tmp_path: Path, tiny_camembert, dpr_files):
    train, _ = dpr_files
    out = tmp_path / "out"
    result = run_launcher("torchrun", _args(tiny_camembert, train, out), nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "dpr_biencoder.1.4").is_file()
    assert "device cuda:0" in result.stderr


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_step_on_gpu(tmp_path: Path, tiny_camembert, dpr_files, capsys,
                                     dtype: str) -> None:
    train, _ = dpr_files
    out = tmp_path / "out"
    assert train_dense_encoder.main([*_args(tiny_camembert, train, out), "--fp16",
                                     "--amp_dtype", dtype]) == 0
    err = capsys.readouterr().err
    assert f"{dtype} autocast on cuda" in err
    losses = [r["loss"] for r in read_log(out)]
    assert len(losses) == 8 and all(0 < x < 20 for x in losses)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_cache_and_dynamic_padding_match_full_batch_on_gpu(nodrop_camembert, dpr_files):
    samples = load_samples(str(dpr_files[0]))[:6]
    null = contextlib.nullcontext
    results = {}
    for name, pad_to_max, chunk in (("fixed", True, 0), ("dynamic", False, 0),
                                    ("cached", False, 4)):
        tz = build_tensorizer("hf_roberta", str(nodrop_camembert), sequence_length=96,
                              do_lower_case=False, pad_to_max=pad_to_max)
        batch = build_batch(samples, tz, num_hard=2, num_other=1).to(CUDA)
        model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).to(CUDA).train()
        common = {"dctx": DistContext(device=CUDA), "autocast": null, "scale": lambda t: t,
                  "loss_factor": 1.0, "no_sync": null}
        if chunk:
            r = grad_cache_step(model, batch, chunk_size=chunk, sync_last=True, **common)
        else:
            r = plain_step(model, batch, **common)
        results[name] = (r.loss.item(), _grads(model))
    for name in ("dynamic", "cached"):
        assert results[name][0] == pytest.approx(results["fixed"][0], abs=1e-4)
        for key, grad in results["fixed"][1].items():
            assert torch.allclose(results[name][1][key], grad, atol=1e-4), (name, key)
