"""Training faults (kill -9, stop signals, torn log, lost worker), resume rules and launchers.

Each run is tiny (29 questions, a 2-layer model), so a test takes seconds besides starting
Python; the processes that get killed run in subprocesses, re-runs mostly in-process.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    assert_same_run,
    checkpoint_names,
    free_port,
    load_weights,
    read_log,
    reference_batch,
    run_launcher,
    start_training,
    tiny_run_args,
    training_env,
    wait_for_log_lines,
)

import train_dense_encoder
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.checkpoint import to_dpr_layout
from dpr.models.factory import build_biencoder
from dpr.training.optim import build_optimizer
from dpr.training.step import inbatch_loss
from dpr.utils.dist import DistContext

NO_DROPOUT = "1e-12"
FINAL = "dpr_biencoder.1.8"  # the straight run's last checkpoint


def _assert_same_run(got: Path, reference: Path, final: str = FINAL) -> None:
    """Same final weights (1e-6) and the same log, record for record."""
    assert_same_run(got, reference, final)


@pytest.mark.parametrize("lines,torn", [(3, False), (7, True)])
def test_kill_9_then_the_same_command_equals_an_uninterrupted_run(
        tmp_path: Path, straight_run, lines: int, torn: bool) -> None:
    # Given the straight run's command, killed with SIGKILL once its log has `lines` lines
    reference, args = straight_run
    out, console = tmp_path / "out", tmp_path / "console.txt"
    proc = start_training([*args, "--output_dir", str(out)], console)
    wait_for_log_lines(out, lines, proc, console)
    proc.kill()
    assert proc.wait(60) == -signal.SIGKILL
    if torn:  # as if the disk filled up during an append
        with open(out / "training_log.jsonl", "a", encoding="utf-8") as handle:
            handle.write('{"event": "train", "epoch": 0, "itera')
    # When the same command runs again
    assert train_dense_encoder.main([*args, "--output_dir", str(out)]) == 0
    # Then it ends with the weights and the log of the uninterrupted run
    _assert_same_run(out, reference)
    assert set(checkpoint_names(reference)) <= set(checkpoint_names(out))


def test_sigterm_mid_epoch_writes_a_checkpoint_exits_143_and_the_rerun_resumes(
        tmp_path: Path, straight_run) -> None:
    # Given a run that receives SIGTERM after its 6th step (between two checkpoints)
    reference, args = straight_run
    out, console = tmp_path / "out", tmp_path / "console.txt"
    proc = start_training([*args, "--output_dir", str(out)], console)
    wait_for_log_lines(out, 6, proc, console)
    proc.send_signal(signal.SIGTERM)
    # Then it stops within a minute with status 143 and says how to resume
    assert proc.wait(60) == 143, console.read_text()[-3000:]
    text = console.read_text()
    assert "training interrupted by SIGTERM" in text and "run the same command" in text
    assert "Traceback" not in text
    # And it left a resumable checkpoint and no temporary file
    written = text.split("training interrupted by SIGTERM (checkpoint ", 1)[1].split()[0]
    assert Path(written).is_file() and Path(written).name in checkpoint_names(out)
    assert not list(out.glob(".*"))
    # When the same command runs again, it ends like the uninterrupted run
    assert train_dense_encoder.main([*args, "--output_dir", str(out)]) == 0
    _assert_same_run(out, reference)


def test_the_runs_own_checkpoint_wins_over_model_file_in_a_second_round(
        tmp_path: Path, straight_run, capsys) -> None:
    # Given a second round started from the first round's weights, run without interruption
    first, args = straight_run
    round2 = [*args, "--model_file", str(first / FINAL), "--ignore_checkpoint_offset",
              "--ignore_checkpoint_optimizer", "--ignore_checkpoint_lr"]
    straight = tmp_path / "straight"
    assert train_dense_encoder.main([*round2, "--output_dir", str(straight)]) == 0
    # When the same round's command re-runs in a folder where it had stopped mid-epoch 0
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    shutil.copy(straight / "dpr_biencoder.0.4", stopped)
    capsys.readouterr()
    assert train_dense_encoder.main([*round2, "--output_dir", str(stopped)]) == 0
    # Then it resumed its own checkpoint (announced), not --model_file, and kept its progress
    err = capsys.readouterr().err
    assert "Resuming this run from its checkpoint" in err
    assert f"instead of --model_file {first / FINAL}" in err
    assert read_log(stopped)[0]["iteration"] == 5
    a, b = load_weights(stopped / FINAL), load_weights(straight / FINAL)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)


def test_flags_disagreeing_with_the_runs_checkpoint_stop_naming_both_values(
        tmp_path: Path, straight_run, capsys) -> None:
    # Given a folder holding a finished run's checkpoint (trained with --sequence_length 48)
    first, args = straight_run
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(first / FINAL, out)
    # When the command gives another --sequence_length, or --do_lower_case
    for flag, mine, stored in ((["--sequence_length", "64"], "64", "48"),
                               (["--do_lower_case"], "True", "False")):
        assert train_dense_encoder.main([*args, "--output_dir", str(out), *flag]) == 2
        # Then it stops with a message naming the flag, both values and the checkpoint
        err = capsys.readouterr().err
        assert f"--{flag[0].lstrip('-')} {mine} disagrees with {stored} stored in " \
               f"{out / FINAL}" in err
    # And a flag left out falls back to the checkpoint's value
    without = [a for a in args if a not in ("--sequence_length", "48")]
    assert train_dense_encoder.main([*without, "--output_dir", str(out)]) == 0
    assert "sequence_length: 512 -> 48 (from checkpoint)" in capsys.readouterr().err


def test_keep_last_checkpoints_keeps_the_last_n_plus_the_best(
        tmp_path: Path, straight_run) -> None:
    # Given the straight run's command with --keep_last_checkpoints 1
    reference, args = straight_run
    out = tmp_path / "out"
    assert train_dense_encoder.main([*args, "--output_dir", str(out),
                                     "--keep_last_checkpoints", "1"]) == 0
    # Then the last checkpoint and the best one are left, and the best file names the best
    validations = read_log(reference, "validation")
    best = min(validations, key=lambda v: v["value"])
    best_name = Path(best["checkpoint"]).name
    assert checkpoint_names(out) == sorted({FINAL, best_name})
    recorded = json.loads((out / "best_checkpoint.json").read_text())
    assert (Path(recorded["path"]).name, recorded["metric"]) == (best_name, "nll_loss")
    assert recorded["value"] == pytest.approx(best["value"], abs=1e-6)
    assert Path(recorded["path"]).is_file()


# ---- several processes ------------------------------------------------------------------

def _small_train(tmp_path: Path, train: Path, count: int) -> Path:
    small = tmp_path / "small.json"
    small.write_text(json.dumps(json.loads(train.read_text())[:count]), encoding="utf-8")
    return small


def _slurm_tasks(args: list[str], tmp_path: Path, port: int) -> list[subprocess.Popen]:
    """Two `srun`-style tasks: SLURM's variables only, no RANK/WORLD_SIZE."""
    procs = []
    for rank in range(2):
        env = training_env(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank),
                           SLURM_JOB_ID="4242", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(start_training(args, tmp_path / f"task{rank}.txt", env=env))
    return procs


def _first_update_args(model: Path, train: Path, out: Path) -> list[str]:
    # A huge Adam eps makes the first update lr / eps * gradient (scale-sensitive).
    return tiny_run_args(model, train, out, "--batch_size", "3",
            "--hard_negatives", "2", "--other_negatives", "1", "--sequence_length", "48",
            "--num_train_epochs", "1", "--seed", "5", "--learning_rate", "1000",
            "--adam_eps", "1e4", "--max_grad_norm", "0", "--warmup_steps", "0",
            "--dropout", NO_DROPOUT)


def _check_first_update(out: Path, model_folder: Path, train: Path) -> None:
    """Step 1's logged loss and the weights after it equal one process's on both batches,
    with the gradient divided by the 2 processes (DDP averages per-process gradients)."""
    samples = load_samples(str(train))
    tensorizer = build_tensorizer("hf_roberta", str(model_folder), sequence_length=48,
                                  do_lower_case=False)
    batch = reference_batch(samples, tensorizer, seed=5, epoch=0, iteration=1, world_size=2,
                            batch_size=3, num_hard=2, num_other=1)
    model = build_biencoder("hf_roberta", str(model_folder), dropout=float(NO_DROPOUT)).train()
    q, c = model(batch.question_ids, batch.question_mask, batch.ctx_ids, batch.ctx_mask)
    loss = inbatch_loss(q, c, batch.positive_idx, DistContext(), ctx_keys=batch.ctx_keys,
                        positive_keys=batch.positive_keys).loss
    first = read_log(out)[0]
    assert (first["iteration"], first["questions"]) == (1, 6)
    assert first["loss"] == pytest.approx(loss.item(), abs=1e-5)
    start = {k: v.clone() for k, v in to_dpr_layout(model.state_dict()).items()}
    (loss / 2).backward()
    build_optimizer(model, learning_rate=1000, weight_decay=0.0, eps=1e4,
                    betas=(0.9, 0.999)).step()
    expected = to_dpr_layout(model.state_dict())
    trained = load_weights(out / "dpr_biencoder.0.1")
    moved = max((expected[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4  # the update is far above the tolerance, so 1/W is what is checked
    for key, value in expected.items():
        assert torch.allclose(trained[key], value, atol=1e-6), key


def test_two_srun_tasks_train_as_one_job(tmp_path: Path, nodrop_camembert: Path,
                                         dpr_files) -> None:
    # Given two processes started with SLURM's variables only, 6 questions (1 step each)
    train, _ = dpr_files
    small, out = _small_train(tmp_path, train, 6), tmp_path / "out"
    procs = _slurm_tasks(_first_update_args(nodrop_camembert, small, out), tmp_path, free_port())
    # When they train
    codes = [p.wait(300) for p in procs]
    assert codes == [0, 0], (tmp_path / "task0.txt").read_text()[-3000:]
    # Then they were one job of two processes: one checkpoint, one global first step
    assert checkpoint_names(out) == ["dpr_biencoder.0.1"]
    assert "SLURM task 0 of 2 (local 0): rendezvous at 127.0.0.1" in \
        (tmp_path / "task0.txt").read_text()
    _check_first_update(out, nodrop_camembert, small)


def test_two_nodes_first_update_equals_one_process_on_both_batches(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given torchrun on 2 "nodes" of 1 process each (node 1: RANK 1, LOCAL_RANK 0)
    train, _ = dpr_files
    small, out = _small_train(tmp_path, train, 6), tmp_path / "out"
    port = free_port()
    procs = [start_training(_first_update_args(nodrop_camembert, small, out),
                            tmp_path / f"node{node}.txt",
                            prefix=("-m", "torch.distributed.run", "--nnodes", "2",
                                    "--node_rank", str(node), "--nproc_per_node", "1",
                                    "--master_addr", "127.0.0.1", "--master_port", str(port)))
             for node in range(2)]
    # When they train one step
    codes = [p.wait(300) for p in procs]
    assert codes == [0, 0], (tmp_path / "node1.txt").read_text()[-3000:]
    # Then the step is the one of a single process on both batches (rank 1 took shard 1)
    _check_first_update(out, nodrop_camembert, small)


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["dead", "hung"])
def test_losing_one_worker_makes_the_other_fail_within_the_timeout(
        tmp_path: Path, tiny_camembert: Path, dpr_files, fault: int) -> None:
    # Given two srun-style tasks on a long run with a 12-second collective timeout
    train, _ = dpr_files
    out = tmp_path / "out"
    args = tiny_run_args(tiny_camembert, train, out, "--batch_size", "2",
            "--sequence_length", "32", "--num_train_epochs", "1000", "--keep_last_checkpoints",
            "1", "--distributed_timeout_minutes", "0.2")
    procs = _slurm_tasks(args, tmp_path, free_port())
    wait_for_log_lines(out, 2, procs[0], tmp_path / "task0.txt")
    # When task 1 dies (SIGKILL) or hangs (SIGSTOP: its connections stay open)
    procs[1].send_signal(fault)
    started = time.monotonic()
    # Then task 0 exits with an error: at once for a dead peer, after the timeout for a hung one
    try:
        code = procs[0].wait(120)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert code != 0
    waited = time.monotonic() - started
    assert waited < 90
    if fault == signal.SIGSTOP:
        assert waited > 10  # it did wait for the hung peer, about the 12 s given
    assert "Traceback" in (tmp_path / "task0.txt").read_text()


def test_sigterm_to_one_task_stops_both_with_one_checkpoint(
        tmp_path: Path, tiny_camembert: Path, dpr_files) -> None:
    # Given two srun-style tasks on a long run
    train, _ = dpr_files
    out = tmp_path / "out"
    args = tiny_run_args(tiny_camembert, train, out, "--batch_size", "2",
            "--sequence_length", "32", "--num_train_epochs", "1000", "--eval_per_epoch", "1")
    procs = _slurm_tasks(args, tmp_path, free_port())
    wait_for_log_lines(out, 3, procs[0], tmp_path / "task0.txt")
    # When only task 1 receives SIGTERM
    procs[1].send_signal(signal.SIGTERM)
    try:
        codes = [p.wait(60) for p in procs]
    finally:
        for proc in procs:
            proc.kill()
    # Then both stop at the same step with status 143, naming the checkpoint rank 0 wrote
    assert codes == [143, 143], (tmp_path / "task0.txt").read_text()[-3000:]
    task0, task1 = ((tmp_path / f"task{r}.txt").read_text() for r in range(2))
    assert "Another process received SIGTERM: stopping too" in task0
    named = [t.split("(checkpoint ", 1)[1].split()[0] for t in (task0, task1)]
    assert named[0] == named[1] and Path(named[0]).is_file()
    last = read_log(out)[-1]
    assert Path(named[0]).name == f"dpr_biencoder.{last['epoch']}.{last['iteration']}"


def test_resume_under_ddp_with_accumulation_and_grad_cache_equals_uninterrupted(
        tmp_path: Path, nodrop_camembert: Path, dpr_files) -> None:
    # Given a 2-process run with 2 accumulation steps and gradient caching (8 steps, checkpoints
    # at 4 and 8), run straight
    train, _ = dpr_files
    args = ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(nodrop_camembert),
            "--train_file", str(train), "--batch_size", "2", "--sequence_length", "40",
            "--num_train_epochs", "1", "--eval_per_epoch", "2", "--learning_rate", "1000",
            "--adam_eps", "1e4", "--warmup_steps", "2", "--gradient_accumulation_steps", "2",
            "--grad_cache_chunk_size", "3", "--dropout", NO_DROPOUT, "--seed", "4"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = run_launcher("torchrun", [*args, "--output_dir", str(straight)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint_names(straight) == ["dpr_biencoder.0.4", "dpr_biencoder.0.8"]
    # When the same command runs in a folder where it had stopped at step 4
    resumed.mkdir()
    shutil.copy(straight / "dpr_biencoder.0.4", resumed)
    (resumed / "training_log.jsonl").write_text(
        "".join(line + "\n" for line in (straight / "training_log.jsonl").read_text()
                .splitlines()[:4]), encoding="utf-8")
    result = run_launcher("torchrun", [*args, "--output_dir", str(resumed)])
    assert result.returncode == 0, result.stderr[-3000:]
    # Then it ends with the uninterrupted run's weights and log
    _assert_same_run(resumed, straight, final="dpr_biencoder.0.8")

