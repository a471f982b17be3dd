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


def test_evaluate_on_cuda_ranks_as_on_cpu(tmp_path: Path, corpus, checkpoint) -> None:
    """dpr.evaluate encodes on the GPU when one is present; the report must match the CPU's."""
    import json

    from dpr import evaluate
    from dpr.data.tsv import read_passages
    from dpr.inference import load_encoder

    passages, qas = corpus
    reports = {}
    for name, extra in (("cuda", []), ("cpu", ["--no_cuda"])):
        out = tmp_path / name
        assert evaluate.main(["--quiet", "--ctx_file", str(passages), "--qa_file", str(qas),
                              "--retrievers", "bm25,dpr,hybrid,rrf", "--dpr_model",
                              str(checkpoint), "--output_dir", str(out), *extra]) == 0
        reports[name] = json.loads((out / "results.json").read_text())
    assert reports["cuda"]["device"] == "cuda"
    assert reports["cuda"]["results"]["bm25"] == reports["cpu"]["results"]["bm25"] | {
        "seconds": reports["cuda"]["results"]["bm25"]["seconds"]}
    rows = list(read_passages(passages).values())
    vectors = {}
    for device in (CUDA, torch.device("cpu")):
        model = load_encoder(str(checkpoint), {}, device=device)
        vectors[device.type] = model.encode_passages([(p.title, p.text) for p in rows])
    scale = abs(vectors["cpu"]).max()
    assert abs(vectors["cuda"] - vectors["cpu"]).max() < 1e-4 * scale
    # a two-step tiny model scores many passages almost alike, so float differences between
    # devices may swap a near-tie: allow one question of the 8 to move at any k
    questions = reports["cpu"]["results"]["dpr"]["questions"]
    for retriever in ("dpr", "hybrid", "rrf"):
        cuda = reports["cuda"]["results"][retriever]["curve"]
        cpu = reports["cpu"]["results"][retriever]["curve"]
        assert max(abs(a - b) for a, b in zip(cuda, cpu)) <= 1 / questions + 1e-9


def test_bucket_plan_and_step_numbers_wait_for_nothing_on_gpu() -> None:
    """Length buckets planned from CPU lengths, the in-batch counts of `sync=False` and the
    queueing of step numbers make no device-to-host copy (sync debug mode: error). The
    transformer is stubbed out: Hugging Face's own attention-mask checks may still sync."""
    from dpr.models.encoder import Encoder
    from dpr.training.progress import StepRecords
    from dpr.training.step import inbatch_loss

    class Stub(torch.nn.Module):
        config = type("Config", (), {"hidden_size": 8})()

        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)

        def forward(self, input_ids, attention_mask, return_dict=True):
            hidden = self.embed(input_ids) * attention_mask[..., None]
            return type("Out", (), {"last_hidden_state": hidden})()

    encoder = Encoder(Stub()).to(CUDA)
    encoder.length_bucket_size, encoder.length_bucket_multiple = 3, 8
    lengths = torch.tensor([5, 17, 3, 20, 1, 9, 16])
    mask = torch.arange(24)[None, :] < lengths[:, None]
    ids = torch.randint(0, 50, mask.shape).to(CUDA)
    mask = mask.to(CUDA)
    torch.cuda.synchronize()
    records = StepRecords(flush_seconds=float("inf"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        vectors = encoder(ids, mask, lengths)
        result = inbatch_loss(vectors, vectors, torch.arange(7, device=CUDA), DistContext(),
                              ctx_keys=torch.arange(7, device=CUDA),
                              positive_keys=torch.arange(7, device=CUDA)[:, None], sync=False)
        records.add(1, 0.1, result._replace(loss=result.loss.detach()))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = encoder._encode(ids, mask)
    assert torch.allclose(vectors, expected, atol=1e-6)
    (numbers,) = records.drain()
    assert numbers.questions == 7 and numbers.loss == pytest.approx(result.loss.item())
