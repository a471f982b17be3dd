"""Corpus encoding throughput of a camembert-base-sized passage encoder: the inference recipe
against the original's way, run in the same command.

    python benchmarks/encode_throughput.py                  # CPU, 256 PIAF passages
    python benchmarks/encode_throughput.py --device cuda    # GPU, 20,000 passages

Passages: PIAF paragraphs cut into 100-word passages (DPR's corpus format), with their article
titles, repeated to `--passages` when PIAF has fewer; tokenized by a SentencePiece unigram
model trained on them at run time (a stand-in for camembert-base's, which cannot be
downloaded here: lengths in tokens are what matter). Model: one tower of camembert-base's size
(12 layers, hidden 768, FFN 3072, 12 heads), random weights, eval mode.

Modes, all through `dpr.data.recipe.encode_in_batches`, the function every tool encodes with:
- original: every passage padded to 256 in corpus order, tokenized batch by batch on the
  critical path, float32 (what the 2020 code does);
- recipe: length-sorted windows, each batch padded to its longest passage rounded up to a
  multiple of 8 (the tools' setting; a multiple of 1 measured no faster on a CPU),
  the next window tokenized in a thread, float32;
- recipe_bf16 (GPU, or a CPU with bfloat16 instructions): the recipe under bfloat16 autocast.

Printed: passages/s, the ratio to `original`, the padding bound (padded tokens of `original`
over real tokens: the speed-up that removing all padding would give if time were linear in
tokens), the share of that bound each mode reaches, the largest difference of its vectors
from `original`'s, and the efficiency: useful forward FLOPs (real tokens only) per second
over this machine's measured matmul FLOP/s in that precision.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_throughput import DEFAULT_PIAF, SIZE, machine, matmul_flops  # noqa: E402

from dpr.data.recipe import encode_in_batches, passage_items  # noqa: E402
from dpr.data.tensorizer import Tensorizer, build_tokenizer  # noqa: E402
from dpr.models.encoder import Encoder  # noqa: E402
from dpr.recipe import Recipe  # noqa: E402
from dpr.utils.device import cpu_has_fast_bf16  # noqa: E402

SEQ_LEN = 256


def piaf_passages(path: Path, words: int = 100) -> list[tuple[str, str]]:
    """(title, text) passages of `words` words cut from PIAF's paragraphs, in a fixed shuffled
    order."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        for paragraph in article["paragraphs"]:
            tokens = paragraph["context"].split()
            out += [(article["title"], " ".join(tokens[i:i + words]))
                    for i in range(0, len(tokens), words)]
    random.Random(0).shuffle(out)
    return out


def build_encoder(device: torch.device) -> Encoder:
    from transformers import CamembertConfig, CamembertModel

    config = CamembertConfig(vocab_size=SIZE["vocab"], hidden_size=SIZE["hidden"],
                             num_hidden_layers=SIZE["layers"], num_attention_heads=SIZE["heads"],
                             intermediate_size=SIZE["ffn"], max_position_embeddings=514,
                             type_vocab_size=1, layer_norm_eps=1e-5, attn_implementation="sdpa")
    torch.manual_seed(0)
    return Encoder(CamembertModel(config, add_pooling_layer=False)).to(device).eval()


def forward_flops(lengths: list[int]) -> float:
    """Forward FLOPs of the real tokens: matmuls and attention."""
    h, f, layers = SIZE["hidden"], SIZE["ffn"], SIZE["layers"]
    return sum(layers * (2 * n * (4 * h * h + 2 * h * f) + 4 * n * n * h) for n in lengths)


MODES = {
    "original": {"pad_to_max": True, "sort": False, "prefetch": False, "amp": None},
    "recipe": {"pad_to_max": False, "sort": True, "prefetch": True, "amp": None},
    "recipe_bf16": {"pad_to_max": False, "sort": True, "prefetch": True, "amp": torch.bfloat16},
}


def run_mode(name: str, encoder: Encoder, tokenizer, items, *, batch_size: int,
             device: torch.device) -> tuple[np.ndarray, float, int]:
    """Vectors, seconds and padded tokens of one mode over `items`."""
    mode = MODES[name]
    tensorizer = Tensorizer(tokenizer, max_length=SEQ_LEN, pad_to_max=mode["pad_to_max"],
                            pad_to_multiple_of=8)
    widths: list[int] = []

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        widths.append(ids.numel())
        return encoder(ids, mask)

    def once(subset) -> np.ndarray:
        return encode_in_batches(encode, tensorizer, subset, dim=SIZE["hidden"],
                                 batch_size=batch_size, device=device, sort_by_length=mode["sort"],
                                 amp_dtype=mode["amp"], prefetch=mode["prefetch"])

    once(items[:batch_size])  # warm-up: allocator, kernels, autotuning
    widths.clear()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    vectors = once(items)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return vectors, time.perf_counter() - start, sum(widths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--piaf", default=str(DEFAULT_PIAF), help="PIAF (SQuAD-format) file")
    parser.add_argument("--passages", type=int, default=None,
                        help="Passages to encode (default 512 on CPU, 20000 on GPU; PIAF's "
                        "1,238 are repeated beyond that)")
    parser.add_argument("--original_batches", type=int, default=None,
                        help="Time `original` on only this many batches and scale to all: its "
                        "batches all have the same shape (B x 256), hence the same cost "
                        "(default: 4 on CPU, all on GPU)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Passages per forward pass (default 32 on CPU, 256 on GPU)")
    parser.add_argument("--modes", default=None, help="Comma-separated modes (default: "
                        "original,recipe and recipe_bf16 where bfloat16 is fast)")
    parser.add_argument("--out", default=None, help="Write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    n = args.passages or (20000 if gpu else 512)
    batch_size = args.batch_size or (256 if gpu else 32)
    fast_bf16 = gpu or cpu_has_fast_bf16()
    modes = (args.modes or ("original,recipe" + (",recipe_bf16" if fast_bf16 else ""))).split(",")
    sampled = args.original_batches if args.original_batches is not None else (0 if gpu else 4)
    print(f"Machine: {machine(device)}")
    peaks = {"float32": matmul_flops(device, torch.float32)}
    if fast_bf16:
        peaks["bfloat16"] = matmul_flops(device, torch.bfloat16)
    print("Measured matmul FLOP/s: " + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s"
                                                   for k, v in peaks.items()))
    from dpr import tiny

    unique = piaf_passages(Path(args.piaf))
    passages = [unique[i % len(unique)] for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        tiny.train_sentencepiece([t for _, t in unique], Path(tmp) / "tok", vocab_size=8000)
        tokenizer = build_tokenizer("hf_roberta", str(Path(tmp) / "tok"))
    items = passage_items(passages, Recipe())
    lengths = [len(s) for s in Tensorizer(tokenizer, max_length=SEQ_LEN).encode_items(items)]
    bound = n * SEQ_LEN / sum(lengths)
    print(f"Passages: {n} of PIAF (100 words, with titles), mean {np.mean(lengths):.1f} tokens "
          f"(truncated at {SEQ_LEN}: {sum(x == SEQ_LEN for x in lengths)}); batches of "
          f"{batch_size}; padding bound {bound:.2f}" + (
              f"; original timed on its first {sampled} batches and scaled to "
              f"{-(-n // batch_size)} (all of the same shape)" if sampled else ""))
    encoder = build_encoder(device)
    results, base = [], None
    for name in modes:
        subset = items[:sampled * batch_size] if name == "original" and sampled else items
        vectors, seconds, padded = run_mode(name, encoder, tokenizer, subset,
                                            batch_size=batch_size, device=device)
        seconds *= len(items) / len(subset)
        padded = padded * len(items) // len(subset)
        base = base if base is not None else (vectors, seconds)
        rows = min(len(vectors), len(base[0]))
        amp = MODES[name]["amp"]
        peak = peaks[str(amp or torch.float32)[6:]]
        results.append({"mode": name, "seconds": seconds, "passages_per_s": n / seconds,
                        "ratio": base[1] / seconds, "of_bound": base[1] / seconds / bound,
                        "padded_over_real": padded / sum(lengths),
                        "max_abs_diff": float(np.abs(vectors[:rows] - base[0][:rows]).max()),
                        "efficiency": forward_flops(lengths) / seconds / peak})
        print(f"  {name}: {n / seconds:.1f} passages/s", flush=True)
    print()
    print("| mode | passages/s | x original | share of padding bound | padded/real tokens | "
          "max |Δ| vs original | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['passages_per_s']:.1f} | {r['ratio']:.2f} | "
              f"{100 * r['of_bound']:.0f}% | {r['padded_over_real']:.2f} | "
              f"{r['max_abs_diff']:.1e} | {100 * r['efficiency']:.1f}% |")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(device), "matmul": peaks,
                                              "passages": n, "batch_size": batch_size,
                                              "padding_bound": bound, "modes": results},
                                             indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
