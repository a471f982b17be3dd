"""Which passages are relevant to a question: by answer matching or by gold paragraph."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from dpr.evaluation.inputs import Corpus, EvaluationError, QuestionSet
from dpr.evaluation.metrics import AnswerMatcher, first_hit_rank

logger = logging.getLogger(__name__)

RELEVANCE_MODES = ("answer", "id")


class Judge:
    """Decides which corpus passages are relevant to each question of a set.

    Args:
        corpus: The corpus searched.
        mode: ``answer`` (the passage contains an answer) or ``id`` (it is a gold passage).
        match: ``string`` or ``regex`` answer matching (``has_answer``).
        quiet: No progress bar.
    """

    def __init__(self, corpus: Corpus, *, mode: str, match: str, quiet: bool) -> None:
        """Builds the answer matcher over the corpus texts."""
        self.mode = mode
        self.matcher = AnswerMatcher(corpus.texts, match=match)
        self.quiet = quiet

    def prepare(self, qset: QuestionSet) -> None:
        """Finds each question's relevant passages in the corpus (``qset.relevant``, the
        qrels) and counts them (``qset.num_relevant``, for recall and MAP).

        Raises:
            EvaluationError: In ``id`` mode, for a question set without gold passages.
        """
        if self.mode == "id":
            if qset.gold is None:
                raise EvaluationError(f"{qset.source}: relevance by paragraph needs SQuAD input")
            qset.relevant = [sorted(g) for g in qset.gold]
            qset.num_relevant = [len(g) for g in qset.gold]
            return
        qset.prepared = [self.matcher.prepare(answers) for answers in qset.answers]
        qset.relevant = [self.matcher.matching(prepared)
                         for prepared in tqdm(qset.prepared, desc="Finding relevant passages",
                                              unit=" questions", disable=self.quiet)]
        qset.num_relevant = [len(found) for found in qset.relevant]
        missing = sum(1 for n in qset.num_relevant if n == 0)
        if missing:
            logger.warning("%s: %d of %d questions have no passage containing an answer "
                           "(they count as misses for every retriever)", qset.source, missing,
                           len(qset.questions))

    def relevance(self, qset: QuestionSet, rankings: Sequence[np.ndarray]) -> list[list[bool]]:
        """Per question, whether each ranked passage is relevant."""
        if self.mode == "id":
            return [[int(i) in gold for i in ranking] for gold, ranking in
                    zip(qset.gold, rankings, strict=True)]
        if len(qset.prepared) != len(qset.answers):  # prepare() not called on this set
            qset.prepared = [self.matcher.prepare(answers) for answers in qset.answers]
        return [[self.matcher.contains(prepared, int(i)) for i in ranking]
                for prepared, ranking in zip(qset.prepared, rankings, strict=True)]


def tune_metric_fn(judge: Judge, qset: QuestionSet, metric: str
                   ) -> Callable[[list[np.ndarray]], float]:
    """The tuning objective on a question set: ``top<k>`` accuracy or ``mrr10``."""
    def score(rankings: list[np.ndarray]) -> float:
        ranks = [first_hit_rank(flags) for flags in judge.relevance(qset, rankings)]
        if metric == "mrr10":
            return sum(1 / (r + 1) for r in ranks if r is not None and r < 10) / len(ranks)
        k = int(metric[3:])
        return sum(1 for r in ranks if r is not None and r < k) / len(ranks)
    return score
