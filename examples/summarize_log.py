"""Prints the validation results of a training run from its training_log.jsonl."""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    train = [r for r in records if r["event"] == "train"]
    print(f"{'epoch':>5} {'step':>5} {'metric':<13} {'value':>9}  {'mean train loss':>15}  "
          "checkpoint")
    for r in (r for r in records if r["event"] == "validation"):
        losses = [t["loss"] for t in train if t["epoch"] == r["epoch"]]
        mean = sum(losses) / len(losses) if losses else float("nan")
        print(f"{r['epoch']:>5} {r['iteration']:>5} {r['metric']:<13} {r['value']:>9.4f}  "
              f"{mean:>15.4f}  {r['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
