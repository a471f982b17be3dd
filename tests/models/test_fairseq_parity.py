"""Parity with real fairseq (fairseq-fixed, installed by `make test` in .venv-fairseq).

Checks that (1) the folder our writer produces is what fairseq's
`RobertaModel.from_pretrained(folder, checkpoint_file='model.pt', bpe='sentencepiece')` loads,
(2) our encoder's first-token features equal fairseq's `extract_features` within 1e-5 on
French text with accents, and (3) fairseq's own encoding of a sentence gives our ids.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from dpr.data.recipe import passage_items
from dpr.data.tensorizer import Tensorizer, build_tokenizer
from dpr.models.factory import build_biencoder

ROOT = Path(__file__).resolve().parents[2]
FAIRSEQ_PYTHON = Path(os.environ.get("FAIRSEQ_PYTHON", ROOT / ".venv-fairseq" / "bin" / "python"))

SENTENCES = [
    "Où la Loire prend-elle sa source ?",
    "Marie Curie reçoit le prix Nobel de chimie en 1911.",
    "Élève présenté à l'école, à Besançon, où naquit Victor Hugo.",
    "Le château de Chambord est situé dans le val de Loire, inscrit au patrimoine mondial de "
    "l'UNESCO depuis l'an 2000, et attire de nombreux visiteurs chaque été.",
]


@pytest.fixture(scope="module")
def fairseq_python() -> Path:
    if FAIRSEQ_PYTHON.is_file():
        return FAIRSEQ_PYTHON
    reason = (f"no fairseq interpreter at {FAIRSEQ_PYTHON} (make test installs fairseq-fixed "
              "there; or set FAIRSEQ_PYTHON)")
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_our_features_equal_real_fairseq(tmp_path: Path, fairseq_camembert: Path,
                                         fairseq_python: Path) -> None:
    # Given our tokenizer's ids for French sentences (questions and title/text passages)
    tokenizer = build_tokenizer("fairseq_roberta", str(fairseq_camembert))
    tensorizer = Tensorizer(tokenizer, max_length=64, pad_to_max=False)
    passages = [("", s) for s in SENTENCES] + list(zip(["Marie Curie", "Victor Hugo"],
                                                       SENTENCES[1:3]))
    ids = tensorizer.encode_items(passage_items(passages, tensorizer.recipe))
    inp, out = tmp_path / "in.json", tmp_path / "out.pt"
    inp.write_text(json.dumps({"sentences": SENTENCES, "ids": ids}), encoding="utf-8")
    # When fairseq itself loads the folder and extracts features
    result = subprocess.run([str(fairseq_python), str(ROOT / "tests" / "fairseq_parity_script.py"),
                             str(fairseq_camembert), str(inp), str(out)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = torch.load(out, weights_only=True)
    # Then fairseq's own encoding of each sentence gives our ids
    assert theirs["fairseq_ids"] == ids[: len(SENTENCES)]
    # And our encoder's first-token features equal fairseq's within 1e-5
    model = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert)).eval()
    with torch.no_grad():
        ours = torch.cat([model.question_model(torch.tensor([row]),
                                               torch.tensor([row]) != tokenizer.pad_token_id)
                          for row in ids])
    assert ours.shape == theirs["features"].shape
    diff = (ours - theirs["features"]).abs().max().item()
    assert diff < 1e-5, diff
