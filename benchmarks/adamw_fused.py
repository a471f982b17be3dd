"""Time of AdamW's update (`optimizer.step()`) with torch's fused kernel against the default
implementation, on the same model in the same command.

    python benchmarks/adamw_fused.py                    # CPU
    python benchmarks/adamw_fused.py --device cuda

Model: one bi-encoder of two CamemBERT towers (random weights) of the size given by --layers /
--hidden (default: 4 layers, hidden 256, FFN 4 x hidden, vocabulary 32005). Gradients are
random and fixed, so only the update is timed. The two implementations alternate in rounds
(--rounds) of --steps updates each, so that a noisy machine slows both alike; the result is
each implementation's median time per update, their ratio, and the largest parameter
difference after the same updates (both start from the same weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpr.models.biencoder import BiEncoder  # noqa: E402
from dpr.models.encoder import Encoder  # noqa: E402
from dpr.training.optim import build_optimizer  # noqa: E402


def build(device: torch.device, layers: int, hidden: int) -> BiEncoder:
    from transformers import CamembertConfig, CamembertModel

    config = CamembertConfig(vocab_size=32005, hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=max(1, hidden // 64),
                             intermediate_size=4 * hidden, max_position_embeddings=514,
                             type_vocab_size=1)
    torch.manual_seed(0)
    return BiEncoder(*(Encoder(CamembertModel(config, add_pooling_layer=False))
                       for _ in range(2))).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="Updates per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = {name: build(device, args.layers, args.hidden) for name in ("default", "fused")}
    optimizers = {name: build_optimizer(model, learning_rate=1e-4, weight_decay=0.01, eps=1e-8,
                                        betas=(0.9, 0.999), fused=name == "fused")
                  for name, model in models.items()}
    generator = torch.Generator().manual_seed(1)
    for ref, other in zip(models["default"].parameters(), models["fused"].parameters()):
        grad = torch.randn(ref.shape, generator=generator).to(device)
        ref.grad, other.grad = grad, grad.clone()
    params = sum(p.numel() for p in models["default"].parameters())
    times: dict[str, list[float]] = {"default": [], "fused": []}
    for _ in range(args.rounds):
        for name, optimizer in optimizers.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            _sync(device)
            times[name].append((time.perf_counter() - start) / args.steps)
    diff = max((a - b).abs().max().item() for a, b in
               zip(models["default"].parameters(), models["fused"].parameters()))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; "
          f"{params / 1e6:.1f} M parameters, {args.rounds} rounds x {args.steps} updates")
    for name, t in times.items():
        print(f"  {name}: median {1000 * medians[name]:.2f} ms/update "
              f"(rounds: {', '.join(f'{1000 * x:.2f}' for x in t)})")
    print(f"  fused / default: {medians['fused'] / medians['default']:.3f}; largest parameter "
          f"difference after {args.rounds * args.steps} updates: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
