"""fairseq RoBERTa / CamemBERT weights without fairseq: name mapping and folder loading.

One mapping serves the fairseq folder loader (`model.pt` + `dict.txt`), the DPR checkpoint
reader/writer for `fairseq_roberta` and the Hugging Face export. fairseq's sentence encoder and
Hugging Face's RoBERTa encoder compute the same function (learned positions offset by the pad
id + 1, post-layer-norm blocks, GELU, layer-norm eps 1e-5, no segment embeddings), so a
one-to-one renaming of tensors suffices; Hugging Face's token-type embedding is set to zeros.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpr.models.torchfile import load_torch_file
from dpr.utils.errors import InputError

# fairseq name under `sentence_encoder.` -> Hugging Face name under the RoBERTa model.
_TOP = {
    "embed_tokens.weight": "embeddings.word_embeddings.weight",
    "embed_positions.weight": "embeddings.position_embeddings.weight",
    "emb_layer_norm.weight": "embeddings.LayerNorm.weight",
    "emb_layer_norm.bias": "embeddings.LayerNorm.bias",
}
_ALIASES = {"layernorm_embedding.": "emb_layer_norm."}  # fairseq 0.12 spelling
_LAYER = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_LAYER_RE = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_HF_TO_FS_LAYER = {v: k for k, v in _LAYER.items()}
_HF_TO_FS_TOP = {v: k for k, v in _TOP.items()}
TOKEN_TYPE = "embeddings.token_type_embeddings.weight"
IGNORED = re.compile(r"(^|\.)(version|_float_tensor)$|embeddings\.(position_ids|token_type_ids)$")
LM_HEAD_KEYS = ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias")


class FairseqFormatError(InputError):
    """A fairseq folder or state dict that cannot be read; the message names the file."""


def fairseq_to_hf_name(name: str) -> str | None:
    """Maps a name relative to fairseq's `sentence_encoder.` to the Hugging Face RoBERTa name
    (None for buffers that have no counterpart)."""
    for old, new in _ALIASES.items():
        name = name.replace(old, new)
    if name in _TOP:
        return _TOP[name]
    match = _LAYER_RE.fullmatch(name)
    if match and match.group(2) in _LAYER:
        return f"encoder.layer.{match.group(1)}.{_LAYER[match.group(2)]}.{match.group(3)}"
    if IGNORED.search(name):
        return None
    raise FairseqFormatError(f"unknown fairseq sentence-encoder tensor {name!r}")


def hf_to_fairseq_name(name: str) -> str | None:
    """Inverse of `fairseq_to_hf_name` (None for the token-type embedding and buffers)."""
    if name in _HF_TO_FS_TOP:
        return _HF_TO_FS_TOP[name]
    match = _HF_LAYER_RE.fullmatch(name)
    if match and match.group(2) in _HF_TO_FS_LAYER:
        return f"layers.{match.group(1)}.{_HF_TO_FS_LAYER[match.group(2)]}.{match.group(3)}"
    if name == TOKEN_TYPE or IGNORED.search(name):
        return None
    raise FairseqFormatError(f"no fairseq name for Hugging Face tensor {name!r}")


def sentence_encoder_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq sentence-encoder tensors → Hugging Face RoBERTa tensors (token types zero)."""
    out = {}
    for name, tensor in state.items():
        new = fairseq_to_hf_name(name)
        if new is not None:
            out[new] = tensor
    if "embeddings.word_embeddings.weight" not in out:
        raise FairseqFormatError("no embed_tokens.weight in the fairseq sentence encoder")
    hidden = out["embeddings.word_embeddings.weight"].shape[1]
    out[TOKEN_TYPE] = torch.zeros(1, hidden, dtype=out["embeddings.word_embeddings.weight"].dtype)
    return out


def hf_to_sentence_encoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face RoBERTa tensors → fairseq sentence-encoder tensors
    (`FairseqFormatError` if the token-type embedding, which fairseq lacks, is not zero)."""
    out = {}
    for name, tensor in state.items():
        if name == TOKEN_TYPE and bool(tensor.abs().max() > 0):
            raise FairseqFormatError("token-type embeddings are not zero: the model cannot be "
                                     "written in fairseq's layout")
        new = hf_to_fairseq_name(name)
        if new is not None:
            out[new] = tensor
    return out


def split_fairseq_state(state: Mapping[str, torch.Tensor], *, prefix: str = ""
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(sentence-encoder, LM-head) tensors of a fairseq RoBERTa state dict (`model.pt`'s
    `model`, or a DPR tower's tensors under `prefix`), named relative to each module; fairseq
    0.10+'s `encoder.` infix or 0.9's `decoder.`."""
    encoder, head = {}, {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        for infix in ("encoder.", "decoder."):
            if rest.startswith(infix + "sentence_encoder."):
                encoder[rest[len(infix) + len("sentence_encoder."):]] = tensor
            elif rest.startswith(infix + "lm_head."):
                head[rest[len(infix) + len("lm_head."):]] = tensor
    return encoder, head


@dataclass
class FairseqFolder:
    """What a fairseq RoBERTa/CamemBERT folder provides, in Hugging Face terms."""

    path: Path
    config_kwargs: dict[str, Any]
    hf_state: dict[str, torch.Tensor]
    lm_head: dict[str, torch.Tensor]
    is_camembert: bool = True


def _model_args(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    if ckpt.get("args") is not None:
        args = ckpt["args"]
        return dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
    cfg = ckpt.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return dict(cfg["model"])
    raise FairseqFormatError(f"{path}: neither 'args' nor 'cfg.model' found")


def read_dictionary(path: Path) -> list[str]:
    """Tokens of a fairseq `dict.txt`, in file order (line k has fairseq id 4 + k)."""
    tokens = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip().split(" ")
        if parts[-1] == "#fairseq:overwrite":
            parts = parts[:-1]
        if len(parts) < 2:
            raise FairseqFormatError(f"{path}: line {line_no}: expected '<token> <count>'")
        tokens.append(" ".join(parts[:-1]))
    return tokens


def load_fairseq_folder(folder: str | os.PathLike[str], *, allow_pickle: bool = False
                        ) -> FairseqFolder:
    """Reads a fairseq RoBERTa/CamemBERT folder (`model.pt`, `dict.txt`) without fairseq.

    Both the `args` namespace of fairseq ≤ 0.10 and the `cfg` layout of newer versions are
    understood; hyper-parameters missing from them are read off the weights' shapes.
    """
    path = Path(folder)
    model_pt = path / "model.pt"
    if not model_pt.is_file():
        raise FairseqFormatError(f"{path}: no model.pt (expected a fairseq RoBERTa/CamemBERT "
                                 "folder: model.pt, dict.txt, sentencepiece.bpe.model)")
    ckpt = load_torch_file(
        model_pt, allow_pickle=allow_pickle, error=FairseqFormatError,
        allowed="tensors, plain containers and an argparse namespace (an OmegaConf config?)",
        safe_globals=[argparse.Namespace])
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        raise FairseqFormatError(f"{model_pt}: no 'model' state dict")
    args = _model_args(ckpt, model_pt)
    encoder, head = split_fairseq_state(ckpt["model"])
    if not encoder:
        raise FairseqFormatError(f"{model_pt}: no encoder.sentence_encoder.* tensors")
    hf_state = sentence_encoder_to_hf(encoder)
    vocab, hidden = hf_state["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in hf_state if k.startswith("encoder.layer."))
    ffn = hf_state["encoder.layer.0.intermediate.dense.weight"].shape[0]
    heads = args.get("encoder_attention_heads")
    if heads is None:
        raise FairseqFormatError(f"{model_pt}: encoder_attention_heads missing from its config")
    config_kwargs = {
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": int(heads), "intermediate_size": ffn,
        "max_position_embeddings": hf_state["embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "hidden_act": args.get("activation_fn") or "gelu",
        "hidden_dropout_prob": float(args.get("dropout", 0.1)),
        "attention_probs_dropout_prob": float(args.get("attention_dropout", 0.1)),
    }
    missing = [k for k in LM_HEAD_KEYS if k not in head]
    if missing:
        raise FairseqFormatError(f"{model_pt}: LM head tensors missing: {missing}")
    return FairseqFolder(path=path, config_kwargs=config_kwargs, hf_state=hf_state,
                         lm_head={k: head[k] for k in LM_HEAD_KEYS},
                         is_camembert=(path / "sentencepiece.bpe.model").is_file())


def check_dictionary(dictionary: list[str], token_to_id: Callable[[str], int], *,
                     unk_token: str, source: str) -> None:
    """Checks that the tokenizer gives every dictionary piece its fairseq id (4 + line), or
    raises `FairseqFormatError` naming the first piece whose ids differ: DPR feeds tokenizer
    ids straight into the fairseq model, right only if the two agree (SentencePiece's own
    unknown piece is the one exception: both map it to id 3)."""
    for line, token in enumerate(dictionary):
        if token == unk_token:
            continue
        got = token_to_id(token)
        if got != line + 4:
            raise FairseqFormatError(
                f"{source}: dict.txt does not match the tokenizer: piece {token!r} (line "
                f"{line + 1}) has fairseq id {line + 4} but tokenizer id {got}; is the "
                "sentencepiece.bpe.model from the same model?")
