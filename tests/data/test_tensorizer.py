from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import CamembertTokenizer

from dpr.data.recipe import passage_items, question_items, strip_question_mark
from dpr.data.tensorizer import Tensorizer, build_tensorizer, build_tokenizer, is_fairseq_folder


def test_tokenizer_factory_picks_by_model_type_and_folder(tiny_camembert: Path, tiny_bert: Path,
                                                          tiny_roberta: Path) -> None:
    assert type(build_tokenizer("hf_bert", str(tiny_bert))).__name__ == "BertTokenizerFast"
    assert type(build_tokenizer("hf_roberta", str(tiny_camembert))).__name__ == \
        "CamembertTokenizerFast"
    assert type(build_tokenizer("hf_roberta", str(tiny_roberta))).__name__ == \
        "RobertaTokenizerFast"


def test_fairseq_folder_is_a_sentencepiece_file_without_tokenizer_configuration(
        tmp_path: Path, tiny_roberta: Path, tiny_xlmr: Path, fairseq_camembert: Path) -> None:
    # Given folders with and without a SentencePiece file and a configuration
    def folder(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for file, text in files.items():
            (path / file).write_text(text)
        return path

    spm = {"sentencepiece.bpe.model": "x"}
    # Then only the SentencePiece file without tokenizer_config.json nor a model_type is one
    assert is_fairseq_folder(fairseq_camembert) and is_fairseq_folder(folder("a", spm))
    assert is_fairseq_folder(folder("b", {**spm, "config.json": "{}"}))
    assert not is_fairseq_folder(folder("c", {**spm, "config.json": '{"model_type": "bert"}'}))
    assert not is_fairseq_folder(folder("d", {**spm, "tokenizer_config.json": "{}"}))
    assert not is_fairseq_folder(tiny_roberta) and not is_fairseq_folder(tiny_xlmr)


def test_camembert_fast_ids_equal_sentencepiece_tokenizer(tiny_camembert: Path) -> None:
    # The fast tokenizer must give the ids of the SentencePiece-based one (what DPR used)
    fast = build_tokenizer("hf_roberta", str(tiny_camembert))
    slow = CamembertTokenizer.from_pretrained(str(tiny_camembert))
    for text in ["Où est né Victor Hugo ?", "Élève présenté à l'école, ça coûte 12 €"]:
        assert fast(text)["input_ids"] == slow(text)["input_ids"]
    assert fast("Loire", "La Loire est longue.")["input_ids"] == \
        slow("Loire", "La Loire est longue.")["input_ids"]


def test_tensorizer_pads_with_pad_id_and_masks_only_padding(tiny_camembert: Path) -> None:
    tok = build_tokenizer("hf_roberta", str(tiny_camembert))
    tz = Tensorizer(tok, max_length=32)
    ids, mask = tz.tensorize(["La Loire", "Le château de Chambord est situé en France"])
    assert ids.shape == (2, 32)
    assert tok.pad_token_id == 1 and tok.cls_token_id == 5
    # the first token (<s>) must not be masked (DPR's mask from pad_token_type_id would be
    # wrong for RoBERTa ids); pads are masked
    assert mask[:, 0].all()
    assert torch.equal(mask, ids != 1)
    n = len(tok("La Loire")["input_ids"])
    assert mask[0].sum() == n and (ids[0, n:] == 1).all()


def test_tensorizer_title_pair_and_truncation_to_max_length(tiny_camembert: Path) -> None:
    tok = build_tokenizer("hf_roberta", str(tiny_camembert))
    tz = Tensorizer(tok, max_length=12)
    ids, mask = tz.tensorize(passage_items(
        [("Seine", "La Seine traverse Paris et se jette dans la Manche au Havre")], tz.recipe))
    row = ids[0].tolist()
    assert mask.all()  # truncated: no padding left
    assert row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
    assert row.count(tok.sep_token_id) == 3  # <s> title </s></s> text </s>


def test_tensorizer_dynamic_padding_pads_to_longest(tiny_camembert: Path) -> None:
    tz = Tensorizer(build_tokenizer("hf_roberta", str(tiny_camembert)), max_length=64,
                    pad_to_max=False)
    ids, _ = tz.tensorize(["court", "un texte un peu plus long que le premier"])
    assert ids.shape[1] == len(tz.encode_items(["un texte un peu plus long que le premier"])[0])


@pytest.mark.parametrize("kind, fixture", [("hf_roberta", "tiny_camembert"),
                                           ("hf_bert", "tiny_cased_bert")])
def test_do_lower_case_lowercases_before_tokenization(request: pytest.FixtureRequest, kind: str,
                                                      fixture: str) -> None:
    # Given a tokenizer whose vocabulary keeps case (CamemBERT's, a cased BERT's: with an
    # uncased one the flag could not change any id)
    tok = build_tokenizer(kind, str(request.getfixturevalue(fixture)))
    lower = Tensorizer(tok, max_length=20, lowercase=True)
    plain = Tensorizer(tok, max_length=20)
    # When encoding mixed-case text with the flag
    ids = lower.tensorize(passage_items([("Écrivain", "Victor HUGO")], lower.recipe))[0]
    # Then the ids are those of the lower-cased text, and not those of the text as written
    assert torch.equal(ids, plain.tensorize(passage_items([("écrivain", "victor hugo")],
                                                          plain.recipe))[0])
    assert not torch.equal(ids, plain.tensorize(passage_items([("Écrivain", "Victor HUGO")],
                                                              plain.recipe))[0])
    assert not torch.equal(lower.tensorize(question_items(["HUGO"], lower.recipe))[0],
                           plain.tensorize(question_items(["HUGO"], plain.recipe))[0])


@pytest.mark.parametrize("q,expected", [("Qui ?", "Qui "), ("Qui??", "Qui?"), ("Qui", "Qui")])
def test_strip_question_mark_removes_one(q: str, expected: str) -> None:
    assert strip_question_mark(q) == expected


SENTENCES = ["Où est né Victor Hugo ?", "Élève présenté à l'école, ça coûte 12 €",
             "LA LOIRE À ORLÉANS"]


@pytest.mark.parametrize("fixture,fast_name,slow_name", [
    ("tiny_xlmr", "XLMRobertaTokenizerFast", "XLMRobertaTokenizer"),
    ("tiny_camembert", "CamembertTokenizerFast", "CamembertTokenizer"),
    ("tiny_roberta", "RobertaTokenizerFast", "RobertaTokenizer"),
])
def test_tokenizer_factory_uses_the_folders_own_tokenizer_class(
        request: pytest.FixtureRequest, fixture: str, fast_name: str, slow_name: str) -> None:
    # Given an XLM-R, a CamemBERT or a RoBERTa folder
    import transformers

    folder = request.getfixturevalue(fixture)
    # When building the hf_roberta tokenizer
    tok = build_tokenizer("hf_roberta", str(folder))
    # Then it is the folder's class and gives the ids of that class loaded directly
    assert type(tok).__name__ == fast_name
    direct = getattr(transformers, slow_name).from_pretrained(str(folder))
    for text in SENTENCES:
        assert tok(text)["input_ids"] == direct(text)["input_ids"]
    assert tok("Loire", SENTENCES[0])["input_ids"] == direct("Loire", SENTENCES[0])["input_ids"]


def test_xlm_roberta_ids_are_not_camemberts(tiny_xlmr: Path) -> None:
    # Given an XLM-R folder, which holds sentencepiece.bpe.model as CamemBERT's do
    xlmr = build_tokenizer("hf_roberta", str(tiny_xlmr))
    camembert = CamembertTokenizer.from_pretrained(str(tiny_xlmr))
    # Then its ids are XLM-R's (<s> 0, </s> 2, pieces +1), not CamemBERT's (pieces +4)
    ids = xlmr(SENTENCES[0])["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and xlmr.unk_token_id == 3
    assert [i + 3 for i in ids[1:-1]] == camembert(SENTENCES[0])["input_ids"][1:-1]


@pytest.mark.parametrize("fixture,cls_name", [
    ("tiny_bert", "BertTokenizerFast"), ("tiny_cased_bert", "BertTokenizerFast"),
    ("tiny_camembert", "CamembertTokenizerFast"), ("tiny_xlmr", "XLMRobertaTokenizerFast"),
    ("tiny_roberta", "RobertaTokenizerFast"), ("tiny_e5", "XLMRobertaTokenizerFast"),
    ("fairseq_camembert", "CamembertTokenizerFast")])
def test_tokenizer_of_every_folder_gives_the_ids_of_its_own_class(
        request: pytest.FixtureRequest, fixture: str, cls_name: str) -> None:
    # Given BERT, CamemBERT, XLM-R, RoBERTa, e5-shaped (BERT + XLM-R tokenizer) and fairseq
    # folders, and the class the project chose by hand before AutoTokenizer resolved it
    import transformers

    folder = str(request.getfixturevalue(fixture))
    # When building the tokenizer
    tok = build_tokenizer("hf_bert" if "bert" in fixture else "hf_roberta", folder)
    # Then it is that class, with the same token ids on French text and pairs
    direct = getattr(transformers, cls_name).from_pretrained(folder)
    assert type(tok).__name__ == cls_name
    for text in SENTENCES:
        assert tok(text)["input_ids"] == direct(text)["input_ids"]
    assert tok("Loire", SENTENCES[1])["input_ids"] == direct("Loire", SENTENCES[1])["input_ids"]


def test_tokenizer_class_named_in_config_json_only_is_used(tmp_path: Path,
                                                           tiny_xlmr: Path) -> None:
    # Given an XLM-R tokenizer in a BERT model folder whose tokenizer_config.json names no class
    # (hub copies of multilingual-e5 name it in config.json)
    import json
    import shutil

    folder = tmp_path / "e5-copy"
    shutil.copytree(tiny_xlmr, folder)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config.pop("tokenizer_class", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(
        {**config, "model_type": "bert", "tokenizer_class": "XLMRobertaTokenizer"}))
    # Then the tokenizer is XLM-R's, not BERT's
    assert type(build_tokenizer("hf_bert", str(folder))).__name__ == "XLMRobertaTokenizerFast"


def test_pad_rounds_up_to_the_multiple_within_the_maximum_length(tiny_camembert: Path) -> None:
    # Given dynamic padding to multiples of 8 and a 10-token sequence
    tok = build_tokenizer("hf_roberta", str(tiny_camembert))
    seq = [[5] + [40] * 8 + [6]]
    # Then the width is 16 under a maximum of 64, the maximum (12) when 16 would exceed it
    for max_length, width in ((64, 16), (12, 12)):
        tz = Tensorizer(tok, max_length=max_length, pad_to_max=False, pad_to_multiple_of=8)
        ids, mask = tz.pad(seq)
        assert ids.shape == (1, width) and mask.dtype == torch.bool
        assert mask[0, :10].all() and not mask[0, 10:].any() and (ids[0, 10:] == 1).all()


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_cased_bert"])
@pytest.mark.parametrize("lower", [False, True])
def test_hf_bert_tokenizes_as_dprs_bert_tokenizer(request: pytest.FixtureRequest, fixture: str,
                                                  lower: bool) -> None:
    # Given an uncased or a cased BERT folder and --do_lower_case on or off
    from transformers import BertTokenizer

    folder = str(request.getfixturevalue(fixture))
    tz = build_tensorizer("hf_bert", folder, sequence_length=64, do_lower_case=lower)
    # When encoding passages and questions
    dpr = BertTokenizer.from_pretrained(folder, do_lower_case=lower)  # the 2020 code's call
    # Then the ids are those of DPR's BertTokenizer.from_pretrained(cfg, do_lower_case=flag)
    passages = [("Écoles", SENTENCES[1]), ("Loire", SENTENCES[2])]
    assert tz.encode_items(passage_items(passages, tz.recipe)) == \
        [dpr("Écoles", SENTENCES[1])["input_ids"], dpr("Loire", SENTENCES[2])["input_ids"]]
    assert tz.encode_items(question_items(SENTENCES[:1], tz.recipe)) == \
        [dpr("Où est né Victor Hugo ")["input_ids"]]
