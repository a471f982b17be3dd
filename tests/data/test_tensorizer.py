from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import CamembertTokenizer

from dpr.data.recipe import passage_items, question_items, strip_question_mark
from dpr.data.tensorizer import (
    Tensorizer,
    build_tensorizer,
    build_tokenizer,
    is_camembert_folder,
    tokenizer_family,
)


def test_tokenizer_factory_picks_by_model_type_and_folder(tiny_camembert: Path, tiny_bert: Path,
                                                          tiny_roberta: Path) -> None:
    assert type(build_tokenizer("hf_bert", str(tiny_bert))).__name__ == "BertTokenizerFast"
    assert type(build_tokenizer("hf_roberta", str(tiny_camembert))).__name__ == \
        "CamembertTokenizerFast"
    assert type(build_tokenizer("hf_roberta", str(tiny_roberta))).__name__ == \
        "RobertaTokenizerFast"


def test_is_camembert_folder_by_file_config_or_name(tmp_path: Path, tiny_roberta: Path) -> None:
    assert not is_camembert_folder(str(tiny_roberta))
    assert is_camembert_folder(str(tmp_path / "my-CamemBERT-base"))
    cfg = tmp_path / "x"
    cfg.mkdir()
    (cfg / "tokenizer_config.json").write_text('{"tokenizer_class": "CamembertTokenizer"}')
    assert is_camembert_folder(str(cfg))


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
    assert tz.pad_id == 1 and tok.cls_token_id == 5
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


def test_tokenizer_family_rule_order(tmp_path: Path, tiny_xlmr: Path) -> None:
    # Given folders that say their family in different places
    def folder(name: str, files: dict[str, str]) -> str:
        path = tmp_path / name
        path.mkdir()
        for file, text in files.items():
            (path / file).write_text(text)
        return str(path)

    spm = {"sentencepiece.bpe.model": "x"}
    # Then tokenizer_config.json's class comes first, config.json's model_type second, and
    # the SentencePiece file only decides for folders with neither
    assert tokenizer_family(folder("a", {**spm, "config.json": '{"model_type": "camembert"}',
                                         "tokenizer_config.json":
                                         '{"tokenizer_class": "XLMRobertaTokenizerFast"}'})) \
        == "xlm-roberta"
    assert tokenizer_family(folder("b", {**spm, "config.json": '{"model_type": "xlm-roberta"}'})) \
        == "xlm-roberta"
    assert tokenizer_family(folder("c", {**spm, "dict.txt": "", "model.pt": ""})) == "camembert"
    assert tokenizer_family(folder("d", {"config.json": '{"model_type": "roberta"}'})) == "roberta"
    assert tokenizer_family(str(tiny_xlmr)) == "xlm-roberta"
    assert not is_camembert_folder(str(tiny_xlmr))


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
