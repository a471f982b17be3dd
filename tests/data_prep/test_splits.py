"""Tune split and held-out domains (data_prep.splits and ``squad2dpr --tune_ratio/--holdout_*``)."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from data_prep.splits import SplitOptions, plan_splits
from data_prep.squad2dpr import main
from dpr.data.records import DataFormatError, load_samples
from dpr.data.squad import load_squad_file
from dpr.data.tsv import read_qas
from dpr.utils.errors import UsageError

FAST = ["--sentence_splitter", "regex", "--quiet", "--bm25_top_k", "5"]
CATEGORIES = {"Lyon": "Est", "Marseille": "Sud", "Bordeaux": "Ouest", "Toulouse": "Sud",
              "Nantes": "Ouest"}
CTX_KEYS = ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs")


def with_categories(small_fixture: Path, tmp_path: Path, *, skip: str | None = None) -> Path:
    """The small fixture with a ``categorie`` on every article (but ``skip``)."""
    payload = json.loads(small_fixture.read_text(encoding="utf-8"))
    for article in payload["data"]:
        if article["title"] != skip:
            article["categorie"] = CATEGORIES[article["title"]]
    path = tmp_path / "categorised.json"
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path


def records(out: Path, split: str) -> list[dict[str, Any]]:
    return json.loads((out / f"DPR_FR_{split}.json").read_text(encoding="utf-8"))


def articles(out: Path, split: str, keys: tuple[str, ...] = CTX_KEYS) -> set[str]:
    """``<source>:<article index>`` of every context of a split's records."""
    return {":".join(c["passage_id"].split(":")[:2])
            for r in records(out, split) for key in keys for c in r[key]}


def positive_articles(out: Path, split: str) -> set[str]:
    return articles(out, split, ("positive_ctxs",))


def test_plan_defaults_keep_the_historical_dev_split(small_fixture: Path) -> None:
    # Given the 5-article fixture and the default options (dev 0.2, no tune, no hold-out)
    files = [load_squad_file(small_fixture, source="small")]
    # When planning the split
    plan = plan_splits(files, SplitOptions())
    # Then dev is the first round(5 * 0.2) article of the seeded shuffle of the sorted keys
    keys = sorted(plan)
    random.Random(42).shuffle(keys)
    assert {k for k, s in plan.items() if s == "dev"} == {keys[0]}
    assert sorted(set(plan.values())) == ["dev", "train"]
    assert SplitOptions().names == ("train", "dev")


def test_plan_tune_follows_dev_in_the_shuffle_and_never_empties_train(
        small_fixture: Path) -> None:
    # Given 5 articles
    files = [load_squad_file(small_fixture, source="small")]
    # When asking 40 % dev and 40 % tune
    plan = plan_splits(files, SplitOptions(dev_ratio=0.4, tune_ratio=0.4, seed=3))
    # Then 2 dev, 2 tune, 1 train article; dev is what it would be without tune
    assert [list(plan.values()).count(s) for s in ("train", "dev", "tune")] == [1, 2, 2]
    without = plan_splits(files, SplitOptions(dev_ratio=0.4, seed=3))
    assert ({k for k, s in plan.items() if s == "dev"}
            == {k for k, s in without.items() if s == "dev"})
    # And ratios leaving no training article are refused
    with pytest.raises(UsageError, match="with a sum < 1"):
        SplitOptions(dev_ratio=0.5, tune_ratio=0.5)


def test_cli_default_writes_no_tune_or_test_files(tmp_path: Path, small_fixture: Path) -> None:
    # Given the default options
    out = tmp_path / "out"
    # When converting
    assert main([str(small_fixture), "--output_dir", str(out), *FAST]) == 0
    # Then only train/dev files are written and stats say nothing was held out
    assert not list(out.glob("*tune*")) and not list(out.glob("*test*"))
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert set(stats["questions"]) == {"input", "train", "dev", "dropped", "dropped_total"}
    assert stats["split"]["holdout"] == {"field": None, "values": [], "articles": 0}
    assert stats["split"]["articles"] == {"train": 4, "dev": 1}


def test_cli_tune_split_shares_no_article_with_train_or_dev(tmp_path: Path,
                                                            small_fixture: Path) -> None:
    # Given 5 articles, 20 % dev and 20 % tune
    out = tmp_path / "out"
    # When converting
    assert main([str(small_fixture), "--output_dir", str(out), "--tune_ratio", "0.2",
                 *FAST]) == 0
    # Then the tune files exist, hold one article, and no context of it is in train or dev
    tune = positive_articles(out, "tune")
    assert len(tune) == 1
    assert not articles(out, "tune") & (articles(out, "train") | articles(out, "dev"))
    assert not articles(out, "dev") & articles(out, "train")
    assert read_qas(out / "qas_tune.tsv") == [
        (r["question"], r["answers"]) for r in records(out, "tune")]
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["articles"] == {"train": 3, "dev": 1, "tune": 1}
    q = stats["questions"]
    assert q["train"] + q["dev"] + q["tune"] + q["dropped_total"] == q["input"]


def test_cli_holdout_sends_exactly_the_asked_categories_to_test(
        tmp_path: Path, small_fixture: Path) -> None:
    # Given articles with a categorie, "Sud" being Marseille and Toulouse
    source = with_categories(small_fixture, tmp_path)
    out = tmp_path / "out"
    # When holding out "Sud"
    assert main([str(source), "--output_dir", str(out), "--holdout_field", "categorie",
                 "--holdout_values", "Sud", "--dev_ratio", "0.4", *FAST]) == 0
    # Then the test split holds exactly their questions, and no other split mentions them
    test_titles = {c["title"] for r in records(out, "test") for c in r["positive_ctxs"]}
    assert test_titles == {"Marseille", "Toulouse"}
    assert articles(out, "test") == positive_articles(out, "test")
    for split in ("train", "dev"):
        assert not articles(out, split) & articles(out, "test")
    # And the remaining 3 articles are split as usual; passages.tsv keeps every article
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["articles"] == {"train": 2, "dev": 1, "test": 2}
    assert stats["split"]["holdout"] == {"field": "categorie", "values": ["Sud"],
                                         "articles": 2}
    with (out / "passages.tsv").open(encoding="utf-8", newline="") as handle:
        titles = {row[2] for row in list(csv.reader(handle, delimiter="\t"))[1:]}
    assert titles == set(CATEGORIES)
    assert [q for q, _ in read_qas(out / "qas_test.tsv")] == [
        r["question"] for r in records(out, "test")]


def test_cli_holdout_field_missing_on_an_article_names_the_file(
        tmp_path: Path, small_fixture: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a file where Nantes has no categorie
    source = with_categories(small_fixture, tmp_path, skip="Nantes")
    out = tmp_path / "out"
    # When holding out by categorie
    with caplog.at_level(logging.ERROR):
        rc = main([str(source), "--output_dir", str(out), "--holdout_field", "categorie",
                   "--holdout_values", "Sud", *FAST])
    # Then it fails with the file and the article named, and writes nothing
    assert rc == 1
    assert "categorised.json: 1 article(s) have no field 'categorie'" in caplog.text
    assert "'Nantes'" in caplog.text
    assert not out.exists()


def test_cli_holdout_value_matching_no_article_is_an_error(
        tmp_path: Path, small_fixture: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a misspelt category
    source = with_categories(small_fixture, tmp_path)
    # When holding it out
    with caplog.at_level(logging.ERROR):
        rc = main([str(source), "--output_dir", str(tmp_path / "o"), "--holdout_field",
                   "categorie", "--holdout_values", "Sud,Nord", *FAST])
    # Then it fails, naming the value and listing those present
    assert rc == 1
    assert "'Nord': no article has this 'categorie' (values present: Est, Ouest, Sud)" \
        in caplog.text


def test_cli_rejects_inconsistent_split_flags(tmp_path: Path, small_fixture: Path) -> None:
    # Given ratios summing to 1, and a hold-out field without values
    for extra in (["--dev_ratio", "0.5", "--tune_ratio", "0.5"],
                  ["--holdout_field", "categorie"]):
        # When parsing, then the command exits with status 2 and writes nothing
        assert main([str(small_fixture), "--output_dir", str(tmp_path / "o"), *extra]) == 2
        assert not (tmp_path / "o").exists()


def test_piaf_holdout_and_tune_splits(piaf_path: Path, tmp_path: Path) -> None:
    # Given PIAF v1.0 (categories Histoire, Sciences, Géographie, Arts, Société, Sport, Religion)
    raw = json.loads(piaf_path.read_text(encoding="utf-8"))["data"]
    held = {i for i, a in enumerate(raw) if a["categorie"] in ("Religion", "Sport")}
    out = tmp_path / "out"
    # When holding out Religion and Sport, with 10 % of the rest as tune
    assert main([str(piaf_path), "--output_dir", str(out), "--tune_ratio", "0.1",
                 "--holdout_field", "categorie", "--holdout_values", "Religion,Sport",
                 *FAST]) == 0
    # Then test holds exactly the Religion and Sport articles that have questions
    source = "piaf-v1.0"
    test = {int(a.split(":")[1]) for a in articles(out, "test")}
    assert test <= held and test == {int(a.split(":")[1]) for a in positive_articles(out, "test")}
    with_questions = {i for i in held if any(p["qas"] for p in raw[i]["paragraphs"])}
    assert test == with_questions
    # And train, dev, tune and test share no article, negatives included
    splits = ("train", "dev", "tune", "test")
    seen = {s: articles(out, s) for s in splits}
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not seen[a] & seen[b], (a, b)
    assert all(a.startswith(source) for a in seen["train"])
    # And the sizes are recorded: 30 held-out articles, 10 % of the other 161 in tune
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["holdout"]["articles"] == len(held) == 30
    assert stats["split"]["articles"]["tune"] == round(0.1 * (len(raw) - len(held)))
    q = stats["questions"]
    assert sum(q[s] for s in splits) + q["dropped_total"] == q["input"]


def with_documents(small_fixture: Path, tmp_path: Path, count: int = 10) -> Path:
    """The small fixture plus ``count`` articles of documents without questions (no qas)."""
    payload = json.loads(small_fixture.read_text(encoding="utf-8"))
    payload["data"] += [{"title": f"Démarche {i}", "paragraphs": [
        {"context": f"La démarche numéro {i} se fait en ligne, à Lyon comme à Nantes."}]}
        for i in range(count)]
    path = tmp_path / "with_documents.json"
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path


def test_plan_corpus_only_articles_do_not_move_the_question_split(
        small_fixture: Path, tmp_path: Path) -> None:
    # Given the 5 question-bearing articles, then the same with 10 articles without questions
    alone = plan_splits([load_squad_file(small_fixture, source="s")], SplitOptions())
    both = plan_splits([load_squad_file(with_documents(small_fixture, tmp_path), source="s")],
                       SplitOptions())
    # When splitting both, then the question-bearing articles go where they went alone
    assert {k: both[k] for k in alone} == alone
    # And the documents are split by the same ratio, apart: 2 of 10 in dev
    documents = [s for k, s in both.items() if k.startswith("démarche")]
    assert sorted(documents) == ["dev"] * 2 + ["train"] * 8


def test_cli_dev_ratio_1_sends_every_article_to_dev(tmp_path: Path, small_fixture: Path) -> None:
    # Given question-bearing articles and articles of documents without questions
    source = with_documents(small_fixture, tmp_path)
    out = tmp_path / "out"
    # When converting with --dev_ratio 1
    assert main([str(source), "--output_dir", str(out), "--dev_ratio", "1", *FAST]) == 0
    # Then every question is in dev, the training file is an empty array (which training
    # refuses by name), and the documents are in passages.tsv and among dev's negatives
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    q = stats["questions"]
    assert q["train"] == 0 and q["dev"] + q["dropped_total"] == q["input"]
    assert stats["split"]["articles"] == {"train": 0, "dev": 15}
    assert records(out, "train") == []
    with pytest.raises(DataFormatError, match="DPR_FR_train.json: contains no records"):
        load_samples(str(out / "DPR_FR_train.json"))
    assert len(read_qas(out / "qas_dev.tsv")) == q["dev"]
    assert "La démarche numéro 9" in (out / "passages.tsv").read_text(encoding="utf-8")
    assert any(c["title"].startswith("Démarche") for r in records(out, "dev")
               for c in r["hard_negative_ctxs"])
    # And a tune split beside it is refused (exit 2), nothing written
    assert main([str(source), "--output_dir", str(tmp_path / "o"), "--dev_ratio", "1",
                 "--tune_ratio", "0.1", *FAST]) == 2
    assert not (tmp_path / "o").exists()


def test_cli_dev_ratio_1_on_an_untitled_export(tmp_path: Path) -> None:
    # Given an FAQ export: untitled articles, questions without ids, answers without offsets
    data = [{"paragraphs": [{"context": f"Le guichet {i} ouvre à {8 + i} heures.", "qas": [
        {"question": f"Quand ouvre le guichet {i} ?",
         "answers": [{"text": f"{8 + i} heures"}]}]}]}  # no answer_start: found by text
        for i in range(4)]
    source = tmp_path / "faq.json"
    source.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    # When sending everything to dev
    assert main([str(source), "--output_dir", str(out), "--dev_ratio", "1", *FAST]) == 0
    # Then the four articles and their questions are dev
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["articles"] == {"train": 0, "dev": 4}
    assert stats["questions"]["dev"] == 4


def test_cli_holdout_by_title(tmp_path: Path, small_fixture: Path) -> None:
    # Given articles with a title, and an untitled one (an FAQ page)
    payload = json.loads(small_fixture.read_text(encoding="utf-8"))
    untitled = {k: v for k, v in payload["data"][0].items() if k != "title"}
    payload["data"].append(untitled)
    source = tmp_path / "titled.json"
    source.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    # When holding out two articles by title
    assert main([str(source), "--output_dir", str(out), "--holdout_field", "title",
                 "--holdout_values", "Lyon,Nantes", *FAST]) == 0
    # Then the test split is exactly theirs; the untitled article stays in train or dev
    assert {c["title"] for r in records(out, "test") for c in r["positive_ctxs"]} == {
        "Lyon", "Nantes"}
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["split"]["holdout"] == {"field": "title", "values": ["Lyon", "Nantes"],
                                         "articles": 2}
    assert stats["split"]["articles"]["train"] + stats["split"]["articles"]["dev"] == 4
