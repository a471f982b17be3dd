"""Dynamic padding, gradient caching, gradient checkpointing and bf16 autocast against the
plain full-batch computation; duplicate-positive masking of the in-batch loss, in one process
and across two (gloo); a training loss that is no longer finite stops the run, naming where."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import (
    checkpoint_names,
    dev_run_args,
    free_port,
    inbatch_case,
    inbatch_worker,
    read_log,
    run_launcher,
)

import train_dense_encoder
from dpr.data.batch import build_batch
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.checkpoint import to_dpr_layout
from dpr.models.encoder import bucket_plan
from dpr.models.factory import build_biencoder
from dpr.training.run_dir import BEST_FILE
from dpr.training.step import (
    SCALER_TOLERANCE,
    LossGuard,
    NonFiniteLossError,
    _RngState,
    grad_cache_step,
    inbatch_loss,
    plain_step,
)
from dpr.utils.dist import DistContext
from dpr.utils.logging import setup_logging

NULL = contextlib.nullcontext
# Float32 sums over a padded and an unpadded sequence differ only in reduction order.
ATOL = 1e-5
NAN = float("nan")


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@pytest.fixture(scope="module")
def samples(dpr_files):
    return load_samples(str(dpr_files[0]))[:5]


def _batch(folder: Path, samples, *, pad_to_max: bool, multiple: int = 1):
    tz = build_tensorizer("hf_roberta", str(folder), sequence_length=96, do_lower_case=False,
                          pad_to_max=pad_to_max, pad_to_multiple_of=multiple)
    return build_batch(samples, tz, num_hard=2, num_other=1)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _plain(model, batch):
    model.zero_grad()
    result = plain_step(model, batch, dctx=DistContext(), autocast=NULL, scale=_identity,
                        loss_factor=1.0, no_sync=NULL)
    return result, _grads(model)


def _assert_same(a, b, atol=ATOL) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol), (name, (a[name] - b[name]).abs().max())


def test_dynamic_padding_gives_the_loss_and_gradients_of_pad_to_max(nodrop_camembert, samples):
    # Given the same batch padded to --sequence_length and to its longest sequence (x8)
    fixed = _batch(nodrop_camembert, samples, pad_to_max=True)
    dynamic = _batch(nodrop_camembert, samples, pad_to_max=False, multiple=8)
    assert fixed.ctx_ids.shape[1] == 96
    assert dynamic.ctx_ids.shape[1] < 96 and dynamic.ctx_ids.shape[1] % 8 == 0
    assert dynamic.question_ids.shape[1] < dynamic.ctx_ids.shape[1]
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    # When computing the loss and gradients of both
    r_fixed, g_fixed = _plain(model, fixed)
    r_dyn, g_dyn = _plain(model, dynamic)
    # Then they agree within float tolerance
    assert r_fixed.loss.item() == pytest.approx(r_dyn.loss.item(), abs=ATOL)
    _assert_same(g_fixed, g_dyn)


@pytest.mark.parametrize("chunk,fix_ctx", [(2, False), (3, False), (4, True)])
def test_grad_cache_gives_the_loss_and_gradients_of_the_full_batch(
        nodrop_camembert, samples, chunk: int, fix_ctx: bool) -> None:
    batch = _batch(nodrop_camembert, samples, pad_to_max=False)
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0,
                            fix_ctx_encoder=fix_ctx).train()
    full, g_full = _plain(model, batch)
    model.zero_grad()
    cached = grad_cache_step(model, batch, dctx=DistContext(), autocast=NULL, scale=_identity,
                             loss_factor=1.0, no_sync=NULL, chunk_size=chunk, sync_last=True)
    assert cached.loss.item() == pytest.approx(full.loss.item(), abs=1e-6)
    assert (cached.correct, cached.questions) == (full.correct, full.questions)
    _assert_same(g_full, _grads(model))


def test_grad_cache_replays_dropout_exactly(tiny_camembert, samples) -> None:
    # Given a model with dropout: grad caching must re-encode each chunk with the same masks
    batch = _batch(tiny_camembert, samples, pad_to_max=False)
    model = build_biencoder("hf_roberta", str(tiny_camembert)).train()
    torch.manual_seed(0)
    cached = grad_cache_step(model, batch, dctx=DistContext(), autocast=NULL, scale=_identity,
                             loss_factor=1.0, no_sync=NULL, chunk_size=4, sync_last=True)
    g_cached = _grads(model)
    # When back-propagating through the same chunked forward passes with a full graph
    model.zero_grad()
    torch.manual_seed(0)
    qs, cs = [], []
    for i in range(0, batch.ctx_ids.shape[0], 4):
        state = _RngState(torch.device("cpu"))
        state.restore()
        q_ids = batch.question_ids[i : i + 4] if i < batch.question_ids.shape[0] else None
        q, c = model(q_ids, None if q_ids is None else batch.question_mask[i : i + 4],
                     batch.ctx_ids[i : i + 4], batch.ctx_mask[i : i + 4])
        qs += [q] if q is not None else []
        cs.append(c)
    loss = inbatch_loss(torch.cat(qs), torch.cat(cs), batch.positive_idx, DistContext(),
                        ctx_keys=batch.ctx_keys, positive_keys=batch.positive_keys).loss
    loss.backward()
    # Then loss and gradients are the same
    assert cached.loss.item() == pytest.approx(loss.item(), abs=1e-6)
    _assert_same(g_cached, _grads(model))


def test_gradient_checkpointing_keeps_gradients(nodrop_camembert, samples) -> None:
    batch = _batch(nodrop_camembert, samples, pad_to_max=False)
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    _, plain = _plain(model, batch)
    for tower in (model.question_model, model.ctx_model):
        tower.model.gradient_checkpointing_enable({"use_reentrant": False})
    _, checkpointed = _plain(model, batch)
    _assert_same(plain, checkpointed)


def test_bf16_autocast_training_step_runs_on_cpu(tmp_path: Path, tiny_camembert, dpr_files,
                                                 capsys) -> None:
    train, _ = dpr_files
    out = tmp_path / "out"
    rc = train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(train), "--output_dir", str(out), "--batch_size", "8",
        "--sequence_length", "64", "--num_train_epochs", "1", "--fp16", "--amp_dtype",
        "bfloat16", "--learning_rate",
        "1e-3", "--warmup_steps", "0", "--gradient_checkpointing", "--grad_cache_chunk_size",
        "5"])
    assert rc == 0
    assert "bfloat16 autocast on cpu" in capsys.readouterr().err
    losses = [r["loss"] for r in read_log(out)]
    assert len(losses) == 4 and all(0 < x < 20 for x in losses)
    assert (out / "dpr_biencoder.0.4").is_file()


def test_grad_cache_with_two_processes_matches_plain_training(tmp_path: Path, nodrop_camembert,
                                                              dpr_files) -> None:
    # Given the same 2-process run without and with gradient caching (DDP + accumulation).
    # Adam's first steps move each weight by about lr * sign(gradient), so float noise in a
    # near-zero gradient could flip a weight by 2 lr; a huge eps turns Adam into plain SGD
    # (update = lr / eps * gradient), so the weights reflect the gradients themselves.
    train, _ = dpr_files
    base = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(nodrop_camembert),
            "--train_file", str(train), "--batch_size", "4", "--sequence_length", "64",
            "--num_train_epochs", "1", "--learning_rate", "1000", "--adam_eps", "1e4",
            "--warmup_steps", "0", "--gradient_accumulation_steps", "2", "--dropout", "1e-12",
            "--seed", "2"]
    outs = []
    for extra in ([], ["--grad_cache_chunk_size", "3"]):
        out = tmp_path / f"out{len(outs)}"
        result = run_launcher("torchrun", [*base, "--output_dir", str(out), *extra])
        assert result.returncode == 0, result.stderr[-3000:]
        outs.append(out)
    # Then the losses and the final weights agree
    plain, cached = (read_log(o) for o in outs)
    assert [r["loss"] for r in plain] == pytest.approx([r["loss"] for r in cached], abs=1e-5)
    a, b = (torch.load(o / "dpr_biencoder.0.4", weights_only=True)["model_dict"] for o in outs)
    init = build_biencoder("hf_roberta", str(nodrop_camembert)).state_dict()
    moved = max((a[k] - v).abs().max().item() for k, v in to_dpr_layout(init).items())
    assert moved > 5e-4  # training moved the weights by about 1000x the tolerance below
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_fp16_on_a_cpu_without_bf16_instructions_falls_back_to_float32(
        tmp_path: Path, tiny_camembert, dpr_files, capsys, monkeypatch) -> None:
    import dpr.utils.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    train, _ = dpr_files
    rc = train_dense_encoder.main([
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_camembert),
        "--train_file", str(train), "--output_dir", str(tmp_path), "--batch_size", "16",
        "--sequence_length", "32", "--num_train_epochs", "1", "--fp16"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "no bfloat16 instructions" in err and "autocast" not in err


def test_length_buckets_give_the_vectors_and_gradients_of_one_pass(nodrop_camembert,
                                                                     samples) -> None:
    # Given a batch whose passages have different lengths
    batch = _batch(nodrop_camembert, samples, pad_to_max=False)
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    r_one, g_one = _plain(model, batch)
    # When each tower encodes in length-sorted chunks of 3, each trimmed to its longest row
    for tower in (model.question_model, model.ctx_model):
        tower.length_bucket_size = 3
    r_buckets, g_buckets = _plain(model, batch)
    # Then loss and gradients are those of the single pass
    assert r_buckets.loss.item() == pytest.approx(r_one.loss.item(), abs=ATOL)
    _assert_same(g_one, g_buckets)
    lengths = batch.ctx_mask.sum(1)
    assert lengths.min() < lengths.max()  # the case is not trivial


def test_rounded_buckets_planned_from_cpu_lengths_give_the_one_pass_result(
        nodrop_camembert, samples, monkeypatch) -> None:
    # Given a batch padded to x8, its CPU row lengths (kept by .to()), and towers that bucket
    # by 3 with widths rounded up to multiples of 16
    batch = _batch(nodrop_camembert, samples, pad_to_max=False, multiple=8).to("cpu")
    assert torch.equal(batch.ctx_lengths, batch.ctx_mask.sum(1))
    assert torch.equal(batch.question_lengths, batch.question_mask.sum(1))
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    r_one, g_one = _plain(model, batch)
    widths = {"question_model": [], "ctx_model": []}
    for name in widths:
        tower = getattr(model, name)
        tower.length_bucket_size, tower.length_bucket_multiple = 3, 16
        encode = tower._encode

        def recording(ids, mask, encode=encode, seen=widths[name]):
            seen.append(ids.shape[1])
            return encode(ids, mask)
        monkeypatch.setattr(tower, "_encode", recording)
    # When the step runs on it (the towers get the lengths, not only the masks)
    monkeypatch.setattr(torch.Tensor, "sum", _no_mask_sums(torch.Tensor.sum))
    r_buckets, g_buckets = _plain(model, batch)
    monkeypatch.undo()
    # Then loss and gradients are those of one pass, and every bucket width is a multiple of
    # 16 or the batch's own padded width
    assert r_buckets.loss.item() == pytest.approx(r_one.loss.item(), abs=ATOL)
    _assert_same(g_one, g_buckets)
    full = {"question_model": batch.question_ids.shape[1], "ctx_model": batch.ctx_ids.shape[1]}
    for name, seen in widths.items():
        assert seen and all(w % 16 == 0 or w == full[name] for w in seen), (name, seen)
    assert len(widths["ctx_model"]) == -(-batch.ctx_ids.shape[0] // 3)
    assert min(widths["ctx_model"]) < full["ctx_model"]  # buckets did cut padding


def _no_mask_sums(sum_):
    """Tensor.sum that refuses to count a bool mask's rows (the plan must use the lengths)."""
    def checked(self, *args, **kwargs):
        if self.dtype == torch.bool and self.dim() == 2 and (args[:1] == (1,)
                                                             or kwargs.get("dim") == 1):
            raise AssertionError("bucket plan counted the mask on the device")
        return sum_(self, *args, **kwargs)
    return checked


def test_bucket_plan_sorts_longest_first_and_rounds_widths_up_to_the_cap() -> None:
    lengths = torch.tensor([5, 17, 3, 33, 0, 9, 16])
    order, widths = bucket_plan(lengths, size=3, multiple=8, max_width=36)
    assert order.tolist() == [3, 1, 6, 5, 0, 2, 4]
    # buckets: (33, 17, 16) -> 40 capped to 36; (9, 5, 3) -> 16; (0,) -> 8
    assert widths == [36, 16, 8]
    assert bucket_plan(lengths, size=3)[1] == [33, 9, 1]  # exact; never 0 wide


def test_grad_cache_with_rounded_buckets_gives_the_full_batch_result(nodrop_camembert,
                                                                     samples) -> None:
    batch = _batch(nodrop_camembert, samples, pad_to_max=False, multiple=8).to("cpu")
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    full, g_full = _plain(model, batch)
    for tower in (model.question_model, model.ctx_model):
        tower.length_bucket_size, tower.length_bucket_multiple = 2, 8
    model.zero_grad()
    cached = grad_cache_step(model, batch, dctx=DistContext(), autocast=NULL, scale=_identity,
                             loss_factor=1.0, no_sync=NULL, chunk_size=4, sync_last=True)
    assert cached.loss.item() == pytest.approx(full.loss.item(), abs=ATOL)
    _assert_same(g_full, _grads(model))


MASKED = {0: [2, 5], 1: [0, 1, 5], 2: [3, 7], 3: []}


def _by_hand(q: torch.Tensor, ctx: torch.Tensor, positive_idx: list[int],
             masked: dict[int, list[int]]) -> tuple[torch.Tensor, int]:
    """Mean -log softmax of each positive over the columns left after removing the masked
    ones, and the number of questions whose best remaining column is their positive."""
    losses, correct = [], 0
    for i, pos in enumerate(positive_idx):
        kept = [j for j in range(ctx.shape[0]) if j not in masked[i]]
        row = torch.stack([q[i] @ ctx[j] for j in kept])
        losses.append(torch.logsumexp(row, 0) - q[i] @ ctx[pos])
        correct += int(kept[int(row.argmax())] == pos)
    return torch.stack(losses).mean(), correct


def test_inbatch_loss_masks_copies_of_positives_as_computed_by_hand() -> None:
    # Given the 4 x 8 pool with known duplicates
    case = inbatch_case()
    # When computing the loss with the passage keys
    result = inbatch_loss(case["q"], case["ctx"], case["positive_idx"], DistContext(),
                          ctx_keys=case["ctx_keys"], positive_keys=case["positive_keys"])
    # Then it is the loss with the duplicate columns removed, and 7 columns were masked
    expected, correct = _by_hand(case["q"], case["ctx"], [0, 2, 4, 6], MASKED)
    assert torch.allclose(result.loss, expected, atol=1e-6)
    assert (int(result.correct), result.questions, result.masked) == (correct, 4, 7)
    # And the masking matters: DPR's loss (no keys) is the hand loss with nothing removed
    plain = inbatch_loss(case["q"], case["ctx"], case["positive_idx"], DistContext())
    no_mask, _ = _by_hand(case["q"], case["ctx"], [0, 2, 4, 6], {i: [] for i in range(4)})
    assert torch.allclose(plain.loss, no_mask, atol=1e-6) and plain.masked == 0
    assert abs(plain.loss.item() - result.loss.item()) > 1e-3


def test_inbatch_loss_masks_copies_across_two_gloo_processes(tmp_path: Path) -> None:
    # Given the same pool split over 2 processes (copies of positives on the other process)
    out = str(tmp_path / "result")
    # When each process computes the loss on its half and back-propagates
    mp.spawn(inbatch_worker, args=(free_port(), out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    # Then both report the global masked loss of the hand computation, and the counts
    case = inbatch_case()
    q = case["q"].clone().requires_grad_()
    ctx = case["ctx"].clone().requires_grad_()
    expected, correct = _by_hand(q, ctx, [0, 2, 4, 6], MASKED)
    expected.backward()
    for rank, result in enumerate(results):
        assert torch.allclose(result["loss"], expected.detach(), atol=1e-6)
        assert (result["correct"], result["questions"], result["masked"]) == (correct, 4, 7)
        # And each process's gradients are those of its own vectors in the global loss
        assert torch.allclose(result["q_grad"], q.grad[2 * rank : 2 * rank + 2], atol=1e-6)
        assert torch.allclose(result["ctx_grad"], ctx.grad[4 * rank : 4 * rank + 4],
                              atol=1e-6)


def test_guard_without_loss_scaling_stops_at_the_first_non_finite_loss() -> None:
    # Given 8 batches per epoch, 2 per update, float32 training
    guard = LossGuard(batches=8, accumulation=2, scaled=False)
    # When step 3 of epoch 1 has an infinite loss, then the losses are NaN
    for iteration, loss in ((1, 0.9), (2, 0.8), (3, math.inf), (4, NAN)):
        guard.observe(1, iteration, loss)
    # Then the check stops the run naming the first bad step and its update (4 + 2)
    with pytest.raises(NonFiniteLossError, match=r"^training loss is inf at epoch 1, step 3/8 "
                       r"\(update 6\): the run diverged"):
        guard.check()


def test_guard_checks_nothing_while_every_loss_is_finite() -> None:
    guard = LossGuard(batches=4, accumulation=1, scaled=False)
    for iteration in range(1, 5):
        guard.observe(0, iteration, 1.0 / iteration)
    guard.check()


def test_guard_under_loss_scaling_tolerates_a_few_skipped_steps_in_a_row(caplog) -> None:
    # Given float16 training with a loss scaler (it skips the updates of such steps)
    guard = LossGuard(batches=100, accumulation=1, scaled=True)
    # When fewer than SCALER_TOLERANCE non-finite steps come in a row, twice
    for start in (1, 10):
        for iteration in range(start, start + SCALER_TOLERANCE - 1):
            guard.observe(0, iteration, NAN)
            guard.check()
        guard.observe(0, start + SCALER_TOLERANCE - 1, 2.0)  # a finite one resets the count
    # Then training goes on, each one warned about
    assert caplog.text.count("the float16 loss scaler skips this update") == \
        2 * (SCALER_TOLERANCE - 1)
    # But SCALER_TOLERANCE in a row stop it, naming the first of them
    for iteration in range(20, 20 + SCALER_TOLERANCE):
        guard.observe(0, iteration, NAN)
    with pytest.raises(NonFiniteLossError, match=rf"not finite for {SCALER_TOLERANCE} steps in "
                       r"a row from epoch 0, step 20/100 \(update 20\) despite float16"):
        guard.check()


@pytest.mark.usefixtures("restore_root_logging")
def test_learning_rate_1e6_stops_training_with_one_error_naming_the_step(
        tmp_path: Path, tiny_camembert: Path, dpr_files, capsys) -> None:
    # Given a tiny run whose learning rate makes the loss NaN after the first update
    out = tmp_path / "out"
    args = dev_run_args(tiny_camembert, dpr_files, out, "--num_train_epochs", "2",
                        "--eval_per_epoch", "2", "--warmup_steps", "0", "--learning_rate", "1e6")
    setup_logging()
    # When training
    status = train_dense_encoder.main(args)
    # Then it exits 1 with one line naming the step, without a traceback
    err = capsys.readouterr().err
    assert status == 1, err
    errors = [line for line in err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert "training loss is nan at epoch 0, step 2/8 (update 2): the run diverged" in errors[0]
    # and no checkpoint was written from the diverged weights, none named best
    assert checkpoint_names(out) == []
    assert not (out / BEST_FILE).exists()
