"""Selection of model-mined hard negatives on hand-made rankings (dpr.retrieval.mining)."""

from __future__ import annotations

import pytest

from dpr.data.answers import has_answer
from dpr.retrieval.mining import (
    ArticleExclusion,
    MiningOptions,
    MiningStats,
    existing_filter,
    mix_existing,
    score_ceiling,
    select_negatives,
)
from dpr.utils.errors import UsageError

TEXTS = [
    "Paris est la capitale de la France.",    # 0: contains the answer
    "Lyon est une grande ville.",             # 1
    "Les Parisiens aiment la Seine.",         # 2: 'Parisiens' is not the token 'Paris'
    "Marseille est au bord de la mer.",       # 3
    "La tour Eiffel est à PARIS.",            # 4: contains the answer (case-insensitive)
    "Bordeaux produit du vin.",               # 5
    "Lille est au nord.",                     # 6
    "Nice est au sud.",                       # 7
]
ROWS = [0, 1, 2, 3, 4, 5, 6, 7]
SCORES = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]


def _select(options: MiningOptions, *, gold=(1,), positive_score=9.5, stats=None,
            rows=ROWS, scores=SCORES):
    return select_negatives(rows, scores, gold=set(gold),
                            contains_answer=lambda row: has_answer(["Paris"], TEXTS[row]),
                            positive_score=positive_score, options=options, stats=stats)


def test_select_drops_gold_and_answer_passages_with_evaluation_matching() -> None:
    # Given a ranking where row 1 is gold and rows 0 and 4 contain "Paris"
    stats = MiningStats()
    # When selecting without margins
    kept = _select(MiningOptions(num_negatives=10), stats=stats)
    # Then neither gold nor answer passages are kept; 'Parisiens' (another token) is
    assert [row for row, _ in kept] == [2, 3, 5, 6, 7]
    assert [score for _, score in kept] == [8.0, 7.0, 5.0, 4.0, 3.0]
    assert (stats.dropped_gold, stats.dropped_answer, stats.dropped_margin) == (1, 2, 0)
    assert stats.questions == 1 and stats.mined == 5 and stats.short == 1


def test_select_keeps_at_most_num_negatives_in_ranking_order() -> None:
    stats = MiningStats()
    kept = _select(MiningOptions(num_negatives=2), stats=stats)
    assert [row for row, _ in kept] == [2, 3]
    # scanning stops once 2 are kept: rows 5.. were not judged
    assert stats.dropped_answer == 1 and stats.short == 0
    assert _select(MiningOptions(num_negatives=0)) == []


def test_select_skip_top_ignores_the_first_ranks_whatever_they_are() -> None:
    # Given the first 3 ranks skipped (rows 0, 1, 2)
    stats = MiningStats()
    kept = _select(MiningOptions(num_negatives=10, skip_top=3), stats=stats)
    # Then row 2 is gone although it was a valid negative, and row 4 still has the answer
    assert [row for row, _ in kept] == [3, 5, 6, 7]
    assert stats.skipped_top == 3 and stats.dropped_gold == 0


def test_select_absolute_margin_keeps_scores_at_most_positive_minus_margin() -> None:
    # Given a positive score 9.5 and margin 2.5: ceiling 7.0, inclusive
    stats = MiningStats()
    kept = _select(MiningOptions(num_negatives=10, margin=2.5), stats=stats)
    assert [row for row, _ in kept] == [3, 5, 6, 7]
    assert stats.dropped_margin == 1  # row 2 (8.0)


def test_select_relative_margin_keeps_scores_at_most_positive_times_one_minus_r() -> None:
    # Given positive 10 and R=0.5: ceiling 5.0
    kept = _select(MiningOptions(num_negatives=10, relative_margin=0.5), positive_score=10.0)
    assert [row for row, _ in kept] == [5, 6, 7]


def test_score_ceiling_takes_the_stricter_margin_and_none_without_positive() -> None:
    both = MiningOptions(margin=1.0, relative_margin=0.5)
    assert score_ceiling(10.0, both) == 5.0
    assert score_ceiling(3.0, both) == 1.5
    assert score_ceiling(4.0, MiningOptions(margin=1.0, relative_margin=0.1)) == 3.0
    assert score_ceiling(10.0, MiningOptions()) is None
    assert score_ceiling(None, both) is None


def test_select_without_positive_score_applies_no_margin() -> None:
    # Given a dev-style record: no positive, so no positive score and no gold
    stats = MiningStats()
    kept = _select(MiningOptions(num_negatives=10, margin=100.0), gold=(), positive_score=None,
                   stats=stats)
    # Then only the answer filter applies
    assert [row for row, _ in kept] == [1, 2, 3, 5, 6, 7]
    assert stats.without_positive == 1 and stats.dropped_margin == 0


def test_select_rejects_rows_and_scores_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="2 rows but 1 scores"):
        _select(MiningOptions(), rows=[0, 1], scores=[1.0])


@pytest.mark.parametrize("kwargs, flag", [
    ({"num_negatives": -1}, "--num_negatives"), ({"skip_top": -2}, "--skip_top"),
    ({"mix_existing": -1}, "--mix_bm25"), ({"margin": -0.5}, "--margin"),
    ({"margin": float("nan")}, "--margin"), ({"relative_margin": 1.0}, "--relative_margin"),
    ({"relative_margin": -0.1}, "--relative_margin")])
def test_options_bad_values_are_usage_errors_naming_the_flag(kwargs, flag) -> None:
    with pytest.raises(UsageError, match=flag):
        MiningOptions(**kwargs)


def test_mix_existing_takes_first_ones_skipping_duplicates_of_mined_and_positives() -> None:
    # Given mined negatives p3 and p5, a positive p1, and existing BM25 negatives
    mined = [{"passage_id": "p3", "text": "c"}, {"passage_id": "p5", "text": "e"}]
    existing = [{"passage_id": "p3", "text": "c", "score": 9.0},   # same id as a mined one
                {"passage_id": "p9", "text": " e "},               # same text as a mined one
                {"passage_id": "p1", "text": "other"},             # the positive's id
                {"passage_id": "p7", "text": "g", "score": 4.0},
                {"passage_id": "p7", "text": "g"},                 # repeated
                {"text": "h"},                                     # no id
                {"passage_id": "p8", "text": "i"}]
    exclude = {("id", "p1"), ("text", "a")}
    # When keeping 2, then more than available
    two = mix_existing(mined, existing, count=2, exclude=exclude)
    many = mix_existing(mined, existing, count=10, exclude=exclude)
    # Then the first non-duplicates are kept, in order, as copies
    assert two == [{"passage_id": "p7", "text": "g", "score": 4.0}, {"text": "h"}]
    assert [c.get("passage_id") for c in many] == ["p7", None, "p8"]
    assert two[0] is not existing[3]
    assert mix_existing(mined, existing, count=0) == []


def test_article_exclusion_keys_articles_as_data_prep_splits_them() -> None:
    # Given passages of the excluded split: an untitled article (data_prep id), a titled one,
    # and an untitled passage whose id data_prep did not write
    exclusion = ArticleExclusion.of([
        {"title": "", "text": "a", "passage_id": "faq:3:0:0"},
        {"title": "La Seine", "text": "b", "passage_id": "faq:5:0:0"},
        {"title": "", "text": "Texte libre.", "passage_id": "x9"}])
    # Then other passages of the same articles are excluded (untitled: by position)
    assert exclusion.excludes({"title": "", "text": "c", "passage_id": "faq:3:1:2"})
    assert exclusion.excludes({"title": "LA  SEINE", "text": "d", "passage_id": "other"})
    # but not those of other untitled articles, although their title is the same ""
    assert not exclusion.excludes({"title": "", "text": "e", "passage_id": "faq:4:0:0"})
    # and the passage without an article key is excluded itself, by id or by text
    assert exclusion.excludes({"title": "", "text": "f", "passage_id": "x9"})
    assert exclusion.excludes({"title": "", "text": " Texte libre. ", "passage_id": "y"})
    assert not exclusion.excludes({"title": "", "text": "g", "passage_id": "x10"})


def test_mix_existing_with_the_filter_drops_answers_and_excluded_articles() -> None:
    # Given existing negatives: one containing the answer, one of an excluded untitled article,
    # and two acceptable ones
    existing = [{"title": "", "text": "Paris est la capitale.", "passage_id": "s:0:0:0"},
                {"title": "", "text": "Rien ici.", "passage_id": "s:7:0:1"},
                {"title": "", "text": "Lyon est loin.", "passage_id": "s:1:0:0"},
                {"title": "T", "text": "Nice est au sud.", "passage_id": "s:2:0:0"}]
    stats = MiningStats()
    keep = existing_filter(["Paris"], match="string", stats=stats,
                           exclusion=ArticleExclusion.of([{"title": "", "text": "z",
                                                           "passage_id": "s:7:0:0"}]))
    # When mixing in up to 3
    mixed = mix_existing([], existing, count=3, keep=keep)
    # Then only the acceptable ones are kept, and the drops are counted by reason
    assert [c["passage_id"] for c in mixed] == ["s:1:0:0", "s:2:0:0"]
    assert (stats.existing_dropped_answer, stats.existing_dropped_excluded) == (1, 1)
