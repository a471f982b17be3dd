"""A recipe as a sentence-transformers folder, through sentence-transformers' own API:
`save_sentence_transformer` writes one (layout in docs/DPR2HF.md), `folder_recipe` reads what
one declares (the README's "A model's own recipe"); a reranker as a `CrossEncoder` folder,
written by `save_cross_encoder` and read back by `load_cross_encoder`."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from torch import nn

from dpr.models.encoder import Encoder, quiet_transformers
from dpr.recipe import Pooling, Recipe, Similarity
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)

# Prompt names used for passages by sentence-transformers models, in order of preference.
PASSAGE_PROMPT_NAMES = ("passage", "document", "corpus", "search_document")
QUERY_PROMPT_NAMES = ("query", "search_query")
# E5 models (intfloat/multilingual-e5-small, e5-base-v2...) and their recipe: the prefixes
# are part of the model, but hub copies may not declare them as sentence-transformers prompts.
E5_NAME = re.compile(r"(^|[/_-])(multilingual-)?e5-(small|base|large)(-v2)?($|[/_-])",
                     re.IGNORECASE)
# How E5 models were trained (mean pooling over the tokens, prefix included; temperature 0.01).
E5_RECIPE = Recipe(pooling="mean", similarity="cosine", temperature=0.01,
                   query_prefix="query: ", passage_prefix="passage: ", shared_encoder=True)


def _has_pooler(folder: Path) -> bool:
    from safetensors import safe_open

    weights = folder / "model.safetensors"
    if not weights.is_file():
        return True
    with safe_open(str(weights), "pt") as handle:
        return any(key.startswith("pooler.") for key in handle.keys())


def save_sentence_transformer(source: str | os.PathLike[str], target: str | os.PathLike[str],
                              recipe: Recipe, *, projection: nn.Linear | None = None,
                              default_prompt: str | None = None) -> None:
    """Writes `target`: the transformers model folder `source` (not `target`) as a
    sentence-transformers one, its weights saved again in their own type, a pooler only if
    `source` has one.

    Args:
        recipe: Pooling, normalisation, the `query` / `passage` prompts (from the prefixes),
            lower-casing (the prompt included, as training lower-cases it) and length.
        projection: The tower's `encode_proj`, saved as a `Dense` module (identity activation).
        default_prompt: The prompt a plain `encode(text)` applies (`query` for a question
            tower, `passage` for a passage tower).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    with quiet_transformers():
        stack = _encoder_modules(source, recipe)
        if projection is not None:
            stack.append(_dense(projection))
        if recipe.normalize:
            stack.append(modules.Normalize())
        prompts = {name: prefix for name, prefix in (("query", recipe.query_prefix),
                                                     ("passage", recipe.passage_prefix)) if prefix}
        model = SentenceTransformer(
            modules=stack, prompts=prompts, device="cpu", similarity_fn_name=recipe.similarity,
            default_prompt_name=default_prompt if default_prompt in prompts else None)
        model.save(str(target), create_model_card=False)


def _encoder_modules(source: str | os.PathLike[str], recipe: Recipe) -> list[nn.Module]:
    """sentence-transformers' `Transformer` of the folder `source` (its length and
    lower-casing from the recipe) and `Pooling` by the recipe's mode."""
    from sentence_transformers.sentence_transformer import modules

    transformer = modules.Transformer(
        str(source), max_seq_length=recipe.sequence_length, do_lower_case=recipe.do_lower_case,
        model_kwargs={"torch_dtype": "auto", "add_pooling_layer": _has_pooler(Path(source))})
    return [transformer, modules.Pooling(transformer.get_embedding_dimension(),
                                         pooling_mode=recipe.pooling)]


def _dense(linear: nn.Linear, **names: str) -> nn.Module:
    """sentence-transformers' `Dense` module holding `linear`'s weights, identity activation
    (`names`: its input / output feature names, `sentence_embedding` by default)."""
    from sentence_transformers.sentence_transformer import modules

    return modules.Dense(linear.in_features, linear.out_features,
                         activation_function=nn.Identity(),
                         init_weight=linear.weight.detach().clone(),
                         init_bias=linear.bias.detach().clone(), **names)


def save_cross_encoder(source: str | os.PathLike[str], target: str | os.PathLike[str],
                       recipe: Recipe, *, head: nn.Linear) -> None:
    """Writes `target`: the reranker whose transformer is the folder `source` (not `target`)
    and whose one-score head is `head`, as a sentence-transformers `CrossEncoder` folder.

    sentence-transformers 5.x builds a `CrossEncoder` from modules and takes the scores from a
    `Dense` module whose output is named `scores` (its `num_labels` is that module's size). The
    project's reranker is exactly such a stack: `Transformer` (the feature-extraction
    `AutoModel`, as training used, not a sequence-classification class, whose own head pools
    otherwise: BERT's tanh pooler, RoBERTa's two-layer classifier), `Pooling` (the recipe's cls
    or mean) and `Dense(hidden, 1)` with the head's weights and the identity activation. The
    `CrossEncoder`'s activation is the identity too (a one-label `CrossEncoder` applies a
    sigmoid by default), so that `predict` returns the raw scores training ranked by.

    Args:
        recipe: Pooling, lower-casing (the saved tokenizer lower-cases) and length (the saved
            tokenizer's `model_max_length`).
        head: The reranker's `encode_proj` (hidden size -> 1).
    """
    from sentence_transformers import CrossEncoder

    with quiet_transformers():
        stack = _encoder_modules(source, recipe)
        stack.append(_dense(head, module_output_name="scores"))
        model = CrossEncoder(modules=stack, device="cpu", activation_fn=nn.Identity())
        model.save(str(target), create_model_card=False)


def load_cross_encoder(folder: str | os.PathLike[str]) -> Encoder:
    """The reranker of a `CrossEncoder` folder written by `save_cross_encoder`, loaded once by
    sentence-transformers, as the `Encoder` training used (in eval mode, on the CPU): its
    transformer, the `Pooling` module's mode and the `Dense` module's linear layer as the head.

    Raises:
        InputError: A folder that is not such a stack (a `CrossEncoder` with a classification
            head, a sigmoid, or another module).
    """
    from sentence_transformers import CrossEncoder
    from sentence_transformers.sentence_transformer import modules

    with quiet_transformers():
        model = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    stack = list(model)
    kinds = [type(m).__name__ for m in stack]
    shaped = (len(stack) == 3 and isinstance(stack[0], modules.Transformer)
              and isinstance(stack[1], modules.Pooling) and isinstance(stack[2], modules.Dense)
              and stack[2].out_features == 1 and stack[2].module_output_name == "scores"
              and isinstance(stack[2].activation_function, nn.Identity)
              and isinstance(model.activation_fn, nn.Identity))
    if not shaped:
        raise InputError(f"{folder}: a CrossEncoder ({', '.join(kinds)}; activation "
                         f"{type(model.activation_fn).__name__}) that is not a reranker "
                         "exported by dpr2hf (Transformer, Pooling, Dense to one score, "
                         "identity activations)")
    mode = stack[1].pooling_mode
    if mode not in (Pooling.CLS, Pooling.MEAN):
        raise InputError(f"{folder}: its pooling ({mode}) is neither cls nor mean")
    encoder = Encoder(stack[0].auto_model, pooling=mode, normalize=False)
    encoder.encode_proj = stack[2].linear
    return encoder.eval()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None


def _is_e5(folder: Path) -> bool:
    config = _read_json(folder / "config.json") or {}
    return any(E5_NAME.search(name) for name in (str(config.get("_name_or_path") or ""),
                                                  folder.name))


def _declared(folder: Path) -> dict[str, Any]:
    """What `folder_recipe` reads, without the weights: each module's class and configuration
    through sentence-transformers (`import_module_class`, `Pooling.load`, which also reads
    older pooling flags), the prompts and similarity from `config_sentence_transformers.json`,
    which sentence-transformers 5.7 reads only inside `SentenceTransformer(folder)`: that loads
    the whole model (0.9-2 s for multilingual-e5-small on a 2-core CPU) before the loader loads
    it again."""
    from sentence_transformers.sentence_transformer import modules
    from sentence_transformers.util import import_module_class

    declared = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    classes = [(m["path"], import_module_class(m["type"], str(folder))) for m in declared]
    config = _read_json(folder / "config_sentence_transformers.json") or {}
    found: dict[str, Any] = {}
    for path, cls in classes:
        if issubclass(cls, modules.Pooling):
            mode = cls.load(str(folder), subfolder=path, local_files_only=True).pooling_mode
            if mode in (Pooling.CLS, Pooling.MEAN):
                found["pooling"] = str(mode)
            else:
                logger.warning("%s: its sentence-transformers pooling (%s) is neither cls nor "
                               "mean; pass --pooling", folder, mode)
    # sentence-transformers compares by cosine unless a folder declares otherwise
    similarity = config.get("similarity_fn_name")
    if any(issubclass(cls, modules.Normalize) for _, cls in classes) or \
            similarity in (None, Similarity.COSINE):
        found["similarity"] = Similarity.COSINE.value
    elif similarity == Similarity.DOT:
        found["similarity"] = Similarity.DOT.value
    prompts = config.get("prompts") or {}
    for key, names in (("query_prefix", QUERY_PROMPT_NAMES),
                       ("passage_prefix", PASSAGE_PROMPT_NAMES)):
        prompt = next((prompts[n] for n in names if prompts.get(n)), None)
        if prompt:
            found[key] = prompt
    return found


def folder_recipe(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The recipe a sentence-transformers folder declares: its `Pooling` module's mode,
    cosine for a `Normalize` module or a `similarity_fn_name` cosine (or none), its query /
    passage prompts. Any other folder declares nothing (DPR's recipe). A copy of an E5 model
    (so named by its `config.json` or folder) gets E5's prefixes when its sentence-transformers
    files declare none, and a warning when it has no such files.

    Returns:
        Some of `pooling`, `similarity`, `query_prefix`, `passage_prefix`.
    """
    if not path or not Path(path).is_dir():
        return {}
    folder = Path(path)
    if not (folder / "modules.json").is_file():
        if _is_e5(folder):
            logger.warning("%s looks like an E5 model but has no sentence-transformers files: "
                           "it gets DPR's recipe (first token, dot product, no prefix), not "
                           "E5's; for E5's pass --pooling mean --similarity cosine "
                           "--query_prefix 'query: ' --passage_prefix 'passage: '", path)
        return {}
    try:
        found = _declared(folder)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as err:
        logger.warning("%s: sentence-transformers cannot read its files (%s): DPR's recipe "
                       "unless flags say otherwise", path, str(err).splitlines()[0])
        return {}
    if "query_prefix" not in found and "passage_prefix" not in found and _is_e5(folder):
        logger.info("%s: an E5 model without declared prompts: its prefixes %r / %r are the "
                    "defaults", path, E5_RECIPE.query_prefix, E5_RECIPE.passage_prefix)
        found |= {"query_prefix": E5_RECIPE.query_prefix,
                  "passage_prefix": E5_RECIPE.passage_prefix}
    return found
