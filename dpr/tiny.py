"""Tiny randomly initialised encoders with real tokenizers, for tests and the offline demo.

    python -m dpr.tiny --type camembert --corpus examples/data/fr_sample_squad.json \
        --output_dir DIR

writes a model folder (a tokenizer trained on the corpus, a small config, random weights) of
the `--type` chosen, one `make_tiny_*` builder each: CamemBERT, XLM-R, BERT, RoBERTa, an
e5-shaped folder, or a fairseq-format CamemBERT as the 2020 blog's `data/camembert-base`.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from dpr.cli.flags import add_debug_flag, add_flag
from dpr.cli.main import run_main
from dpr.models.st_folder import E5_RECIPE, save_sentence_transformer

logger = logging.getLogger(__name__)

SPECIAL_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def corpus_texts(path: str | Path) -> list[str]:
    """Texts of a SQuAD-format file (titles, contexts, questions, answers) or of a text file."""
    path = Path(path)
    if path.suffix != ".json":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        texts.append(article.get("title", ""))
        for paragraph in article["paragraphs"]:
            texts.append(paragraph["context"])
            for qa in paragraph.get("qas", []):
                texts.append(qa["question"])
                texts.extend(a["text"] for a in qa.get("answers", []))
    return [t for t in texts if t.strip()]


def _small_config_kwargs(hidden: int, layers: int) -> dict:
    return {"hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": max(1, hidden // 16), "intermediate_size": hidden * 4}


def train_sentencepiece(texts: Iterable[str], out_dir: Path, vocab_size: int = 400) -> Path:
    """Trains a unigram SentencePiece model (ids: unk 0, <s> 1, </s> 2, as camembert-base)."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(out_dir / "sentencepiece.bpe"),
            vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
            hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
            num_threads=1)
    (out_dir / "sentencepiece.bpe.vocab").unlink(missing_ok=True)
    return out_dir / "sentencepiece.bpe.model"


# The config of RoBERTa-type models (fairseq's ids and offset positions).
_ROBERTA = {"max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}


def _sentencepiece_folder(out_dir: str | Path, texts: list[str], classes: tuple[type, type, type],
                          *, vocab_size: int, seed: int, **config: Any) -> Path:
    """Writes a folder: a SentencePiece tokenizer trained on the texts (saved as
    `sentencepiece.bpe.model`) and a random model without pooler; `classes` are the tokenizer,
    config and model classes."""
    tokenizer_cls, config_cls, model_cls = classes
    out = Path(out_dir)
    train_sentencepiece(texts, out, vocab_size)
    tokenizer = tokenizer_cls(vocab_file=str(out / "sentencepiece.bpe.model"))
    torch.manual_seed(seed)
    model_cls(config_cls(vocab_size=len(tokenizer), **config),
              add_pooling_layer=False).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_camembert(out_dir: str | Path, texts: list[str], *, hidden: int = 32,
                        layers: int = 2, vocab_size: int = 400, seed: int = 0,
                        dropout: float = 0.1) -> Path:
    """Writes a tiny CamemBERT folder (tokenizer, config, random weights)."""
    from transformers import CamembertConfig, CamembertModel, CamembertTokenizer

    return _sentencepiece_folder(
        out_dir, texts, (CamembertTokenizer, CamembertConfig, CamembertModel),
        vocab_size=vocab_size, seed=seed, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, **_ROBERTA, **_small_config_kwargs(hidden, layers))


def make_tiny_xlm_roberta(out_dir: str | Path, texts: list[str], *, hidden: int = 32,
                          layers: int = 2, vocab_size: int = 400, seed: int = 0) -> Path:
    """Writes a tiny XLM-R folder: SentencePiece model (saved as `sentencepiece.bpe.model`,
    like CamemBERT's), `XLMRobertaTokenizer` files, config (model_type xlm-roberta), weights."""
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    return _sentencepiece_folder(
        out_dir, texts, (XLMRobertaTokenizer, XLMRobertaConfig, XLMRobertaModel),
        vocab_size=vocab_size, seed=seed, **_ROBERTA, **_small_config_kwargs(hidden, layers))


def make_tiny_e5(out_dir: str | Path, texts: list[str], *, hidden: int = 32, layers: int = 2,
                 vocab_size: int = 400, seed: int = 0) -> Path:
    """Writes a tiny folder shaped like multilingual-e5: a `BertModel` (model_type bert, no
    pooler weights) with an `XLMRobertaTokenizer`, and sentence-transformers files declaring
    mean pooling, normalisation and the `query: ` / `passage: ` prompts."""
    from transformers import BertConfig, BertModel, XLMRobertaTokenizer

    with tempfile.TemporaryDirectory() as plain:
        _sentencepiece_folder(plain, texts, (XLMRobertaTokenizer, BertConfig, BertModel),
                              vocab_size=vocab_size, seed=seed, max_position_embeddings=512,
                              pad_token_id=1, type_vocab_size=2,
                              **_small_config_kwargs(hidden, layers))
        save_sentence_transformer(plain, out_dir, E5_RECIPE)
    return Path(out_dir)


def _bert_vocab(texts: list[str], size: int, *, cased: bool = False) -> list[str]:
    def norm(text: str) -> str:
        if cased:
            return text
        text = unicodedata.normalize("NFD", text.lower())
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    words: collections.Counter[str] = collections.Counter()
    chars: set[str] = set()
    for text in texts:
        clean = norm(text)
        chars.update(c for c in clean if not c.isspace())
        for token in clean.replace("'", " ' ").split():
            words[token.strip(".,;:!?()\"")] += 1
    pieces = sorted(chars) + [f"##{c}" for c in sorted(chars)]
    frequent = [w for w, _ in words.most_common() if len(w) > 1 and w not in pieces]
    return SPECIAL_BERT + pieces + frequent[: max(0, size - len(pieces) - 5)]


def make_tiny_bert(out_dir: str | Path, texts: list[str], *, hidden: int = 32, layers: int = 2,
                   vocab_size: int = 600, seed: int = 0, cased: bool = False) -> Path:
    """Writes a tiny BERT folder (WordPiece vocabulary from the texts, random weights):
    uncased (lower-cased, accent-stripped vocabulary) unless `cased`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _bert_vocab(texts, vocab_size, cased=cased)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=not cased)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512,
                        **_small_config_kwargs(hidden, layers))
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_roberta(out_dir: str | Path, texts: list[str], *, hidden: int = 32,
                      layers: int = 2, vocab_size: int = 500, seed: int = 0) -> Path:
    """Writes a tiny RoBERTa folder (byte-level BPE trained on the texts, random weights)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(out))
    tokenizer = RobertaTokenizerFast(vocab_file=str(out / "vocab.json"),
                                     merges_file=str(out / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tokenizer), **_ROBERTA,
                           **_small_config_kwargs(hidden, layers))
    torch.manual_seed(seed)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def write_fairseq_dictionary(sp_model: Path, out: Path) -> int:
    """Writes fairseq's `dict.txt` for a SentencePiece model (line k = piece k, id 4 + k).

    Pieces that collide with fairseq's four built-in symbols carry `#fairseq:overwrite`, as in
    camembert-base's dictionary. Returns the number of lines.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    size = sp.get_piece_size()
    lines = []
    for k in range(size):
        piece = sp.id_to_piece(k)
        flag = " #fairseq:overwrite" if piece in FAIRSEQ_SPECIALS else ""
        lines.append(f"{piece} {1000 * (size - k)}{flag}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return size


def make_tiny_fairseq_camembert(out_dir: str | Path, texts: list[str], *, hidden: int = 32,
                                layers: int = 2, vocab_size: int = 400, seed: int = 0,
                                layout: str = "cfg", infix: str = "encoder") -> Path:
    """Writes a tiny CamemBERT in fairseq's own folder format, with plain torch.

    `model.pt` holds `model` (fairseq RoBERTa tensor names), `optimizer_history`, `extra_state`
    and either a plain-dict `cfg` (what current fairseq reads) or an `args` namespace (fairseq
    <= 0.10). `dict.txt` and `sentencepiece.bpe.model` complete the folder. `infix="decoder"`
    writes fairseq 0.9's names.
    """
    from transformers import CamembertConfig, CamembertModel

    from dpr.models.fairseq import hf_to_sentence_encoder

    out = Path(out_dir)
    sp_model = train_sentencepiece(texts, out, vocab_size)
    pieces = write_fairseq_dictionary(sp_model, out / "dict.txt")
    vocab = 4 + pieces + 1  # built-ins, dictionary, <mask>
    torch.manual_seed(seed)
    config = CamembertConfig(vocab_size=vocab, **_ROBERTA, **_small_config_kwargs(hidden, layers))
    model = CamembertModel(config, add_pooling_layer=False)
    torch.nn.init.zeros_(model.embeddings.token_type_embeddings.weight)
    encoder = hf_to_sentence_encoder(model.state_dict())
    state = {f"{infix}.sentence_encoder.{k}": v for k, v in encoder.items()}
    head = {"dense.weight": torch.randn(hidden, hidden) * 0.02, "dense.bias": torch.zeros(hidden),
            "layer_norm.weight": torch.ones(hidden), "layer_norm.bias": torch.zeros(hidden),
            "weight": encoder["embed_tokens.weight"], "bias": torch.randn(vocab) * 0.02}
    state.update({f"{infix}.lm_head.{k}": v for k, v in head.items()})
    model_args = {"_name": "roberta", "arch": "roberta_base", "encoder_layers": layers,
                  "encoder_embed_dim": hidden, "encoder_ffn_embed_dim": hidden * 4,
                  "encoder_attention_heads": config.num_attention_heads, "max_positions": 512,
                  "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
                  "activation_fn": "gelu"}
    history = [{"criterion_name": "MaskedLmLoss", "optimizer_name": "Adam",
                "lr_scheduler_state": {"best": None}, "num_updates": 0}]
    ckpt = {"model": state, "optimizer_history": history, "extra_state": {}}
    if layout == "args":
        ckpt["args"] = argparse.Namespace(task="masked_lm", data=".", **model_args)
    else:
        ckpt["cfg"] = {"model": model_args, "task": {"_name": "masked_lm", "data": "."},
                       "bpe": None, "common": {}, "criterion": {"_name": "masked_lm"}}
    torch.save(ckpt, out / "model.pt")
    return out


BUILDERS = {"camembert": make_tiny_camembert, "bert": make_tiny_bert,
            "xlm-roberta": make_tiny_xlm_roberta, "e5": make_tiny_e5,
            "roberta": make_tiny_roberta, "fairseq-camembert": make_tiny_fairseq_camembert}


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m dpr.tiny`."""
    parser = argparse.ArgumentParser(prog="python -m dpr.tiny",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--type", choices=sorted(BUILDERS), default="camembert",
                        help="Model family to write.")
    parser.add_argument("--corpus", required=True,
                        help="SQuAD-format JSON or plain text file the tokenizer is trained on.")
    add_flag(parser, "--output_dir", "--out", required=True, help="Output folder.")
    parser.add_argument("--hidden", type=int, default=32, help="Hidden size.")
    parser.add_argument("--layers", type=int, default=2, help="Number of layers.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    add_debug_flag(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    out = BUILDERS[args.type](args.output_dir, corpus_texts(args.corpus), hidden=args.hidden,
                              layers=args.layers, seed=args.seed)
    logger.info("Wrote tiny %s model to %s", args.type, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Writes one tiny model; returns the exit status (see `dpr.cli.main.run_main`)."""
    return run_main(build_parser(), argv, _run, prog="dpr.tiny")


if __name__ == "__main__":
    raise SystemExit(main())
