from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import CamembertTokenizer

from dpr.data.recipe import strip_question_mark
from dpr.data.tensorizer import Tensorizer, build_tokenizer, is_camembert_folder


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
    ids, mask = tz.tensorize(["La Seine traverse Paris et se jette dans la Manche au Havre"],
                             ["Seine"])
    row = ids[0].tolist()
    assert mask.all()  # truncated: no padding left
    assert row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
    assert row.count(tok.sep_token_id) == 3  # <s> title </s></s> text </s>


def test_tensorizer_dynamic_padding_pads_to_longest(tiny_camembert: Path) -> None:
    tz = Tensorizer(build_tokenizer("hf_roberta", str(tiny_camembert)), max_length=64,
                    pad_to_max=False)
    ids, _ = tz.tensorize(["court", "un texte un peu plus long que le premier"])
    assert ids.shape[1] == len(tz.encode(["un texte un peu plus long que le premier"])[0])


def test_do_lower_case_lowercases_before_tokenization(tiny_camembert: Path,
                                                      tiny_bert: Path) -> None:
    for kind, folder in (("hf_roberta", tiny_camembert), ("hf_bert", tiny_bert)):
        tok = build_tokenizer(kind, str(folder))
        lower = Tensorizer(tok, max_length=20, lowercase=True)
        plain = Tensorizer(tok, max_length=20)
        assert torch.equal(lower.tensorize(["Victor HUGO"], ["Écrivain"])[0],
                           plain.tensorize(["victor hugo"], ["écrivain"])[0])
    cam = build_tokenizer("hf_roberta", str(tiny_camembert))
    assert not torch.equal(Tensorizer(cam, max_length=20, lowercase=True).tensorize(["HUGO"])[0],
                           Tensorizer(cam, max_length=20).tensorize(["HUGO"])[0])


@pytest.mark.parametrize("q,expected", [("Qui ?", "Qui "), ("Qui??", "Qui?"), ("Qui", "Qui")])
def test_strip_question_mark_removes_one(q: str, expected: str) -> None:
    assert strip_question_mark(q) == expected
