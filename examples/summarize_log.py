"""What the demo prints about a run, computed from its files (nothing hard-coded):

    summarize_log.py LOG                 per epoch: training loss and in-batch accuracy, validation
    summarize_log.py LOG --best          the best validation checkpoint (lowest value of the latest
                                         validation metric, as the trainer tracks it)
    summarize_log.py LOG --learned       first and last validation values, and whether it fell
    summarize_log.py RESULTS --compare TUNED BASELINE
                                         top-1 and MRR@10 of two retrievers of a dpr.evaluate
                                         results.json and a one-line verdict (MRR@10, then top-1)
"""

from __future__ import annotations

import argparse
import json
import sys


def best_checkpoint(records: list[dict]) -> str | None:
    best = None
    for r in (r for r in records if r["event"] == "validation"):
        if best is None or best["metric"] != r["metric"] or r["value"] < best["value"]:
            best = r
    return best["checkpoint"] if best else None


def per_epoch(records: list[dict]) -> None:
    print(f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'validation':<14} {'value':>8}  "
          "checkpoint")
    for r in (r for r in records if r["event"] == "validation"):
        train = [t for t in records if t["event"] == "train" and t["epoch"] == r["epoch"]]
        loss = sum(t["loss"] for t in train) / max(len(train), 1)
        acc = sum(t["correct"] for t in train) / max(sum(t["questions"] for t in train), 1)
        print(f"{r['epoch']:>5}  {loss:>10.4f}  {acc:>9.2f}  {r['metric']:<14} {r['value']:>8.4f}  "
              f"{r['checkpoint']}")


def learned(records: list[dict]) -> int:
    """Prints the first and last validation of the first metric; 0 when it fell."""
    validations = [r for r in records if r["event"] == "validation"]
    metric = validations[0]["metric"] if validations else None
    same = [r for r in validations if r["metric"] == metric]
    if len(same) < 2:
        print("fewer than two validations: cannot tell whether it learned")
        return 1
    first, last = same[0]["value"], same[-1]["value"]
    verdict = "falls: the model learns" if last < first else "does not fall"
    print(f"validation {same[0]['metric']}: {first:.4f} after the first epoch, {last:.4f} after "
          f"the last ({len(same)} validations): {verdict}")
    return 0 if last < first else 1


def compare(path: str, tuned: str, baseline: str) -> int:
    """Prints both retrievers' numbers and whether `tuned` beats `baseline`; 0 when it does."""
    results = json.load(open(path, encoding="utf-8"))["results"]
    scores = {}
    for name in (tuned, baseline):
        top1, mrr = results[name]["top_k"]["1"], results[name]["mrr@10"]
        scores[name] = (round(mrr, 6), round(top1, 6))
        print(f"  {name:<14} top-1 {100 * top1:5.1f}   MRR@10 {100 * mrr:5.1f}   "
              f"({results[name]['questions']} questions)")
    if scores[tuned] > scores[baseline]:
        verdict = f"{tuned} beats {baseline}"
    elif scores[tuned] == scores[baseline] == (1.0, 1.0):
        verdict = (f"{tuned} ties with {baseline}: both rank an answer first for every question, "
                   "these questions cannot separate them")
    elif scores[tuned] == scores[baseline]:
        verdict = f"{tuned} ties with {baseline}"
    else:
        verdict = f"{tuned} does not beat {baseline}: {baseline} is ahead"
    print(f"Verdict (MRR@10, then top-1): {verdict}")
    return 0 if scores[tuned] > scores[baseline] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="training_log.jsonl, or results.json with --compare")
    parser.add_argument("--best", action="store_true")
    parser.add_argument("--learned", action="store_true")
    parser.add_argument("--compare", nargs=2, metavar=("TUNED", "BASELINE"))
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.path, *args.compare)
    records = [json.loads(line) for line in open(args.path, encoding="utf-8")]
    if args.learned:
        return learned(records)
    if args.best:
        checkpoint = best_checkpoint(records)
        if checkpoint is None:
            print(f"{args.path}: no validation record", file=sys.stderr)
            return 1
        print(checkpoint)
        return 0
    per_epoch(records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
