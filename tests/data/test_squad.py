"""Tests for SQuAD reading and validation (dpr.data.squad, used by data_prep and dpr.evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpr.data.records import DataFormatError
from dpr.data.squad import Answer, load_squad_file, passage_article_key, source_labels

V2_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "squad_fr_v2.json"


def write(tmp_path: Path, payload: object, name: str = "f.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path


def one_question(context: str, text: str, start: int, **extra: object) -> dict:
    qa = {"id": "q1", "question": "Question ?", "answers": [{"text": text, "answer_start": start}]}
    return {"data": [{"title": "Titre", "paragraphs": [{"context": context,
                                                        "qas": [{**qa, **extra}]}]}]}


def test_load_v2_unanswerable_questions_are_counted() -> None:
    # Given a v2 file with one answerable and two unanswerable questions
    # When loading it
    loaded = load_squad_file(V2_FIXTURE, source="v2")
    # Then only the answerable one is kept and the others are counted
    assert [q.qid for p in loaded.paragraphs for q in p.questions] == ["lille-1"]
    assert loaded.stats["dropped_unanswerable"] == 2
    assert loaded.stats["questions"] == 3


def test_load_answer_cut_inside_word_is_widened(tmp_path: Path) -> None:
    # Given an answer whose span starts in the middle of "le" and has an outer space
    context = "On étudie le groupe B des virus."
    start = context.index("e groupe")
    path = write(tmp_path, one_question(context, "e groupe B ", start))
    # When loading
    loaded = load_squad_file(path, source="f")
    (answer,) = loaded.paragraphs[0].questions[0].answers
    # Then the answer is the whole words, with matching offsets, and the fix is counted
    assert answer.text == "le groupe B"
    assert context[answer.start : answer.end] == answer.text
    assert loaded.stats["answers_expanded_to_word_boundary"] == 1


def test_load_answer_at_paragraph_end_keeps_last_char(tmp_path: Path) -> None:
    # Given an answer ending exactly at the end of the context
    context = "La capitale de la France est Paris"
    path = write(tmp_path, one_question(context, "Paris", context.index("Paris")))
    # When loading
    (answer,) = load_squad_file(path, source="f").paragraphs[0].questions[0].answers
    # Then it is kept whole
    assert answer.text == "Paris" and answer.end == len(context)


def test_load_offset_mismatch_names_record_and_respects_strict(tmp_path: Path) -> None:
    # Given an answer_start pointing one character too far
    context = "La capitale de la France est Paris."
    path = write(tmp_path, one_question(context, "Paris", context.index("Paris") + 1))
    # When loading strictly, then leniently
    with pytest.raises(DataFormatError, match=r"f\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\] "
                       r"\(id=q1\) answers\[0\]: answer_start 30 does not match"):
        load_squad_file(path, source="f", strict=True)
    loaded = load_squad_file(path, source="f")
    # Then strict raises, lenient drops the question and counts both events
    assert loaded.stats["answers_offset_mismatch"] == 1
    assert loaded.stats["dropped_no_valid_answer"] == 1
    assert not loaded.paragraphs[0].questions


def test_load_wrong_types_are_errors(tmp_path: Path) -> None:
    # Given paragraphs that are not a list, and a title that is a number
    bad_paragraphs = write(tmp_path, {"data": [{"title": "T", "paragraphs": {}}]}, "a.json")
    bad_title = write(tmp_path, {"data": [{"title": 3, "paragraphs": []}]}, "b.json")
    # When loading them
    # Then the errors name the file, the record and the field
    with pytest.raises(DataFormatError,
                       match=r"a\.json: data\[0\]: field 'paragraphs' must be list"):
        load_squad_file(bad_paragraphs, source="a")
    with pytest.raises(DataFormatError, match=r"b\.json: data\[0\]: field 'title' must be str"):
        load_squad_file(bad_title, source="b")


def test_source_labels_are_unique_and_stable() -> None:
    # Given files with the same name in different folders
    paths = [Path("a/train.json"), Path("b/train.json.gz"), Path("piaf-v1.0.json")]
    # When labelling them
    # Then stems are used and repeats get a positional suffix
    assert source_labels(paths) == ["train", "train~2", "piaf-v1.0"]


def faq_file(tmp_path: Path) -> Path:
    """Two untitled articles and one titled, questions without ids (as FAQ tools write)."""
    def article(title: object, context: str, answer: str) -> dict:
        qa = {"question": f"Où {answer} ?", "answers": [{"text": answer,
                                                        "answer_start": context.index(answer)}]}
        body = {"paragraphs": [{"context": context, "qas": [qa, {**qa, "id": ""}]}]}
        return body if title is None else {"title": title, **body}

    return write(tmp_path, {"data": [
        article(None, "La Loire traverse Tours.", "Tours"),
        article("", "Le Rhône traverse Lyon.", "Lyon"),
        article("Seine", "La Seine traverse Paris.", "Paris"),
    ]}, "faq.json")


def test_load_questions_without_id_get_positional_ids(tmp_path: Path) -> None:
    # Given questions with no id and an empty id
    path = faq_file(tmp_path)
    # When loading the file twice
    first, again = (load_squad_file(path, source="faq") for _ in range(2))
    # Then each gets <source>-<article>-<paragraph>-<question>, stable across reads
    ids = [q.qid for p in first.paragraphs for q in p.questions]
    assert ids == ["faq-0-0-0", "faq-0-0-1", "faq-1-0-0", "faq-1-0-1", "faq-2-0-0",
                   "faq-2-0-1"]
    assert ids == [q.qid for p in again.paragraphs for q in p.questions]
    assert first.stats["questions_given_positional_id"] == 6


def test_load_untitled_articles_keep_their_own_article_key(tmp_path: Path) -> None:
    # Given a missing title, an empty title and a real one
    loaded = load_squad_file(faq_file(tmp_path), source="faq")
    # Then untitled articles have title "" and distinct positional keys; the titled one its title
    assert [p.title for p in loaded.paragraphs] == ["", "", "Seine"]
    assert [p.article_key for p in loaded.paragraphs] == ["#faq:0", "#faq:1", "seine"]
    assert loaded.stats["articles_without_title"] == 2


def test_load_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    # Given a SQuAD file saved with a UTF-8 byte-order mark (Windows editors, spreadsheet exports)
    plain = write(tmp_path, one_question("La Loire est un fleuve.", "Loire", 3), "plain.json")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    # When loading both
    loaded, expected = (load_squad_file(p, source="s") for p in (bom, plain))
    # Then the mark is skipped: the same questions and passages as without it
    assert [(q.qid, q.question, q.answers) for p in loaded.paragraphs for q in p.questions] == \
        [(q.qid, q.question, q.answers) for p in expected.paragraphs for q in p.questions]
    assert loaded.paragraphs[0].title == "Titre"


def test_passage_article_key_reads_back_the_key_data_prep_split_by(tmp_path: Path) -> None:
    # Given the paragraphs of untitled and titled articles, and the ids data_prep gives their
    # passages (<paragraph key>:<n>) and answer windows (<paragraph key>:w<start>-<end>)
    loaded = load_squad_file(faq_file(tmp_path), source="faq")
    # Then a passage's key is its article's key, untitled articles by position
    for paragraph in loaded.paragraphs:
        for passage_id in (f"{paragraph.key}:0", f"{paragraph.key}:w3-20"):
            assert passage_article_key(paragraph.title, passage_id) == paragraph.article_key
    assert passage_article_key("", "faq:0:0:1") != passage_article_key("", "faq:1:0:0")
    # and an untitled passage with an id of another shape has no article key
    assert passage_article_key("", "p17") is None
    assert passage_article_key(None, None) is None


def export_file(tmp_path: Path) -> Path:
    """A site export: documents without questions beside one question-bearing paragraph."""
    context = "La carte grise coûte 13,76 euros en Bretagne."
    qa = {"id": "q1", "question": "Combien coûte la carte grise ?",
          "answers": [{"text": "13,76 euros", "answer_start": context.index("13,76")}]}
    return write(tmp_path, {"data": [
        {"title": "Carte grise", "paragraphs": [
            {"context": context, "qas": [qa]},
            {"context": "Le permis de conduire se demande en ligne."},  # no qas key
            {"context": "La carte d'identité est gratuite.", "qas": None},
            {"context": "Le passeport coûte 86 euros.", "qas": []},
            {"context": " \n ", "qas": []},  # blank: no text to search
        ]},
        {"title": "Vide", "paragraphs": []},
    ]}, "export.json")


def test_load_paragraphs_without_qas_are_corpus_only_documents(tmp_path: Path) -> None:
    # Given an export whose paragraphs lack qas (missing, null, []), one blank, one empty article
    # When loading it
    loaded = load_squad_file(export_file(tmp_path), source="export")
    # Then every paragraph with text is kept, without questions but the first one's
    assert [(p.key, len(p.questions)) for p in loaded.paragraphs] == [
        ("export:0:0", 1), ("export:0:1", 0), ("export:0:2", 0), ("export:0:3", 0)]
    # And they are counted: 3 documents without questions, 1 blank context dropped
    assert loaded.stats["paragraphs_without_questions"] == 3
    assert loaded.stats["paragraphs_empty_context"] == 1
    assert loaded.stats["paragraphs"] == 5 and loaded.stats["articles"] == 2


def test_load_a_file_of_documents_only_is_an_error_naming_it(tmp_path: Path) -> None:
    # Given an export where no paragraph has a question
    path = write(tmp_path, {"data": [{"title": "T", "paragraphs": [{"context": "Du texte."}]}]},
                 "docs.json")
    # When loading it, then the error names the file
    with pytest.raises(DataFormatError, match=r"docs\.json: no questions found"):
        load_squad_file(path, source="docs")


def test_load_answer_without_start_is_located_by_its_text(tmp_path: Path) -> None:
    # Given answers without answer_start (missing, null), one of them not in the context
    context = "Le Rhône traverse Lyon puis Avignon; Lyon est sa plus grande ville."
    qas = [{"id": "a", "question": "Quelle ville ?", "answers": [{"text": "Lyon"}]},
           {"id": "b", "question": "Quelle autre ?",
            "answers": [{"text": "Avignon", "answer_start": None}]},
           {"id": "c", "question": "Et ici ?", "answers": [{"text": "Marseille"}]}]
    path = write(tmp_path, {"data": [{"title": "R", "paragraphs": [{"context": context,
                                                                    "qas": qas}]}]})
    # When loading it
    loaded = load_squad_file(path, source="f")
    # Then the found ones sit at their text's first occurrence and are counted
    found = {q.qid: q.answers for q in loaded.paragraphs[0].questions}
    assert found == {"a": [Answer("Lyon", context.index("Lyon"))],
                     "b": [Answer("Avignon", context.index("Avignon"))]}
    assert loaded.stats["answers_located_by_text"] == 2
    assert loaded.stats["dropped_no_valid_answer"] == 1
    # And the missing one is an error naming the record under strict
    with pytest.raises(DataFormatError, match=r"qas\[2\] \(id=c\) answers\[0\]: no answer_start "
                       r"and the answer 'Marseille' is not in the context"):
        load_squad_file(path, source="f", strict=True)


def test_load_accepts_duplicated_ids_and_non_breaking_spaces(tmp_path: Path) -> None:
    # Given two questions sharing an id and a context with non-breaking spaces and an entity
    context = "L'aide atteint 10\u00a0000\u00a0euros pour la R&amp;D."
    qas = [{"id": "dup", "question": "Quel montant ?",
            "answers": [{"text": "10\u00a0000\u00a0euros", "answer_start": 15}]},
           {"id": "dup", "question": "Pour\u00a0quoi ?",
            "answers": [{"text": "R&amp;D", "answer_start": context.index("R&amp;D")}]}]
    path = write(tmp_path, {"data": [{"title": "Aides", "paragraphs": [{"context": context,
                                                                        "qas": qas}]}]})
    # When loading it
    questions = load_squad_file(path, source="f").paragraphs[0].questions
    # Then both questions are kept, texts as given (question whitespace collapsed)
    assert [(q.qid, q.question, q.answers[0].text) for q in questions] == [
        ("dup", "Quel montant ?", "10\u00a0000\u00a0euros"), ("dup", "Pour quoi ?", "R&amp;D")]
