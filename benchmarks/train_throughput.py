"""Training throughput of a camembert-base-sized bi-encoder: DPR's original behaviour against
the fast modes, run in the same command.

    python benchmarks/train_throughput.py                  # CPU, PIAF lengths
    python benchmarks/train_throughput.py --device cuda    # GPU

Model: two CamemBERT towers of camembert-base's size (12 layers, hidden 768, FFN 3072, 12 heads,
vocabulary 32005), random weights, dropout off (so every mode computes the same loss).
Batches: the blog's shape, 16 questions with 1 positive and 1 hard negative each, sequence
length 256. Texts come from PIAF (question; its paragraph cut to 600 characters as positive,
another article's paragraph as hard negative) or from a DPR file (`--dpr_file`), tokenized by
a SentencePiece unigram model trained on those texts (a stand-in for camembert-base's, which
cannot be downloaded here; lengths in tokens are what matter).

Modes (each in a fresh child process, so peak memory is per mode):
- original: every sequence padded to 256, float32 (what the 2020 code does);
- dynamic: padding to the longest sequence of the batch (multiple of 8), float32;
- dynamic_buckets: dynamic, and each tower encodes length-sorted chunks of 8 sequences, each
  cut to its own longest sequence rounded up to --pad_multiple (the trainer's
  --length_bucket_size 8), float32;
- dynamic_bf16 / dynamic_fp16: dynamic padding under autocast (fp16 with loss scaling, GPU);
- dynamic_buckets_bf16: dynamic_buckets under bfloat16 autocast;
- compiled / compiled_bf16: dynamic / dynamic_bf16 with both towers' encoders compiled
  (the trainer's --compile); warm-up steps include compilation, so give it --warmup >= 3.
AdamW is built as the trainer builds it (fused on GPUs, see dpr.training.optim).
For each: time per step and questions/s over `--steps` timed steps after `--warmup`, peak
memory (RSS on CPU, max allocated on GPU), the first step's loss, the ratio to `original`,
and the efficiency: useful FLOPs (non-padding tokens) per second over the machine's measured
matmul FLOP/s in that mode's precision.
`--grad_cache` adds the memory comparison for a 128-question pool (128 questions + 256
passages in one step) without and with gradient caching, against plain 16-question training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpr.data.batch import BiEncoderBatch  # noqa: E402
from dpr.models.biencoder import BiEncoder  # noqa: E402
from dpr.models.encoder import Encoder  # noqa: E402
from dpr.training.build import compile_towers  # noqa: E402
from dpr.training.optim import build_optimizer  # noqa: E402
from dpr.training.step import grad_cache_step, plain_step  # noqa: E402
from dpr.utils.device import cpu_has_fast_bf16  # noqa: E402
from dpr.utils.dist import DistContext  # noqa: E402

DEFAULT_PIAF = ROOT / ".." / "shared" / "data" / "piaf-v1.0.json"
SIZE = {"layers": 12, "hidden": 768, "ffn": 3072, "heads": 12, "vocab": 32005}
if os.environ.get("BENCH_TINY_MODEL"):  # smoke-testing this script only
    SIZE = {"layers": 2, "hidden": 64, "ffn": 256, "heads": 2, "vocab": 32005}
PAD = 1


# ---------------------------------------------------------------------------- data
def _texts_from_piaf(path: Path, n: int, seed: int) -> list[tuple[str, tuple, tuple]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs = [(a["title"], p) for a in data for p in a["paragraphs"]]
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        i = rng.randrange(len(paragraphs))
        title, para = paragraphs[i]
        qa = rng.choice(para["qas"])
        other_title, other = paragraphs[(i + rng.randrange(1, len(paragraphs))) % len(paragraphs)]
        items.append((qa["question"], (title, para["context"][:600]),
                      (other_title, other["context"][:600])))
    return items


def _texts_from_dpr(path: Path, n: int, seed: int) -> list[tuple[str, tuple, tuple]]:
    records = [r for r in json.loads(path.read_text(encoding="utf-8"))
               if r.get("positive_ctxs") and r.get("hard_negative_ctxs")]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.choice(records)
        pos, neg = r["positive_ctxs"][0], r["hard_negative_ctxs"][0]
        out.append((r["question"], (pos.get("title", ""), pos["text"]),
                    (neg.get("title", ""), neg["text"])))
    return out


def build_token_batches(items, *, batch: int, seq_len: int, workdir: Path) -> list[dict]:
    """Tokenizes (question, positive, hard negative) triples into batches of id lists."""
    from dpr import tiny
    from dpr.data.recipe import passage_items, question_items
    from dpr.data.tensorizer import Tensorizer, build_tokenizer

    corpus = [q for q, _, _ in items] + [t for _, p, h in items for t in (p[1], h[1])]
    tiny.train_sentencepiece(corpus, workdir / "tok", vocab_size=8000)
    tensorizer = Tensorizer(build_tokenizer("hf_roberta", str(workdir / "tok")),
                            max_length=seq_len)
    batches = []
    for start in range(0, len(items) - batch + 1, batch):
        chunk = items[start : start + batch]
        questions = tensorizer.encode_items(question_items([q for q, _, _ in chunk],
                                                           tensorizer.recipe))
        passages = [p for _, pos, neg in chunk for p in (pos, neg)]
        ctx = tensorizer.encode_items(passage_items(passages, tensorizer.recipe))
        batches.append({"questions": questions, "ctx": ctx})
    return batches


def pad(seqs: list[list[int]], *, width: int | None, multiple: int = 8) -> torch.Tensor:
    """Pads id lists to `width`, or to the longest rounded up to `multiple`."""
    if width is None:
        longest = max(len(s) for s in seqs)
        width = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s[:width])
    return ids


def to_batch(raw: dict, *, pad_to: int | None, device: torch.device,
             multiple: int = 8) -> BiEncoderBatch:
    q = pad(raw["questions"], width=pad_to, multiple=multiple)
    c = pad(raw["ctx"], width=pad_to, multiple=multiple)
    n = len(raw["questions"])
    per_q = len(raw["ctx"]) // n
    return BiEncoderBatch(question_ids=q, question_mask=q != PAD, ctx_ids=c, ctx_mask=c != PAD,
                          positive_idx=torch.arange(n) * per_q,
                          hard_negative_idx=[[i * per_q + 1] for i in range(n)]).to(device)


def merge(raws: list[dict]) -> dict:
    return {"questions": [s for r in raws for s in r["questions"]],
            "ctx": [s for r in raws for s in r["ctx"]]}


# ---------------------------------------------------------------------------- model & FLOPs
def build_model(device: torch.device, checkpointing: bool = False) -> BiEncoder:
    from transformers import CamembertConfig, CamembertModel

    config = CamembertConfig(vocab_size=SIZE["vocab"], hidden_size=SIZE["hidden"],
                             num_hidden_layers=SIZE["layers"], num_attention_heads=SIZE["heads"],
                             intermediate_size=SIZE["ffn"], max_position_embeddings=514,
                             type_vocab_size=1, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    torch.manual_seed(0)
    towers = [Encoder(CamembertModel(config, add_pooling_layer=False)) for _ in range(2)]
    if checkpointing:
        for t in towers:
            t.model.gradient_checkpointing_enable({"use_reentrant": False})
    return BiEncoder(*towers).to(device)


def useful_flops(raw: dict) -> float:
    """Training FLOPs (3 x forward) of the non-padding tokens: matmuls and attention."""
    h, f, layers = SIZE["hidden"], SIZE["ffn"], SIZE["layers"]
    total = 0.0
    for seq in raw["questions"] + raw["ctx"]:
        n = len(seq)
        total += layers * (2 * n * (4 * h * h + 2 * h * f) + 4 * n * n * h)
    return 3 * total


def matmul_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul FLOP/s of this machine in `dtype` (best of 5 rounds)."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 3 if device.type == "cpu" else 50
    a @ b
    best = 0.0
    for _ in range(5):  # the best of 5 rounds: a shared host is often slowed for a moment
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- one mode
MODES = {
    "original": {"pad_to": 256, "amp": None, "buckets": 0},
    "dynamic": {"pad_to": None, "amp": None, "buckets": 0},
    "dynamic_buckets": {"pad_to": None, "amp": None, "buckets": 8},
    "dynamic_bf16": {"pad_to": None, "amp": torch.bfloat16, "buckets": 0},
    "dynamic_buckets_bf16": {"pad_to": None, "amp": torch.bfloat16, "buckets": 8},
    "compiled": {"pad_to": None, "amp": None, "buckets": 0, "compile": True},
    "compiled_bf16": {"pad_to": None, "amp": torch.bfloat16, "buckets": 0, "compile": True},
    "dynamic_fp16": {"pad_to": None, "amp": torch.float16, "buckets": 0},
}


def run_mode(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    raws = json.loads(Path(args.batches).read_text())
    mode = MODES[args.mode]
    model = build_model(device, checkpointing=args.checkpointing).train()
    for tower in (model.question_model, model.ctx_model):
        tower.length_bucket_size = mode["buckets"]
        tower.length_bucket_multiple = args.pad_multiple
    if mode.get("compile"):
        compile_towers(model)  # the trainer's --compile
    optimizer = build_optimizer(model, learning_rate=2e-5, weight_decay=0.0, eps=1e-8,
                                betas=(0.9, 0.999))
    scaler = torch.amp.GradScaler(device.type, enabled=mode["amp"] == torch.float16)

    def autocast():
        if mode["amp"] is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=mode["amp"])

    if args.pool:  # one big in-batch pool made of `pool` consecutive batches
        raws = [merge(raws[i : i + args.pool]) for i in range(0, len(raws), args.pool)]
    steps = args.warmup + args.steps
    if len(raws) < steps:
        raise SystemExit(f"need {steps} batches, have {len(raws)}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses, flops = [], [], 0.0
    for i, raw in enumerate(raws[:steps]):
        batch = to_batch(raw, pad_to=mode["pad_to"], device=device, multiple=args.pad_multiple)
        _sync(device)
        start = time.perf_counter()
        common = {"dctx": DistContext(device=device), "autocast": autocast,
                  "scale": scaler.scale, "loss_factor": 1.0, "no_sync": contextlib.nullcontext}
        if args.grad_cache:
            result = grad_cache_step(model, batch, chunk_size=args.grad_cache, sync_last=True,
                                     **common)
        else:
            result = plain_step(model, batch, **common)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        losses.append(result.loss.item())
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            flops += useful_flops(raw)
    questions = len(raws[0]["questions"])
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"mode": args.mode, "pool": args.pool, "grad_cache": args.grad_cache,
            "step_s": sum(times) / len(times),
            "questions_per_s": questions * len(times) / sum(times),
            "first_loss": losses[0], "losses": losses, "peak_bytes": peak,
            "useful_flops_per_s": flops / sum(times), "questions": questions}


# ---------------------------------------------------------------------------- orchestration
def _child(args: argparse.Namespace, batches: Path, mode: str, *, steps: int, warmup: int,
           pool: int = 0, grad_cache: int = 0, limit_gib: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--batches", str(batches),
           "--device", args.device, "--steps", str(steps), "--warmup", str(warmup),
           "--pool", str(pool), "--grad_cache", str(grad_cache),
           "--pad_multiple", str(args.pad_multiple)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def watch() -> None:  # keep a too-big run from taking the machine down
        while proc.poll() is None and limit_gib:
            try:
                rss_kb = int(next(line for line in open(f"/proc/{proc.pid}/status")
                                  if line.startswith("VmRSS")).split()[1])
            except (OSError, StopIteration):
                break
            if rss_kb > limit_gib * 2**20:
                killed.set()
                proc.kill()
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    out, err = proc.communicate()
    if killed.is_set():
        return {"mode": mode, "pool": pool, "grad_cache": grad_cache, "oom": True,
                "peak_bytes": limit_gib * 2**30}
    if proc.returncode != 0:
        raise RuntimeError(f"mode {mode} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()}), torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--piaf", default=str(DEFAULT_PIAF), help="PIAF (SQuAD-format) file")
    parser.add_argument("--dpr_file", default=None, help="Use this DPR training file instead")
    parser.add_argument("--modes", default=None,
                        help="Comma-separated modes (default: original,dynamic,dynamic_buckets,"
                        "dynamic_bf16 on CPU; original,dynamic,dynamic_bf16,"
                        "dynamic_buckets_bf16,dynamic_fp16 on GPU)")
    parser.add_argument("--steps", type=int, default=None, help="Timed steps per mode")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps per mode")
    parser.add_argument("--questions", type=int, default=16,
                        help="Questions per step (the blog's 16 per GPU; 128 for one device "
                        "holding the blog's whole 8 x 16 in-batch pool)")
    parser.add_argument("--grad_cache", type=int, default=0,
                        help="Also compare 128-question pools, with chunks of this size")
    parser.add_argument("--pad_multiple", type=int, default=8,
                        help="Dynamic padding rounds lengths up to a multiple of this (the "
                        "trainer's --pad_to_multiple_of); larger values mean fewer distinct "
                        "shapes, which GPUs prefer")
    parser.add_argument("--memory_limit_gib", type=float, default=20.0,
                        help="Kill (and report as out of memory) a CPU run above this RSS")
    parser.add_argument("--out", default=None, help="Write all results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="original", help=argparse.SUPPRESS)
    parser.add_argument("--batches", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args)))
        return 0
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (10 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    default = ("original,dynamic,dynamic_bf16,dynamic_buckets_bf16,dynamic_fp16" if gpu
               else "original,dynamic,dynamic_buckets,dynamic_bf16")
    modes = (args.modes or default).split(",")
    print(f"Machine: {machine(device)}")
    slow_bf16 = not gpu and not cpu_has_fast_bf16()
    if slow_bf16 and "dynamic_bf16" in modes and not args.modes:
        modes.remove("dynamic_bf16")
        print("This CPU has no bfloat16 instructions (AVX512-BF16/AMX): bfloat16 modes skipped "
              "(emulated bfloat16 is ~100x slower; the trainer's --fp16 falls back to float32)")
    fast = next(m for m in ("dynamic_bf16", "dynamic_buckets", "dynamic") if m in modes)
    peaks = {"float32": matmul_flops(device, torch.float32)}
    if not slow_bf16:
        peaks["bfloat16"] = matmul_flops(device, torch.bfloat16)
    if gpu:
        peaks["float16"] = matmul_flops(device, torch.float16)
    print("Measured matmul FLOP/s: " + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s"
                                                   for k, v in peaks.items()))
    n_batches = max(steps + warmup, 8) + 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        q = args.questions
        items = (_texts_from_dpr(Path(args.dpr_file), q * n_batches, 0) if args.dpr_file
                 else _texts_from_piaf(Path(args.piaf), q * n_batches, 0))
        raws = build_token_batches(items, batch=q, seq_len=256, workdir=work)
        q_len = sum(len(s) for r in raws for s in r["questions"]) / (q * len(raws))
        c_len = sum(len(s) for r in raws for s in r["ctx"]) / (2 * q * len(raws))
        print(f"Batches: {q} questions (mean {q_len:.1f} tokens) + {2 * q} passages (mean "
              f"{c_len:.1f} "
              f"tokens), sequence_length 256; {warmup} warm-up + {steps} timed steps per mode; "
              f"dynamic padding to multiples of {args.pad_multiple}")
        batches = work / "batches.json"
        batches.write_text(json.dumps(raws))
        results = []
        for mode in modes:
            r = _child(args, batches, mode, steps=steps, warmup=warmup)
            amp = MODES[mode]["amp"]
            r["efficiency"] = r["useful_flops_per_s"] / peaks[str(amp or torch.float32)[6:]]
            results.append(r)
            print(f"  {mode}: {r['step_s']:.2f} s/step", flush=True)
        memory = []
        if args.grad_cache:
            limit = None if gpu else args.memory_limit_gib
            for pool, cache in ((0, 0), (8, 0), (8, args.grad_cache)):
                memory.append(_child(args, batches, fast, steps=1, warmup=0, pool=pool,
                                     grad_cache=cache, limit_gib=limit))
    base = next((r for r in results if r["mode"] == "original"), results[0])
    print()
    print("| mode | s/step | questions/s | x original | first loss | peak memory | "
          "useful TFLOP/s | efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['step_s']:.2f} | {r['questions_per_s']:.2f} | "
              f"{r['questions_per_s'] / base['questions_per_s']:.2f} | {r['first_loss']:.4f} | "
              f"{_gib(r['peak_bytes'])} | {r['useful_flops_per_s'] / 1e12:.3f} | "
              f"{100 * r['efficiency']:.1f}% |")
    if memory:
        print()
        print(f"| in-batch pool ({fast}) | peak memory | x plain 16 | s/step | loss |")
        print("|---|---|---|---|---|")
        ref = memory[0]["peak_bytes"]
        for r in memory:
            name = (f"{r['questions'] if 'questions' in r else 16 * (r['pool'] or 1)} questions"
                    + (f", grad cache chunks of {r['grad_cache']}" if r["grad_cache"] else ""))
            if r.get("oom"):
                print(f"| {name} | > {_gib(r['peak_bytes'])} (killed) | - | - | - |")
            else:
                print(f"| {name} | {_gib(r['peak_bytes'])} | {r['peak_bytes'] / ref:.2f} | "
                      f"{r['step_s']:.1f} | {r['first_loss']:.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(device), "matmul": peaks,
                                              "modes": results, "memory": memory}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
