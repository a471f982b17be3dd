"""The one loader on a plain sentence-transformers folder: the untrained model as
sentence-transformers itself encodes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from dpr.inference import load_encoder

PASSAGES = [("Loire", "La Loire se jette dans l'océan Atlantique à Saint-Nazaire."),
            ("", "Victor Hugo a écrit Les Misérables, publié en 1862.")]


def test_untrained_e5_with_joined_passages_is_sentence_transformers_own_encoding(
        tiny_e5: Path) -> None:
    # Given an e5-shaped folder loaded untrained with --passage_format joined
    model = load_encoder(str(tiny_e5), {"passage_format": "joined"},
                         device=torch.device("cpu"), batch_size=4)
    # Then its passage vectors are sentence-transformers' of 'passage: {title} {text}'
    st = SentenceTransformer(str(tiny_e5), device="cpu")
    want = st.encode([f"{t} {x}" if t else x for t, x in PASSAGES], prompt_name="passage")
    got = model.encode_passages(PASSAGES)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # And DPR's pair format (the default) encodes a titled passage otherwise
    pair = load_encoder(str(tiny_e5), {}, device=torch.device("cpu"), batch_size=4)
    assert not np.allclose(pair.encode_passages(PASSAGES[:1]), got[:1], atol=1e-3)
    assert "joined passages" in model.description
