"""dpr2hf writes a model's recipe (pooling, normalisation, prompts) into the exported folders, so
that sentence-transformers reproduces the project's vectors for every pooling and similarity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import train_e5_checkpoint
from sentence_transformers import SentenceTransformer

from dpr.inference import load_encoder
from dpr2hf.convert import convert

QUESTIONS = ["Où se jette la Loire ?", "Qui a écrit Les Misérables ?"]
PASSAGES = [("Loire", "La Loire se jette dans l'océan Atlantique à Saint-Nazaire."),
            ("", "Victor Hugo a écrit Les Misérables, publié en 1862.")]


@pytest.mark.parametrize("pooling,similarity,passages", [
    ("cls", "dot", "pair"), ("mean", "dot", "pair"), ("cls", "cosine", "pair"),
    ("mean", "cosine", "pair"), ("mean", "cosine", "joined")])
def test_export_reproduces_vectors_in_sentence_transformers(
        tmp_path: Path, tiny_e5: Path, dpr_files, pooling: str, similarity: str,
        passages: str) -> None:
    # Given a shared-encoder checkpoint trained with prefixes, this pooling, similarity and
    # passage format
    ckpt = train_e5_checkpoint(tmp_path, tiny_e5, dpr_files[0], "--pooling", pooling,
                               "--similarity", similarity, "--temperature", "0.05",
                               "--shared_encoder", "--passage_format", passages)
    # When it is exported (verified at 1e-5)
    result = convert(ckpt, tmp_path / "hf", tolerance=1e-5)
    # Then sentence-transformers gives the project's vectors, its plain encode applying the
    # tower's prompt by itself (as naming it does), on (title, text) pairs or joined strings
    model = load_encoder(ckpt)
    ctx_inputs = [(f"{t} {x}" if passages == "joined" else (t, x)) if t else x
                  for t, x in PASSAGES]
    for side, inputs, prompt, want in (
            ("question", [q.rstrip("?").strip() for q in QUESTIONS], "query",
             model.encode_questions(QUESTIONS)),
            ("ctx", ctx_inputs, "passage",
             model.encode_passages(PASSAGES))):
        st = SentenceTransformer(str(tmp_path / "hf" / f"{side}_encoder"), device="cpu")
        assert st.default_prompt_name == prompt
        for named in (None, prompt):
            got = np.stack([st.encode([item], prompt_name=named, show_progress_bar=False)[0]
                            for item in inputs])
            assert np.abs(got - want).max() <= 1e-5
    assert all(d <= 1e-5 for d in result.max_differences.values())
    # And the folders say how they were trained; no DPR-class folders (they need BERT's
    # WordPiece tokenizer and DPR's recipe)
    entry = json.loads((tmp_path / "hf" / "ctx_encoder" / "config.json").read_text())["dpr"]
    assert entry.get("pooling", "cls") == pooling
    assert entry.get("similarity", "dot") == similarity
    assert entry.get("passage_format", "pair") == passages
    assert entry["query_prefix"] == "query: " and entry["shared_encoder"] is True
    assert not (tmp_path / "hf" / "dpr_ctx_encoder").exists()
    prompts = SentenceTransformer(str(tmp_path / "hf" / "ctx_encoder"), device="cpu").prompts
    assert {k: v for k, v in prompts.items() if v} == {"query": "query: ", "passage": "passage: "}
    # And the export reloads through the one loader with the same vectors
    export = load_encoder(tmp_path / "hf")
    np.testing.assert_allclose(export.encode_passages(PASSAGES), model.encode_passages(PASSAGES),
                               atol=1e-5)
