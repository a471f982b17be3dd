from __future__ import annotations

import hashlib
import random

import pytest
import torch

from dpr.data.batch import build_batch, build_rerank_batch, rerank_group, select_contexts
from dpr.data.recipe import pair_items
from dpr.data.records import BiEncoderSample, Passage
from dpr.data.tensorizer import Tensorizer, build_tokenizer


def _sample(name: str, n_pos: int = 1, n_other: int = 2, n_hard: int = 3) -> BiEncoderSample:
    return BiEncoderSample(
        question=f"Question {name} ?",
        answers=("x",),
        positives=tuple(Passage(f"{name} pos{i}", f"positif {i}") for i in range(n_pos)),
        negatives=tuple(Passage(f"{name} other{i}", f"autre {i}") for i in range(n_other)),
        hard_negatives=tuple(Passage(f"{name} hard{i}", f"difficile {i}") for i in range(n_hard)),
    )


@pytest.fixture(scope="module")
def tensorizer(tiny_camembert) -> Tensorizer:
    return Tensorizer(build_tokenizer("hf_roberta", str(tiny_camembert)), max_length=24)


def test_build_batch_layout_positive_then_other_then_hard(tensorizer: Tensorizer) -> None:
    # Given two questions with 1 positive, 2 other and 3 hard negatives each
    samples = [_sample("a"), _sample("b")]
    # When building a batch with 1 other and 2 hard negatives, no shuffling
    batch = build_batch(samples, tensorizer, num_hard=2, num_other=1)
    # Then each question has a block [positive, other, hard, hard]
    assert batch.positive_idx.tolist() == [0, 4]
    assert batch.hard_negative_idx == [[2, 3], [6, 7]]
    assert batch.ctx_ids.shape == (8, 24)
    assert batch.question_ids.shape == (2, 24)
    titles = ["a pos0", "a other0", "a hard0", "a hard1", "b pos0", "b other0", "b hard0",
              "b hard1"]
    texts = ["positif 0", "autre 0", "difficile 0", "difficile 1"] * 2
    expected, _ = tensorizer.tensorize(list(zip(titles, texts)))
    assert torch.equal(batch.ctx_ids, expected)


def test_build_batch_strips_one_trailing_question_mark(tensorizer: Tensorizer) -> None:
    sample = BiEncoderSample("Qui ??", (), (Passage("", "t"),), (), ())
    batch = build_batch([sample], tensorizer, num_hard=0, num_other=0)
    expected, _ = tensorizer.tensorize(["Qui ?"])
    assert torch.equal(batch.question_ids, expected)


def test_build_batch_with_small_pools_takes_what_exists(tensorizer: Tensorizer) -> None:
    samples = [_sample("a", n_other=0, n_hard=1), _sample("b", n_other=0, n_hard=0)]
    batch = build_batch(samples, tensorizer, num_hard=3, num_other=2)
    assert batch.positive_idx.tolist() == [0, 2]
    assert batch.hard_negative_idx == [[1], []]


def test_select_contexts_is_seeded_and_never_mutates_the_sample() -> None:
    sample = _sample("a", n_pos=4, n_other=5, n_hard=6)
    first = select_contexts(sample, num_hard=3, num_other=2, rng=random.Random(7),
                            shuffle_positive=True)
    again = select_contexts(sample, num_hard=3, num_other=2, rng=random.Random(7),
                            shuffle_positive=True)
    assert first == again
    assert [p.title for p in sample.hard_negatives] == [f"a hard{i}" for i in range(6)]
    draws = {select_contexts(sample, num_hard=3, num_other=2, rng=random.Random(s),
                             shuffle_positive=True)[2][0].title for s in range(30)}
    assert len(draws) > 1


def test_select_contexts_without_rng_takes_the_first_passages() -> None:
    positive, others, hards = select_contexts(_sample("a", n_pos=3), num_hard=2, num_other=1,
                                              rng=None, shuffle_positive=True)
    assert positive.title == "a pos0"
    assert [p.title for p in others] == ["a other0"]
    assert [p.title for p in hards] == ["a hard0", "a hard1"]


def test_build_batch_keys_identify_passages_and_every_positive(tensorizer: Tensorizer) -> None:
    # Given a question with two positives, and a second question whose positive is a copy of
    # the first one's second positive and whose hard negative is the first one's first positive
    first = BiEncoderSample("Q1 ?", (), (Passage("T", "un"), Passage("T", "deux")), (), ())
    second = BiEncoderSample("Q2 ?", (), (Passage("T", "deux"),), (),
                             (Passage("T", "un"), Passage("U", "un")))
    # When building the batch
    batch = build_batch([first, second], tensorizer, num_hard=2, num_other=0)
    # Then equal title + text give equal keys, a different title another key
    keys = batch.ctx_keys.tolist()
    assert len(keys) == 4 and keys[2] == first.positives[0].key
    assert keys[1] == first.positives[1].key and keys[3] not in keys[:3]
    # And each question carries the keys of all of its positives, -1 padded
    assert batch.positive_keys.tolist() == [[first.positives[0].key, first.positives[1].key],
                                            [first.positives[1].key, -1]]
    moved = batch.to("cpu")
    assert torch.equal(moved.ctx_keys, batch.ctx_keys)
    assert torch.equal(moved.positive_keys, batch.positive_keys)


def test_passage_key_is_stable_non_negative_and_prefers_passage_id() -> None:
    a, b = Passage("T", "texte"), Passage("T", "texte")
    assert a.key == b.key and 0 <= a.key < 2**63
    # A fixed value: the same in every process and every run (blake2b, not Python's hash)
    digest = hashlib.blake2b(b"text\0T\0texte", digest_size=8).digest()
    assert a.key == int.from_bytes(digest, "big") >> 1
    # With a passage_id the id decides: same id, different text -> same passage
    assert Passage("T", "x", "p1").key == Passage("T", "y", "p1").key
    assert Passage("T", "texte", "p1").key != a.key
    assert Passage("T", "texte", "p2").key != Passage("T", "texte", "p1").key


def test_rerank_batch_groups_positive_first_then_hard_then_other_negatives(
        tensorizer: Tensorizer) -> None:
    # Given a question with 3 hard and 2 other negatives, and one with a single hard negative
    samples = [_sample("a"), _sample("b", n_other=0, n_hard=1)]
    # When building a reranker batch of 4 negatives per question, in file order
    batch = build_rerank_batch(samples, tensorizer, negatives=4)
    # Then the groups are [positive, 3 hard, 1 other] and [positive, 1 hard] (kept shorter)
    assert batch.valid.tolist() == [[True] * 5, [True, True, False, False, False]]
    passages = [("a pos0", "positif 0"), ("a hard0", "difficile 0"), ("a hard1", "difficile 1"),
                ("a hard2", "difficile 2"), ("a other0", "autre 0"), ("b pos0", "positif 0"),
                ("b hard0", "difficile 0")]
    questions = ["Question a ?"] * 5 + ["Question b ?"] * 2
    expected, mask = tensorizer.tensorize(pair_items(list(zip(questions, passages)),
                                                     tensorizer.recipe))
    assert torch.equal(batch.ids, expected) and torch.equal(batch.mask, mask)
    assert batch.to("cpu").lengths.tolist() == mask.sum(dim=1).tolist()


def test_rerank_group_leaves_out_copies_of_a_positive_and_draws_with_the_generator() -> None:
    # Given a question whose first hard negative is a copy of its second positive
    sample = _sample("a", n_pos=2)
    sample = BiEncoderSample(sample.question, sample.answers, sample.positives,
                             sample.negatives, (sample.positives[1], *sample.hard_negatives))
    # Then the copy is never a candidate, and a seeded draw is repeatable
    group = rerank_group(sample, negatives=10)
    assert group[0] == sample.positives[0] and sample.positives[1] not in group
    assert len(group) == 1 + 3 + 2
    drawn = [rerank_group(sample, negatives=2, rng=random.Random(7)) for _ in range(2)]
    assert drawn[0] == drawn[1]
    assert all(p.title.startswith("a hard") for p in drawn[0][1:])
