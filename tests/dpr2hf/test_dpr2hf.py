"""dpr2hf: trained tiny bi-encoders converted, reloaded with transformers and
sentence-transformers, and compared with the bi-encoder (tokenization included)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer, DPRContextEncoder, DPRQuestionEncoder

import train_dense_encoder
from dpr.data.recipe import passage_items, question_items, strip_question_mark
from dpr.data.tensorizer import build_tensorizer
from dpr.models.checkpoint import load_checkpoint, load_model_state
from dpr.models.factory import build_biencoder
from dpr2hf.cli import build_parser, main

QUESTIONS = [
    "Quelle est la capitale de la Bretagne ?",
    "Combien d'élèves étudient à l'université de Strasbourg?",
    "ÇA S'ÉCRIT COMMENT, « NOËL » ?",
    "où",
    "Pourquoi " + "la forêt de Brocéliande, théâtre des légendes arthuriennes, " * 10 + "?",
]
PASSAGES = [
    ("Rennes", "Rennes est une commune de l'Ouest de la France, préfecture de la Bretagne."),
    ("", "Un texte sans titre, où l'on parle d'été et de fêtes."),
    ("Strasbourg", "  L'université compte plus de 50 000 étudiants ; c'est énorme.  "),
    ("Brocéliande " * 30, "Court."),
    ("Légendes", "Merlin et Viviane se rencontrent près de la fontaine de Barenton. " * 8),
]
TOL = 1e-5


def _train(out: Path, train_file: Path, model_args: list[str]) -> Path:
    """Two training steps (4 questions, batch 2) of a tiny bi-encoder; returns the checkpoint."""
    args = [*model_args, "--train_file", str(train_file), "--output_dir", str(out),
            "--batch_size", "2", "--sequence_length", "32", "--num_train_epochs", "1",
            "--learning_rate", "1e-3"]
    assert train_dense_encoder.main(args) == 0
    return out / "dpr_biencoder.0.2"


@pytest.fixture(scope="module")
def small_train_file(tmp_path_factory: pytest.TempPathFactory, dpr_files) -> Path:
    records = json.loads(dpr_files[0].read_text(encoding="utf-8"))[:4]
    path = tmp_path_factory.mktemp("dpr2hf_data") / "train4.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, small_train_file: Path, tiny_bert,
              tiny_camembert, fairseq_camembert) -> dict[str, tuple[Path, Path]]:
    """{type: (checkpoint, converted folder)}: BERT projects and lowercases, CamemBERT (HF)
    lowercases, fairseq CamemBERT projects without lowercasing."""
    setups = {
        "hf_bert": ["--encoder_model_type", "hf_bert", "--pretrained_model_cfg", str(tiny_bert),
                    "--projection_dim", "8", "--do_lower_case"],
        "hf_roberta": ["--encoder_model_type", "hf_roberta", "--pretrained_model_cfg",
                       str(tiny_camembert), "--do_lower_case"],
        "fairseq_roberta": ["--encoder_model_type", "fairseq_roberta", "--pretrained_file",
                            str(fairseq_camembert), "--pretrained_model_cfg",
                            str(fairseq_camembert), "--projection_dim", "8"],
    }
    root = tmp_path_factory.mktemp("dpr2hf")
    result = {}
    for kind, args in setups.items():
        ckpt = _train(root / f"train_{kind}", small_train_file, args)
        out = root / f"hf_{kind}"
        assert main([str(ckpt), "--output_dir", str(out)]) == 0
        result[kind] = (ckpt, out)
    return result


def _biencoder_reference(ckpt: Path, side: str):
    """The training path: the checkpoint's bi-encoder and DPR tensorizer."""
    state = load_checkpoint(ckpt)
    p = state.encoder_params
    model = build_biencoder(p["encoder_model_type"], p["pretrained_model_cfg"],
                            pretrained_file=p["pretrained_file"],
                            projection_dim=p["projection_dim"], load_weights=False)
    load_model_state(model, state.model_dict)
    tensorizer = build_tensorizer(p["encoder_model_type"],
                                  p["pretrained_model_cfg"] or p["pretrained_file"],
                                  sequence_length=p["sequence_length"],
                                  do_lower_case=p["do_lower_case"])
    if side == "question":
        ids = tensorizer.encode_items(question_items(QUESTIONS, tensorizer.recipe))
        encode = model.eval().encode_questions
    else:
        ids = tensorizer.encode_items(passage_items(PASSAGES, tensorizer.recipe))
        encode = model.eval().encode_contexts
    with torch.no_grad():
        return ids, encode(*tensorizer.pad(ids))


def _folder_inputs(tokenizer, side: str, lower: bool) -> list[list[int]]:
    """The model card's recipe applied with the folder's own tokenizer."""
    low = str.lower if lower else str
    if side == "question":
        texts = [low(strip_question_mark(q).strip()) for q in QUESTIONS]
        return tokenizer(texts, truncation=True)["input_ids"]
    return [tokenizer(low(t), low(x.strip()), truncation="longest_first")["input_ids"] if t
            else tokenizer(low(x.strip()), truncation=True)["input_ids"] for t, x in PASSAGES]


def _pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.full((len(ids), max(map(len, ids))), pad_id)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq)
    return batch, (batch != pad_id).long()


@pytest.mark.parametrize("kind", ["hf_bert", "hf_roberta", "fairseq_roberta"])
@pytest.mark.parametrize("side", ["question", "ctx"])
def test_convert_folder_reproduces_biencoder_with_transformers(converted, kind, side) -> None:
    # Given a trained tiny bi-encoder converted with dpr2hf
    ckpt, out = converted[kind]
    want_ids, want = _biencoder_reference(ckpt, side)
    folder = out / f"{side}_encoder"
    # When the folder is reloaded with AutoTokenizer/AutoModel and the card's recipe applied
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    ids = _folder_inputs(tokenizer, side, config["dpr"]["do_lower_case"])
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    with torch.no_grad():
        got = model(*_pad(ids, tokenizer.pad_token_id)).last_hidden_state[:, 0]
    if (folder / "encode_proj.safetensors").is_file():
        proj = load_file(folder / "encode_proj.safetensors")
        got = got @ proj["weight"].T + proj["bias"]
    # Then the ids are the training ids and the vectors the bi-encoder's
    assert ids == want_ids
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=TOL, rtol=0), (got - want).abs().max()


@pytest.mark.parametrize("kind", ["hf_bert", "hf_roberta", "fairseq_roberta"])
@pytest.mark.parametrize("side", ["question", "ctx"])
def test_convert_folder_reproduces_biencoder_with_sentence_transformers(converted, kind,
                                                                         side) -> None:
    # Given a converted bi-encoder
    ckpt, out = converted[kind]
    _, want = _biencoder_reference(ckpt, side)
    # When sentence-transformers loads the folder and encodes raw questions (no '?') or
    # (title, text) tuples, lowercasing left to its do_lower_case setting
    model = SentenceTransformer(str(out / f"{side}_encoder"), device="cpu")
    items = ([strip_question_mark(q).strip() for q in QUESTIONS] if side == "question" else
             [(t, x.strip()) if t else x.strip() for t, x in PASSAGES])
    got = torch.stack([model.encode([item], convert_to_tensor=True, show_progress_bar=False)[0]
                       for item in items])
    # Then the vectors are the bi-encoder's
    assert torch.allclose(got, want, atol=TOL, rtol=0), (got - want).abs().max()


def test_convert_writes_the_documented_layout(converted) -> None:
    # Given the converted BERT (projection 8, lowercased) and CamemBERT bi-encoders
    _, bert = converted["hf_bert"]
    _, cam = converted["hf_roberta"]
    _, fs = converted["fairseq_roberta"]
    # Then each folder has safetensors weights, tokenizer, card and sentence-transformers config
    for folder in (bert / "question_encoder", cam / "ctx_encoder", fs / "question_encoder"):
        for name in ("model.safetensors", "config.json", "tokenizer_config.json", "README.md",
                     "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
            assert (folder / name).is_file(), folder / name
        assert not (folder / "pytorch_model.bin").exists()
    assert json.loads((bert / "ctx_encoder/config.json").read_text())["architectures"] == [
        "BertModel"]
    for root in (cam, fs):
        assert json.loads((root / "ctx_encoder/config.json").read_text())["architectures"] == [
            "CamembertModel"]
        assert (root / "ctx_encoder/sentencepiece.bpe.model").is_file()
        assert not (root / "dpr_ctx_encoder").exists()
    # And sentence-transformers reads DPR's recipe: 32 tokens, lower-casing, CLS pooling, the
    # projection as Dense, no Normalize, dot product
    st = SentenceTransformer(str(bert / "question_encoder"), device="cpu")
    assert st.max_seq_length == 32 and st.similarity_fn_name == "dot"
    assert st.tokenize(["ÉCOLE"])["input_ids"].tolist() == st.tokenize(["école"])[
        "input_ids"].tolist()
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Dense"]
    assert SentenceTransformer(str(cam / "question_encoder"), device="cpu")[1].pooling_mode \
        == "cls"
    assert (bert / "question_encoder/encode_proj.safetensors").is_file()
    assert not (cam / "question_encoder/encode_proj.safetensors").exists()
    card = (bert / "question_encoder/README.md").read_text()
    assert "encode_proj.safetensors" in card and "pooler_output" in card
    assert '"projection_dim": 8' in card
    assert not list(bert.parent.glob(".*staging*"))


@pytest.mark.parametrize("side", ["question", "ctx"])
def test_convert_bert_loads_as_hf_dpr_encoders(converted, side) -> None:
    # Given a converted BERT bi-encoder with a projection
    ckpt, out = converted["hf_bert"]
    want_ids, want = _biencoder_reference(ckpt, side)
    folder = out / f"dpr_{side}_encoder"
    # When the DPR folder is loaded with Hugging Face's DPR classes
    cls = DPRQuestionEncoder if side == "question" else DPRContextEncoder
    model = cls.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = _folder_inputs(tokenizer, side, lower=True)
    with torch.no_grad():
        got = model(*_pad(ids, tokenizer.pad_token_id)).pooler_output
    # Then pooler_output is the bi-encoder's vector and the tokenizer is a DPR tokenizer
    assert type(tokenizer).__name__.startswith(cls.__name__)
    assert ids == want_ids
    assert model.config.projection_dim == 8
    assert torch.allclose(got, want, atol=TOL, rtol=0), (got - want).abs().max()


def _original_fairseq_checkpoint(folder: Path, path: Path, *, infix: str) -> None:
    """A checkpoint as the original DPR writes it for fairseq_roberta (fairseq's own key names
    under `<side>.fairseq_roberta.model.`, `infix` "encoder" or fairseq 0.9's "decoder"), with
    the blog's relative paths in encoder_params."""
    raw = torch.load(folder / "model.pt", weights_only=True)["model"]
    weights = {}
    for side in ("question_model", "ctx_model"):
        weights[f"{side}.fairseq_roberta._float_tensor"] = torch.tensor([0.0])
        for key, value in raw.items():
            key = infix + key[key.index("."):]
            weights[f"{side}.fairseq_roberta.model.{key}"] = value.clone()
    torch.save({"model_dict": weights, "optimizer_dict": {}, "scheduler_dict": {}, "offset": 708,
                "epoch": 34, "encoder_params": {
                    "do_lower_case": True, "pretrained_model_cfg": "data/camembert-base/",
                    "encoder_model_type": "fairseq_roberta",
                    "pretrained_file": "data/camembert-base", "projection_dim": 0,
                    "sequence_length": 32}}, path)


@pytest.mark.parametrize("infix", ["encoder", "decoder"])
def test_convert_original_fairseq_layout_matches_the_fairseq_model(
        tmp_path: Path, fairseq_camembert: Path, infix: str) -> None:
    # Given an original-layout fairseq_roberta checkpoint whose stored paths do not resolve
    ckpt = tmp_path / "dpr_biencoder.34.708"
    _original_fairseq_checkpoint(fairseq_camembert, ckpt, infix=infix)
    overrides = ["--pretrained_file", str(fairseq_camembert)]
    if infix == "encoder":
        overrides += ["--pretrained_model_cfg", str(fairseq_camembert)]
    # When it is converted with the folder given on the command line
    out = tmp_path / "hf"
    assert main([str(ckpt), "--output_dir", str(out), *overrides]) == 0
    # Then both towers equal the fairseq folder's model, with the training tokenization
    reference = build_biencoder("fairseq_roberta", None, pretrained_file=str(fairseq_camembert),
                                dropout=0.0).eval()
    tensorizer = build_tensorizer("fairseq_roberta", str(fairseq_camembert), sequence_length=32,
                                  do_lower_case=True)
    want_ids = tensorizer.encode_items(question_items(QUESTIONS, tensorizer.recipe))
    with torch.no_grad():
        want = reference.question_model(*tensorizer.pad(want_ids))
    for side in ("question", "ctx"):
        folder = out / f"{side}_encoder"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = _folder_inputs(tokenizer, "question", lower=True)
        model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
        with torch.no_grad():
            got = model(*_pad(ids, tokenizer.pad_token_id)).last_hidden_state[:, 0]
        assert ids == want_ids
        assert torch.allclose(got, want, atol=TOL, rtol=0), (got - want).abs().max()
        st = SentenceTransformer(str(folder), device="cpu")
        got_st = st.encode([strip_question_mark(q).strip() for q in QUESTIONS],
                           convert_to_tensor=True, show_progress_bar=False)
        assert torch.allclose(got_st, want, atol=TOL, rtol=0), (got_st - want).abs().max()


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def camembert_checkpoint(converted, tmp_path: Path) -> Path:
    """A copy of the trained hf_roberta (CamemBERT) checkpoint in its own folder."""
    ckpt = tmp_path / "ckpt" / "dpr_biencoder.0.2"
    ckpt.parent.mkdir()
    shutil.copy(converted["hf_roberta"][0], ckpt)
    return ckpt


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_cli_corrupted_checkpoint_fails_cleanly(camembert_checkpoint: Path, tmp_path: Path,
                                                capsys, damage: str) -> None:
    # Given a damaged checkpoint file
    data = camembert_checkpoint.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 8,
           "empty": b""}[damage]
    camembert_checkpoint.write_bytes(bad)
    before = _entries(tmp_path)
    # When it is converted
    rc = main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "hf")])
    # Then exit code 1, a message naming the file, and nothing written
    assert rc == 1
    err = capsys.readouterr().err
    assert str(camembert_checkpoint) in err and "--allow_unsafe_pickle" not in err
    assert _entries(tmp_path) == before


def test_cli_unknown_encoder_type_fails_cleanly(camembert_checkpoint: Path, tmp_path: Path,
                                                capsys) -> None:
    # Given a checkpoint of an encoder type dpr2hf does not know
    state = torch.load(camembert_checkpoint, weights_only=True)
    state["encoder_params"]["encoder_model_type"] = "pytext_bert"
    torch.save(state, camembert_checkpoint)
    before = _entries(tmp_path)
    # When it is converted
    rc = main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "hf")])
    # Then exit code 1 and a message naming the file and the type; nothing written
    err = capsys.readouterr().err
    assert rc == 1
    assert str(camembert_checkpoint) in err and "'pytext_bert'" in err
    assert _entries(tmp_path) == before


def test_cli_non_empty_output_dir_needs_overwrite(camembert_checkpoint: Path, tmp_path: Path,
                                                  capsys) -> None:
    # Given an output folder that already holds a file
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    # When converting without --overwrite
    rc = main([str(camembert_checkpoint), "--output_dir", str(out)])
    # Then exit code 1, the folder named, and the folder untouched
    assert rc == 1
    assert str(out) in capsys.readouterr().err
    assert _entries(out) == {"keep.txt"}
    assert _entries(tmp_path) == {"ckpt", "hf"}
    # And with --overwrite the folder is replaced by the verified conversion
    assert main([str(camembert_checkpoint), "--output_dir", str(out), "--overwrite"]) == 0
    assert _entries(out) == {"question_encoder", "ctx_encoder"}
    assert _entries(tmp_path) == {"ckpt", "hf"}


def test_cli_failed_verification_leaves_nothing(camembert_checkpoint: Path, tmp_path: Path,
                                                capsys) -> None:
    # Given a tolerance no conversion can meet
    before = _entries(tmp_path)
    # When converting
    rc = main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "hf"),
               "--tolerance", "-1"])
    # Then exit code 1, the difference reported, and no folder (staging removed)
    assert rc == 1
    assert "vectors differ from the bi-encoder's" in capsys.readouterr().err
    assert _entries(tmp_path) == before


def test_cli_pickled_checkpoint_needs_explicit_opt_in(camembert_checkpoint: Path,
                                                      tmp_path: Path, capsys) -> None:
    # Given a checkpoint holding a pickled Python object (as some original checkpoints do)
    state = torch.load(camembert_checkpoint, weights_only=True)
    state["optimizer_dict"] = {"args": argparse.Namespace(lr=2e-5)}
    torch.save(state, camembert_checkpoint)
    # When converting without the flag, it is refused with a pointer to the flag
    assert main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "a")]) == 1
    assert "--allow_unsafe_pickle" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # And with the flag it converts, with a warning
    assert main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "b"),
                 "--allow_unsafe_pickle"]) == 0
    assert "full unpickling" in capsys.readouterr().err
    assert (tmp_path / "b" / "ctx_encoder" / "model.safetensors").is_file()


def test_cli_help_documents_every_flag(capsys) -> None:
    # When asking for help
    rc = main(["--help"])
    # Then every flag is listed with help text
    out = capsys.readouterr().out
    assert rc == 0
    for flag in ("--output_dir", "--pretrained_model_cfg", "--pretrained_file", "--overwrite",
                 "--allow_unsafe_pickle", "--tolerance"):
        assert flag in out
    assert all(action.help for action in build_parser()._actions)


def test_cli_unresolvable_model_folder_names_the_override_flags(camembert_checkpoint: Path,
                                                                tmp_path: Path, capsys) -> None:
    # Given a model folder that does not exist (as a stored relative path would not)
    before = _entries(tmp_path)
    # When converting with it
    rc = main([str(camembert_checkpoint), "--output_dir", str(tmp_path / "hf"),
               "--pretrained_model_cfg", "data/camembert-base/"])
    # Then exit code 1, the checkpoint, the path and the flag are named, nothing written
    err = capsys.readouterr().err
    assert rc == 1
    assert str(camembert_checkpoint) in err and "data/camembert-base/" in err
    assert "--pretrained_model_cfg" in err
    assert _entries(tmp_path) == before


def test_convert_xlm_roberta_checkpoint_exports_an_xlm_roberta_tokenizer(
        tmp_path: Path, small_train_file: Path, tiny_xlmr: Path) -> None:
    # Given a bi-encoder trained from an XLM-R folder (which holds sentencepiece.bpe.model)
    from transformers import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    ckpt = _train(tmp_path / "train", small_train_file, [
        "--encoder_model_type", "hf_roberta", "--pretrained_model_cfg", str(tiny_xlmr)])
    # When converting it (dpr2hf verifies the vectors of the reloaded folders)
    assert main([str(ckpt), "--output_dir", str(tmp_path / "hf")]) == 0
    # Then each folder reloads with AutoTokenizer as XLM-R, with XLM-R's ids
    direct = XLMRobertaTokenizer.from_pretrained(tiny_xlmr)
    want_ids, _ = _biencoder_reference(ckpt, "question")
    for side in ("question", "ctx"):
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf" / f"{side}_encoder")
        assert isinstance(tokenizer, XLMRobertaTokenizerFast)
        for question in QUESTIONS[:4]:
            assert tokenizer(question)["input_ids"] == direct(question)["input_ids"]
    assert _folder_inputs(tokenizer, "question", False) == want_ids
