"""A tower: a Hugging Face transformer, then `represent` (pooling, the optional projection, the
optional L2 normalisation, in sentence-transformers' module order), the one definition of a
tower's vector."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, PreTrainedModel

from dpr.models.fairseq import FairseqFormatError
from dpr.recipe import Pooling
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)


def pool_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B × H] float32: the mean of the hidden states [B × T × H] over the real tokens of
    `attention_mask` [B × T] (padding never counts, whatever the padded width)."""
    mask = attention_mask.to(torch.float32).unsqueeze(-1)  # [B × T × 1]
    total = (hidden_states.to(torch.float32) * mask).sum(dim=1)  # [B × H]
    return total / mask.sum(dim=1).clamp(min=1.0)


def represent(hidden_states: torch.Tensor, projection: nn.Module | None = None, *,
              attention_mask: torch.Tensor | None = None, pooling: str = Pooling.CLS,
              normalize: bool = False) -> torch.Tensor:
    """Vectors [B × D] of last-layer states [B × T × H]: pooling (`cls`: the first token,
    DPR's; `mean`: over `attention_mask`, which it requires), the tower's `encode_proj`
    (H → D) if any, L2 normalisation if `normalize` (cosine)."""
    if pooling == Pooling.MEAN:
        if attention_mask is None:
            raise ValueError("mean pooling needs the attention mask")
        vectors = pool_mean(hidden_states, attention_mask)
    else:
        vectors = hidden_states[:, 0]
    if projection is not None:
        vectors = projection(vectors.to(projection.weight.dtype))
    return F.normalize(vectors.float(), p=2, dim=-1) if normalize else vectors


def bucket_plan(lengths: torch.Tensor | Sequence[int], *, size: int, multiple: int = 1,
                max_width: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """How `Encoder.forward` splits a batch into length buckets, computed on the CPU.

    Args:
        lengths: [B] real tokens per row (a tensor elsewhere is copied to the CPU: a
            synchronisation on a GPU).
        size: Rows per bucket.
        multiple: Each bucket's width is its longest row rounded up to a multiple of this,
            so that widths repeat from batch to batch (fewer shapes for GPU kernels).
        max_width: Cap on the widths (the batch's padded width); None = no cap.

    Returns:
        (row order, longest first; one width, at least 1, per `size` rows of that order).
    """
    lengths = (lengths.detach().to("cpu") if isinstance(lengths, torch.Tensor)
               else torch.tensor(list(lengths), dtype=torch.long))
    order = torch.argsort(lengths, descending=True, stable=True)
    longest = lengths[order[::size]].tolist() if len(order) else []
    multiple = max(int(multiple), 1)
    widths = []
    for length in longest:
        width = -(-max(int(length), 1) // multiple) * multiple
        widths.append(width if max_width is None else min(width, max_width))
    return order, widths


class Encoder(nn.Module):
    """One tower of the bi-encoder: `model` (any Hugging Face encoder returning
    `last_hidden_state`), then `represent` with a projection to `projection_dim` (0 = none)."""

    def __init__(self, model: PreTrainedModel, projection_dim: int = 0, *,
                 pooling: str = Pooling.CLS, normalize: bool = False) -> None:
        super().__init__()
        self.model = model
        # The recipe (not weights): how hidden states become the tower's vector.
        self.pooling = Pooling(pooling)
        self.normalize = bool(normalize)
        # > 0: encode in length-sorted chunks of this many rows, each trimmed to its own
        # longest sequence (a run-time setting, not part of the weights).
        self.length_bucket_size = 0
        # Bucket widths are rounded up to a multiple of this (the trainer sets its
        # --pad_to_multiple_of), so that the set of shapes stays small.
        self.length_bucket_multiple = 1
        hidden = model.config.hidden_size
        self.encode_proj: nn.Linear | None = None
        if projection_dim:
            self.encode_proj = nn.Linear(hidden, projection_dim)
            std = getattr(model.config, "initializer_range", 0.02)
            nn.init.normal_(self.encode_proj.weight, mean=0.0, std=std)
            nn.init.zeros_(self.encode_proj.bias)
        pooler = getattr(model, "pooler", None)
        if pooler is not None:
            # Kept only so the checkpoint layout matches DPR's; it never gets gradients, and
            # freezing it lets DDP run without find_unused_parameters.
            pooler.requires_grad_(False)

    @property
    def out_size(self) -> int:
        if self.encode_proj is not None:
            return self.encode_proj.out_features
        return int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Vectors [B × D] of right-padded ids and their mask [B × T].

        With `length_bucket_size` set, rows are encoded in length-sorted chunks of that size,
        each cut to its longest row rounded up to `length_bucket_multiple` (at most T): the
        same vectors (the mask hides padding) for less work on padding, in few shapes.
        `lengths` ([B] real tokens per row on the CPU, `BiEncoderBatch.question_lengths` /
        `ctx_lengths`) spares the plan a device-to-host copy (None: counted from the mask).
        """
        size = self.length_bucket_size
        if not size or input_ids.shape[0] <= size:
            return self._encode(input_ids, attention_mask)
        order, widths = bucket_plan(attention_mask.sum(dim=1) if lengths is None else lengths,
                                    size=size, multiple=self.length_bucket_multiple,
                                    max_width=input_ids.shape[1])
        inverse = torch.argsort(order).to(input_ids.device, non_blocking=True)
        order = order.to(input_ids.device, non_blocking=True)
        parts = []
        for start, width in zip(range(0, len(order), size), widths):
            rows = order[start : start + size]
            parts.append(self._encode(input_ids[rows, :width], attention_mask[rows, :width]))
        return torch.cat(parts)[inverse]

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask.long(),
                         return_dict=True)
        return represent(out.last_hidden_state, self.encode_proj,
                         attention_mask=attention_mask, pooling=self.pooling,
                         normalize=self.normalize)


def _override_dropout(config, dropout: float) -> None:
    if dropout != 0:
        config.hidden_dropout_prob = dropout
        config.attention_probs_dropout_prob = dropout


def build_hf_encoder(encoder_model_type: str, pretrained_model_cfg: str, *, dropout: float = 0.1,
                     projection_dim: int = 0, load_weights: bool = True, pooling: str = Pooling.CLS,
                     normalize: bool = False) -> Encoder:
    """One tower from a Hugging Face folder (or hub name): `hf_bert` a `BertModel` with its
    pooler (DPR's checkpoint layout has `pooler.*`), `hf_roberta` an `AutoModel` (RoBERTa,
    CamemBERT, XLM-R...) without one.

    Args:
        dropout: Hidden and attention dropout when non-zero (DPR's `--dropout`).
        load_weights: False: random weights from the config, for a checkpoint to overwrite.
    """
    if encoder_model_type == "hf_bert":
        config = BertConfig.from_pretrained(pretrained_model_cfg)
        _override_dropout(config, dropout)
        if load_weights:
            model = _bert_from_folder(pretrained_model_cfg, config)
        else:
            model = BertModel(config)
    elif encoder_model_type == "hf_roberta":
        config = AutoConfig.from_pretrained(pretrained_model_cfg)
        _override_dropout(config, dropout)
        if load_weights:
            model = AutoModel.from_pretrained(pretrained_model_cfg, config=config,
                                              add_pooling_layer=False)
        else:
            model = AutoModel.from_config(config, add_pooling_layer=False)
    else:
        raise UsageError(f"unsupported encoder model type {encoder_model_type!r}")
    return Encoder(model, projection_dim, pooling=pooling, normalize=normalize)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silences transformers' (and sentence-transformers') warnings and logs within the block,
    so that the caller says what matters itself (loading a folder prints several)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    hf_logging.set_verbosity_error()
    st_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        st_logger.setLevel(st_level)


def quiet_from_pretrained(cls: type, folder: str | os.PathLike[str],
                          **kwargs: Any) -> tuple[PreTrainedModel, dict[str, Any]]:
    """`cls.from_pretrained(folder, **kwargs)` without transformers' warnings and logs, and
    its loading info (`missing_keys`...), so that the caller says what matters itself."""
    with quiet_transformers():
        return cls.from_pretrained(folder, output_loading_info=True, **kwargs)


def _bert_from_folder(folder: str, config: BertConfig) -> BertModel:
    """`BertModel.from_pretrained`, saying in one line which weights the folder lacked.

    Sentence-transformers folders (all-MiniLM, multilingual-e5) hold no pooler: transformers
    then warns that the model must be trained before use, which is false here (the towers
    read hidden states, never the pooler's output). A missing pooler is logged at INFO; any
    other missing weight stays a warning.
    """
    model, info = quiet_from_pretrained(BertModel, folder, config=config)
    missing = info.get("missing_keys") or []
    unused = [key for key in missing if key.startswith("pooler.")]
    if unused:
        logger.info("%s has no BERT pooler weights (%s): initialised at random, never used "
                    "(the towers pool hidden states)", folder, ", ".join(unused))
    if len(unused) < len(missing):
        logger.warning("%s lacks weights, initialised at random: %s", folder,
                       ", ".join(key for key in missing if key not in unused))
    return model


class FrozenLMHead(nn.Module):
    """fairseq RoBERTa's masked-LM head, kept frozen (it never gets gradients in DPR) so that
    checkpoints can be written in the original `fairseq_roberta` key layout."""

    def __init__(self, hidden: int, vocab: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.layer_norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.requires_grad_(False)


class FairseqRobertaEncoder(Encoder):
    """A fairseq RoBERTa/CamemBERT tower run as its Hugging Face equivalent.

    Holds, besides the encoder, the frozen LM head and fairseq's one-element `_float_tensor`
    buffer, so that a checkpoint round-trips to exactly the original key set. The token-type
    embedding (which fairseq does not have) is zero and frozen.
    """

    def __init__(self, model: PreTrainedModel, projection_dim: int = 0, *,
                 pooling: str = Pooling.CLS, normalize: bool = False) -> None:
        super().__init__(model, projection_dim, pooling=pooling, normalize=normalize)
        token_types = model.embeddings.token_type_embeddings
        nn.init.zeros_(token_types.weight)
        token_types.requires_grad_(False)
        self.lm_head = FrozenLMHead(model.config.hidden_size, model.config.vocab_size)
        self.register_buffer("_float_tensor", torch.zeros(1))


def build_fairseq_encoder(folder, *, dropout: float = 0.1, projection_dim: int = 0,
                          load_weights: bool = True, pooling: str = Pooling.CLS,
                          normalize: bool = False) -> FairseqRobertaEncoder:
    """Builds one tower from a loaded fairseq folder (`dpr.models.fairseq.FairseqFolder`).

    `--dropout` (when non-zero), `--projection_dim` and the recipe apply as for the other
    types.
    """
    from transformers import CamembertConfig, CamembertModel, RobertaConfig, RobertaModel

    config_cls, model_cls = ((CamembertConfig, CamembertModel) if folder.is_camembert
                             else (RobertaConfig, RobertaModel))
    config = config_cls(**folder.config_kwargs)
    _override_dropout(config, dropout)
    encoder = FairseqRobertaEncoder(model_cls(config, add_pooling_layer=False), projection_dim,
                                    pooling=pooling, normalize=normalize)
    if load_weights:
        result = encoder.model.load_state_dict(folder.hf_state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing or result.unexpected_keys:
            raise FairseqFormatError(f"{folder.path}: weights do not fit: missing {missing}, "
                                     f"unexpected {result.unexpected_keys}")
        for name, tensor in folder.lm_head.items():
            encoder.lm_head.get_parameter(name).data.copy_(tensor)
    return encoder
