"""Training configuration: DPR's `train_dense_encoder.py` flags as three frozen dataclasses,
whose fields generate the parser (`dpr.training.command_line`). Every flag keeps DPR's name,
type, default and meaning (docs/DIFFERENCES.md lists the few corrected); invalid values raise
`UsageError` naming the flag. `train_reranker.py` has the same flags but `BIENCODER_ONLY`, and
`RerankConfig`'s.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dpr.models.checkpoint import ENCODER_TYPES
from dpr.models.factory import HEAD_INITS
from dpr.recipe import Recipe
from dpr.training.step import SCALER_TOLERANCE
from dpr.utils.errors import UsageError
from dpr.utils.options import opt


def check_bounds(config: Any, **lowest: float) -> None:
    """Refuses a field below its lowest value: `UsageError` "--<name> must be >= <low>"."""
    for name, low in lowest.items():
        if getattr(config, name) < low:
            raise UsageError(f"--{name} must be >= {low}, got {getattr(config, name)}")


@dataclass(frozen=True)
class ModelConfig(Recipe):
    """Encoder flags (DPR's `add_encoder_params`, `add_tokenizer_params`, the recipe of
    `dpr.recipe.Recipe` and model options)."""

    pretrained_model_cfg: str | None = opt(
        None, "Hugging Face model folder (config, weights, tokenizer). For fairseq_roberta: "
        "the tokenizer folder (holding sentencepiece.bpe.model for CamemBERT).")
    encoder_model_type: str | None = opt(
        None, f"Encoder type: one of {', '.join(ENCODER_TYPES)}.")
    pretrained_file: str | None = opt(
        None, "fairseq_roberta: folder with the fairseq model.pt and dict.txt. Unused by the "
        "hf_* types.")
    model_file: str | None = opt(
        None, "Checkpoint to initialise from or resume (must exist; a bi-encoder's, or a "
        "reranker's for train_reranker.py). Without it, training resumes from the most advanced "
        "checkpoint in --output_dir, if any.")
    projection_dim: int = opt(0, "Linear projection of the representation to this size; 0 = "
                              "none.")
    dropout: float = opt(0.1, "Hidden and attention dropout of the encoders (0 = keep the "
                         "model config's values).")
    fix_ctx_encoder: bool = opt(False, "Freeze the passage encoder: only the question encoder "
                                "is trained.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder_model_type is None:
            raise UsageError(f"--encoder_model_type is required (one of "
                             f"{', '.join(ENCODER_TYPES)})")
        if self.encoder_model_type == "pytext_bert":
            raise UsageError("--encoder_model_type pytext_bert is not supported (it was already "
                             "broken in the original DPR); use hf_bert")
        if self.encoder_model_type not in ENCODER_TYPES:
            raise UsageError(f"--encoder_model_type {self.encoder_model_type!r}: unsupported "
                             f"model type (choose one of {', '.join(ENCODER_TYPES)})")
        check_bounds(self, projection_dim=0)
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.shared_encoder and self.fix_ctx_encoder:
            raise UsageError("--fix_ctx_encoder cannot be used with --shared_encoder (one "
                             "encoder serves both sides)")


@dataclass(frozen=True)
class DataConfig:
    """Data flags: files, batch sizes and negatives."""

    train_file: str | None = opt(
        None, "Glob of training files (DPR JSON arrays or JSON Lines, optionally .gz); several "
        "globs may be separated by commas. Without it the script only validates --model_file "
        "on --dev_file.")
    dev_file: str | None = opt(None, "Glob of validation files (same formats).")
    train_files_upsample_rates: str | None = opt(
        None, "Literal list of repetition factors, one per train file in sorted order, e.g. "
        "\"[1, 2]\".")
    batch_size: int = opt(2, "Questions per batch per process.")
    dev_batch_size: int = opt(4, "Questions per validation batch per process.")
    hard_negatives: int = opt(1, "Hard negatives per question (training and NLL validation).")
    other_negatives: int = opt(0, "Other (random) negatives per question (training and NLL "
                               "validation).")
    shuffle_positive_ctx: bool = opt(False, "Draw a random positive passage per question "
                                     "instead of the first (training only).")
    distill_scores: str | None = opt(
        None, "Distillation: a reranker's scores of every passage of the training files "
        "(python -m data_prep.score_candidates); the loss gains --distill_weight times the KL "
        "divergence between the reranker's softmax and the bi-encoder's over each question's "
        "own passages (its positive and negatives).")

    def __post_init__(self) -> None:
        check_bounds(self, batch_size=1, dev_batch_size=1, hard_negatives=0, other_negatives=0)


def parse_adam_betas(text: str) -> tuple[float, float]:
    """Parses `--adam_betas` as a literal pair (never evaluated as code)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise UsageError(f"--adam_betas {text!r} is not a literal pair like (0.9, 0.999)") from err
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in value)):
        raise UsageError(f"--adam_betas {text!r} must be two numbers in [0, 1)")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation, checkpointing and runtime flags."""

    output_dir: str | None = opt(None, "Checkpoint folder (created if missing).")
    checkpoint_file_name: str = opt("dpr_biencoder", "Checkpoint file name prefix.")
    seed: int = opt(0, "Seed of all randomness (shuffles, negatives, dropout, init).")
    learning_rate: float = opt(1e-5, "Peak learning rate.")
    adam_eps: float = opt(1e-8, "Adam epsilon.")
    adam_betas: str = opt("(0.9, 0.999)", "Adam betas, a literal pair.")
    weight_decay: float = opt(0.0, "Decoupled weight decay (not applied to biases and "
                              "LayerNorm weights).")
    max_grad_norm: float = opt(1.0, "Gradient-norm clipping threshold; <= 0 disables.")
    warmup_steps: int = opt(100, "Linear warm-up length in optimizer updates.")
    gradient_accumulation_steps: int = opt(1, "Batches per optimizer update.")
    num_train_epochs: float = opt(3.0, "Number of epochs (the integer part is used).")
    log_batch_step: int = opt(100, "Log a progress line every N batches.")
    train_rolling_loss_step: int = opt(100, "Window (batches) of the rolling training loss.")
    eval_per_epoch: int = opt(1, "Validation + checkpoint points per epoch.")
    val_av_rank_start_epoch: int = opt(10000, "First epoch (0-based) validated by average "
                                       "rank instead of NLL.")
    val_av_rank_hard_neg: int = opt(30, "Hard negatives per question in average-rank "
                                    "validation.")
    val_av_rank_other_neg: int = opt(30, "Other negatives per question in average-rank "
                                     "validation.")
    val_av_rank_bsz: int = opt(128, "Passages per forward pass in average-rank validation.")
    val_av_rank_max_qs: int = opt(10000, "Questions (all processes together) used by "
                                  "average-rank validation.")
    global_loss_buf_sz: int = opt(150000, "Accepted for compatibility and ignored: in-batch "
                                  "negatives are exchanged with tensor collectives of any "
                                  "size.")
    no_cuda: bool = opt(False, "Do not use a GPU even if one is available.")
    local_rank: int = opt(-1, "Set by torch.distributed.launch (also read from LOCAL_RANK).",
                          flags=("--local_rank", "--local-rank"))
    fp16: bool = opt(False, "Mixed precision with torch.autocast (float16 + loss scaling on "
                     "GPU, bfloat16 on CPU). A training loss that is not finite stops the run "
                     "at once; under float16 loss scaling (which skips such updates) after "
                     f"{SCALER_TOLERANCE} in a row.")
    fp16_opt_level: str = opt("O1", "Accepted for compatibility with apex (O0 disables mixed "
                              "precision; O1-O3 all mean autocast).")
    allow_unsafe_pickle: bool = opt(False, "Allow loading checkpoints that need full "
                                    "unpickling (only for files you trust).")
    pad_to_max: bool = opt(False, "Pad every question and passage to --sequence_length, as the "
                           "original DPR did, instead of to the longest one in the batch.")
    pad_to_multiple_of: int = opt(0, "With dynamic padding, round each batch's length up to a "
                                  "multiple of this; 0 = auto: 64 on GPUs (few distinct shapes, "
                                  "measured faster), 8 on CPUs; 1 = exact.")
    length_bucket_size: int = opt(0, "Encode questions and passages in length-sorted chunks of "
                                  "this many, each padded only to its own longest sequence "
                                  "rounded up to --pad_to_multiple_of (same vectors, less "
                                  "padding, few shapes); 0 = off.")
    amp_dtype: str = opt("auto", "Mixed-precision type with --fp16: auto (bfloat16 on CPUs and "
                         "GPUs that support it, float16 with loss scaling otherwise), bfloat16 "
                         "or float16.")
    gradient_checkpointing: bool = opt(False, "Recompute encoder activations in the backward "
                                       "pass instead of storing them (less memory, ~30% "
                                       "more compute).")
    compile: bool = opt(False, "Compile each tower's encoder with torch.compile (default "
                        "mode; the first steps of each new batch shape are slow while it "
                        "compiles). Same results within float rounding.")
    grad_cache_chunk_size: int = opt(0, "Gradient caching: encode the in-batch pool in chunks "
                                     "of this many sequences (same loss and gradients as the "
                                     "full batch, memory of one chunk); 0 = off.")
    ignore_checkpoint_offset: bool = opt(
        False, "Initialise from --model_file (or the resumed checkpoint) without its progress: "
        "training starts at epoch 0, batch 0, as a new run.")
    ignore_checkpoint_optimizer: bool = opt(
        False, "Do not restore the checkpoint's optimizer state (a fresh AdamW state).")
    ignore_checkpoint_lr: bool = opt(
        False, "Do not restore the checkpoint's learning-rate schedule: the schedule (warm-up, "
        "then linear decay) starts again from the first update.")
    keep_last_checkpoints: int = opt(
        0, "Keep only the N most advanced checkpoints of the run, plus the best one; 0 = keep "
        "all.")
    distributed_timeout_minutes: float = opt(
        30.0, "With several processes: how long one waits for the others (start-up and each "
        "collective) before failing, e.g. when another process died.")
    distill_weight: float = opt(1.0, "Weight of the distillation term of --distill_scores "
                                "(choose it on a tuning split).")
    keep_duplicate_positives: bool = opt(
        False, "Score in-batch copies of a question's positive passage (another question's "
        "positive or hard negative with the same passage_id, or the same title and text) as "
        "negatives of that question, as the original DPR did. By default they are left out "
        "of its softmax and accuracy (training and NLL validation).")

    def __post_init__(self) -> None:
        check_bounds(self, gradient_accumulation_steps=1, eval_per_epoch=1, log_batch_step=1,
                      train_rolling_loss_step=1, val_av_rank_bsz=1, val_av_rank_max_qs=1,
                      val_av_rank_start_epoch=0, val_av_rank_hard_neg=0, val_av_rank_other_neg=0,
                      learning_rate=0, adam_eps=0, weight_decay=0, local_rank=-1,
                      warmup_steps=0, num_train_epochs=0, pad_to_multiple_of=0,
                      grad_cache_chunk_size=0, length_bucket_size=0, keep_last_checkpoints=0,
                      distill_weight=0)
        if self.amp_dtype not in ("auto", "bfloat16", "float16"):
            raise UsageError(f"--amp_dtype must be auto, bfloat16 or float16, got "
                             f"{self.amp_dtype!r}")
        if self.fp16_opt_level not in ("O0", "O1", "O2", "O3"):
            raise UsageError(f"--fp16_opt_level must be O0, O1, O2 or O3, got "
                             f"{self.fp16_opt_level!r}")
        parse_adam_betas(self.adam_betas)
        if self.distributed_timeout_minutes <= 0:
            raise UsageError("--distributed_timeout_minutes must be > 0, got "
                             f"{self.distributed_timeout_minutes}")

    @property
    def betas(self) -> tuple[float, float]:
        return parse_adam_betas(self.adam_betas)

    @property
    def use_amp(self) -> bool:
        return self.fp16 and self.fp16_opt_level != "O0"

    @property
    def epochs(self) -> int:
        return int(self.num_train_epochs)


@dataclass(frozen=True)
class RerankConfig:
    """Reranker flags: its candidates, its head and its validation."""

    negatives: int = opt(
        7, "Negatives per question (hard negatives first, then negative_ctxs; copies of a "
        "positive left out): a listwise group of 1 positive + N. A question with fewer keeps "
        "fewer; one with none is left out (logged).")
    head_learning_rate: float = opt(3e-3, "Peak learning rate of the one-score head "
                                    "(--learning_rate is the encoder's).")
    head_init: str = opt("zero", "How the one-score head starts: zero (every candidate scores "
                         "the same at first; the head learns first) or random.",
                         choices=HEAD_INITS)
    val_candidates: int = opt(30, "Validation: MRR@10 of re-ranking each dev question's own "
                              "candidates, its positive and up to N-1 negatives (hard first).")

    def __post_init__(self) -> None:
        check_bounds(self, negatives=1, head_learning_rate=0, val_candidates=2)
        if self.head_init not in HEAD_INITS:
            raise UsageError(f"--head_init must be one of {', '.join(HEAD_INITS)}, got "
                             f"{self.head_init!r}")


CONFIG_CLASSES = (ModelConfig, DataConfig, TrainConfig)
# The flags of train_dense_encoder.py that a reranker has no use for: train_reranker.py lacks
# them (its recipe: the pooling, lower-casing and length only; no prefix, never normalised).
BIENCODER_ONLY = frozenset({
    "projection_dim", "fix_ctx_encoder", "similarity", "query_prefix", "passage_prefix",
    "temperature", "shared_encoder", "hard_negatives", "other_negatives",
    "val_av_rank_start_epoch", "val_av_rank_hard_neg", "val_av_rank_other_neg",
    "val_av_rank_bsz", "val_av_rank_max_qs", "global_loss_buf_sz", "grad_cache_chunk_size",
    "keep_duplicate_positives", "distill_scores", "distill_weight"})


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one run (`rerank` set: a reranker's)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    # Flags the user set (command line or --config file), as opposed to defaults.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)
    rerank: RerankConfig | None = None

    def to_dict(self, model: ModelConfig | None = None) -> dict[str, Any]:
        """Flat dict of every flag of the run's tool (what `--config` reads back), with the
        encoder settings of `model` when given (the resolved ones)."""
        values = {**dataclasses.asdict(model or self.model), **dataclasses.asdict(self.data),
                  **dataclasses.asdict(self.train)}
        if self.rerank is None:
            return values
        return {k: v for k, v in values.items() if k not in BIENCODER_ONLY} | \
            dataclasses.asdict(self.rerank)
