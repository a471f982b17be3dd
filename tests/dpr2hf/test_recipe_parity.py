"""One recipe everywhere: for every encoder type, with and without --do_lower_case, the training
tensorizer, the inference encoder on the checkpoint, the dpr2hf export loaded by the same
tool, and the export loaded by hand with transformers give the same token ids and vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from dpr.data.batch import build_batch
from dpr.data.recipe import passage_items, question_items
from dpr.data.records import BiEncoderSample, Passage
from dpr.data.tensorizer import build_tensorizer
from dpr.inference import load_encoder
from dpr.models.checkpoint import (
    CheckpointState,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    to_dpr_layout,
)
from dpr.models.factory import build_biencoder
from dpr2hf.convert import convert

QUESTION = "Où se trouve l'ÉCOLE normale supérieure, fondée en 1794 ?"
TITLE = "École Normale Supérieure"
TEXT = ("  L'École normale supérieure (ENS) est installée rue d'Ulm, au cœur du Quartier latin "
        "de Paris ; elle forme des élèves et prépare à l'agrégation.  ")
SEQUENCE_LENGTH = 24  # short enough that the pair is truncated (longest_first)
TOL = 1e-5


def _folder(kind: str, request: pytest.FixtureRequest) -> Path:
    name = {"hf_bert": "tiny_bert", "hf_roberta": "tiny_camembert",
            "fairseq_roberta": "fairseq_camembert"}[kind]
    return request.getfixturevalue(name)


def _checkpoint(tmp_path: Path, kind: str, folder: Path, lower: bool) -> Path:
    """An untrained bi-encoder of the type, projecting to 8 (towers differ by their projection)."""
    pretrained_file = str(folder) if kind == "fairseq_roberta" else None
    torch.manual_seed(1)
    model = build_biencoder(kind, str(folder), pretrained_file=pretrained_file, projection_dim=8)
    params = {"encoder_model_type": kind, "pretrained_model_cfg": str(folder),
              "pretrained_file": pretrained_file, "do_lower_case": lower, "projection_dim": 8,
              "sequence_length": SEQUENCE_LENGTH}
    path = tmp_path / "dpr_biencoder.0"
    save_checkpoint(CheckpointState(model_dict=to_dpr_layout(model.state_dict()),
                                    encoder_params=params), path)
    return path


def _training(kind: str, folder: Path, ckpt: Path, lower: bool):
    """ids and vectors of the training path: `build_batch` with the training tensorizer."""
    tensorizer = build_tensorizer(kind, str(folder), sequence_length=SEQUENCE_LENGTH,
                                  do_lower_case=lower)
    sample = BiEncoderSample(question=QUESTION, answers=(), positives=(Passage(TITLE, TEXT),),
                             negatives=(Passage("", TEXT),), hard_negatives=())
    batch = build_batch([sample], tensorizer, num_hard=0, num_other=1)
    biencoder = build_biencoder(kind, str(folder), projection_dim=8, load_weights=False,
                                pretrained_file=str(folder) if kind == "fairseq_roberta" else None)
    load_model_state(biencoder, load_checkpoint(ckpt).model_dict)
    biencoder.eval()
    with torch.no_grad():
        q = biencoder.encode_questions(batch.question_ids, batch.question_mask).numpy()
        c = biencoder.encode_contexts(batch.ctx_ids, batch.ctx_mask).numpy()
    rows = lambda ids, mask: [r[m].tolist() for r, m in zip(ids, mask)]  # noqa: E731
    return rows(batch.question_ids, batch.question_mask), rows(batch.ctx_ids, batch.ctx_mask), q, c


def _by_hand(folder: Path):
    """An exported tower loaded as a user would: AutoTokenizer, AutoModel, first token, the
    projection file, and the model card's recipe written out here."""
    config = AutoModel.from_pretrained(folder).config.dpr
    low = str.lower if config["do_lower_case"] else str
    tokenizer = AutoTokenizer.from_pretrained(folder)
    question = QUESTION[:-1] if QUESTION.endswith("?") else QUESTION
    inputs = [tokenizer(low(question.strip()), truncation=True,
                        max_length=config["sequence_length"])["input_ids"],
              tokenizer(low(TITLE), low(TEXT.strip()), truncation="longest_first",
                        max_length=config["sequence_length"])["input_ids"],
              tokenizer(low(TEXT.strip()), truncation=True,
                        max_length=config["sequence_length"])["input_ids"]]
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    proj = load_file(folder / "encode_proj.safetensors")
    vectors = []
    for ids in inputs:
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[:, 0]
        vectors.append((hidden @ proj["weight"].T + proj["bias"])[0].numpy())
    return inputs, np.stack(vectors)


@pytest.mark.parametrize("lower", [False, True], ids=["cased", "do_lower_case"])
@pytest.mark.parametrize("kind", ["hf_bert", "hf_roberta", "fairseq_roberta"])
def test_recipe_same_ids_and_vectors_in_training_inference_and_export(
        tmp_path: Path, kind: str, lower: bool, request: pytest.FixtureRequest) -> None:
    # Given a checkpoint of the type and its dpr2hf export
    folder = _folder(kind, request)
    ckpt = _checkpoint(tmp_path, kind, folder, lower)
    export = tmp_path / "hf"
    convert(ckpt, export)
    # When the training path, both inference models and a hand-written loader encode a French
    # question and a (title, passage) pair, and the passage without title
    q_ids, c_ids, q_train, c_train = _training(kind, folder, ckpt, lower)
    got = {}
    for name, path in (("checkpoint", ckpt), ("export", export)):
        model = load_encoder(str(path), {}, device=torch.device("cpu"), batch_size=2)
        assert model.kind == name
        q_tensorizer, c_tensorizer = model.question.tensorizer, model.ctx.tensorizer
        passages = [(TITLE, TEXT), ("", TEXT)]
        got[name] = (q_tensorizer.encode_items(question_items([QUESTION], q_tensorizer.recipe)),
                     c_tensorizer.encode_items(passage_items(passages, c_tensorizer.recipe)),
                     model.encode_questions([QUESTION]),
                     model.encode_passages(passages))
    hand_q_ids, hand_q = _by_hand(export / "question_encoder")
    hand_c_ids, hand_c = _by_hand(export / "ctx_encoder")
    # Then the ids are the training ids everywhere (truncated to the sequence length)
    assert len(c_ids[0]) == SEQUENCE_LENGTH
    for name, (qi, ci, _, _) in got.items():
        assert qi == q_ids, name
        assert ci == c_ids, name
    assert hand_q_ids[:1] == q_ids and hand_c_ids[1:] == c_ids
    # And the vectors are the training vectors everywhere
    for name, (_, _, q, c) in got.items():
        assert q.dtype == np.float32 and c.dtype == np.float32
        np.testing.assert_allclose(q, q_train, atol=TOL, err_msg=name)
        np.testing.assert_allclose(c, c_train, atol=TOL, err_msg=name)
    np.testing.assert_allclose(hand_q[:1], q_train, atol=TOL)
    np.testing.assert_allclose(hand_c[1:], c_train, atol=TOL)
    # And the towers really differ (the question tower is not used for passages)
    assert not np.allclose(hand_q[1:], c_train, atol=1e-3)


def test_recipe_do_lower_case_changes_camembert_ids(tiny_camembert: Path) -> None:
    # Given the cased CamemBERT tokenizer, with and without --do_lower_case
    cased, lower = (build_tensorizer("hf_roberta", str(tiny_camembert), sequence_length=32,
                                     do_lower_case=flag) for flag in (False, True))
    # Then lowercasing is applied before tokenization (the parity above is not vacuous)
    def ids(tensorizer, question: str) -> list[list[int]]:
        return tensorizer.encode_items(question_items([question], tensorizer.recipe))

    assert ids(cased, QUESTION) != ids(lower, QUESTION)
    assert ids(lower, QUESTION) == ids(cased, QUESTION.lower())
