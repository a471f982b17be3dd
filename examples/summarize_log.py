"""Prints, per epoch, the training loss and in-batch accuracy and the validation result of a
run, from its training_log.jsonl; with --best, prints only the best validation checkpoint
(lowest value of the latest validation metric, as the trainer tracks it)."""

from __future__ import annotations

import json
import sys


def best_checkpoint(records: list[dict]) -> str | None:
    best = None
    for r in (r for r in records if r["event"] == "validation"):
        if best is None or best["metric"] != r["metric"] or r["value"] < best["value"]:
            best = r
    return best["checkpoint"] if best else None


def main(path: str, best: bool = False) -> int:
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    if best:
        checkpoint = best_checkpoint(records)
        if checkpoint is None:
            print(f"{path}: no validation record", file=sys.stderr)
            return 1
        print(checkpoint)
        return 0
    print(f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'validation':<14} {'value':>8}  "
          "checkpoint")
    for r in (r for r in records if r["event"] == "validation"):
        train = [t for t in records if t["event"] == "train" and t["epoch"] == r["epoch"]]
        loss = sum(t["loss"] for t in train) / max(len(train), 1)
        acc = sum(t["correct"] for t in train) / max(sum(t["questions"] for t in train), 1)
        print(f"{r['epoch']:>5}  {loss:>10.4f}  {acc:>9.2f}  {r['metric']:<14} {r['value']:>8.4f}  "
              f"{r['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], best="--best" in sys.argv[2:]))
