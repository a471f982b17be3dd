"""The flags the tools share, one spelling per concept (docs/FLAGS.md): `add_flag` adds the
canonical spelling with the ones accepted before as aliases of the same destination. The model
flags of the tools that load a model (`add_encoder_flags`, `add_recipe_flags` generated from
`dpr.recipe.Recipe`) are read by `encoder_params`, the command-line side of
`dpr.inference.load_encoder`."""

from __future__ import annotations

import argparse
import math
from typing import Any

from dpr.recipe import APPLIED, Recipe
from dpr.utils.errors import UsageError
from dpr.utils.options import add_options, at_least

AMP_DTYPES = ("auto", "bfloat16", "float16")  # `dpr.utils.device.autocast_dtype`'s choices
PICKLE_HELP = ("allow files that need full unpickling (checkpoints with pickled objects, DPR "
               ".pkl embeddings): unpickling can run arbitrary code, trusted files only")
# The encoder parameters a command line can give `load_encoder` besides the recipe's.
MODEL_FLAGS = ("encoder_model_type", "pretrained_model_cfg", "pretrained_file",
               "projection_dim")


def dest_of(flag: str) -> str:
    """The namespace attribute of a flag: `--n-docs` -> `n_docs`."""
    return flag.lstrip("-").replace("-", "_")


def add_flag(container: argparse._ActionsContainer, flag: str, *aliases: str,
             **kwargs: Any) -> argparse.Action:
    """Adds `flag` (the canonical spelling, e.g. `--ctx_file`) to a parser or group, with
    `aliases` (DPR's, and the tool's older spellings) stored under `flag`'s dest."""
    kwargs.setdefault("dest", dest_of(flag))
    return container.add_argument(*dict.fromkeys((flag, *aliases)), **kwargs)


class _Once(argparse.Action):
    """Stores a value given once: as the option, or as its positional spelling."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if values is None:  # the positional spelling, not given
            return
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{self.metavar or option_string}: given twice (as --{self.dest} and "
                         "as the first argument)")
        setattr(namespace, self.dest, values)


def add_positional_flag(parser: argparse.ArgumentParser, flag: str, *, metavar: str,
                        help: str) -> None:
    """Adds `flag` (optional) and its positional spelling (`tool PATH` = `tool --flag PATH`);
    the tool checks that one of them was given (`require`)."""
    parser.add_argument(flag, action=_Once, default=None, help=help)
    parser.add_argument(dest_of(flag), nargs="?", action=_Once, default=None, metavar=metavar,
                        help=f"same as {flag}")


def require(args: argparse.Namespace, flag: str, what: str) -> Any:
    """The value of a flag that has no argparse `required` (see `add_positional_flag`);
    `UsageError` when it was not given."""
    value = getattr(args, dest_of(flag))
    if value is None:
        raise UsageError(f"give {what}: {flag} PATH")
    return value


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Adds `--debug` (tracebacks for user errors as well) to a parser."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback of "
                        "errors caused by the input too (for bug reports)")


def add_output_flags(parser: argparse.ArgumentParser, *, quiet_help: str) -> None:
    """Adds the flags of what a tool prints: `--quiet` (described by `quiet_help`), `--debug`."""
    parser.add_argument("--quiet", action="store_true", help=quiet_help)
    add_debug_flag(parser)


def add_pickle_flag(container: argparse._ActionsContainer, help: str = PICKLE_HELP) -> None:
    """`--allow_unsafe_pickle`."""
    container.add_argument("--allow_unsafe_pickle", action="store_true", help=help)


def add_device_flags(container: argparse._ActionsContainer) -> None:
    """`--device` and DPR's `--no_cuda` (the same as `--device cpu`), read by
    `dpr.utils.device.select_device(args.device)`."""
    container.add_argument("--device", default=None,
                           help="torch device (cpu, cuda, cuda:1...); default: the GPU when "
                           "there is one (of its local rank under a launcher), else the CPU")
    container.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                           help="run on the CPU even with a GPU (DPR's flag: --device cpu)")


def add_precision_flags(container: argparse._ActionsContainer) -> None:
    """`--fp16` and `--amp_dtype` of the encoding tools (read by `autocast_dtype`)."""
    container.add_argument("--fp16", action="store_true",
                           help="Encode under mixed precision: bfloat16 on GPUs that support "
                           "it, else float16; on a CPU only where it has bfloat16 instructions "
                           "(otherwise float32, with a warning). Vectors are written in float32.")
    container.add_argument("--amp_dtype", choices=AMP_DTYPES, default="auto",
                           help="With --fp16: the autocast type (auto: as described there).")


def add_checkpoint_path_flags(container: argparse._ActionsContainer) -> None:
    """`--pretrained_model_cfg` and `--pretrained_file`: where a checkpoint's base model is."""
    container.add_argument("--pretrained_model_cfg", default=None,
                           help="checkpoint only: Hugging Face model/tokenizer folder used in "
                           "training (overrides the, often relative, path stored in it)")
    container.add_argument("--pretrained_file", default=None,
                           help="checkpoint only, fairseq_roberta: the fairseq model folder "
                           "(overrides the path stored in it)")


def add_encoder_flags(parser: argparse.ArgumentParser) -> None:
    """DPR's encoder, tokenizer and device flags of `generate_dense_embeddings.py`,
    `dense_retriever.py` and `data_prep.mine_negatives`."""
    group = parser.add_argument_group("encoder", "Model flags; values stored in the checkpoint "
                                      "win, except the two paths when given here.")
    add_flag(group, "--model_file", type=str, required=True,
             help="Model to encode with: a DPR bi-encoder checkpoint, a dpr2hf export folder, "
             "or a Hugging Face / sentence-transformers model folder (an untrained bi-encoder).")
    group.add_argument("--encoder_model_type", type=str, default=None,
                       help="hf_bert, hf_roberta or fairseq_roberta (normally read from the "
                       "checkpoint).")
    add_checkpoint_path_flags(group)
    group.add_argument("--projection_dim", type=at_least(0), default=0,
                       help="Projection size (normally read from the checkpoint).")
    add_recipe_flags(group)
    add_device_flags(group)
    add_precision_flags(group)
    add_pickle_flag(group)
    group.add_argument("--quiet", action="store_true", help="No progress bars.")


def add_recipe_flags(container: argparse._ActionsContainer) -> None:
    """The flags of the recipe entries that matter when a model is applied
    (`dpr.recipe.APPLIED`), generated from `dpr.recipe.Recipe`; all default to None, "not
    given": a checkpoint or an export applies its stored recipe, a plain model folder its
    sentence-transformers recipe, else DPR's."""
    add_options(container, Recipe, names=APPLIED, unset=True)


def encoder_params(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder parameters given on the command line, as `load_encoder` takes them (flags
    a tool does not have, and flags not given, are None), the recipe's checked (`UsageError`
    naming the flag)."""
    given = {key: getattr(args, key, None) for key in (*MODEL_FLAGS, *APPLIED)}
    Recipe.from_params(given)
    return given


def check_finite_floats(args: argparse.Namespace) -> None:
    """Refuses (`UsageError` naming it) a float flag given as `nan` or `inf` (argparse's
    `float` accepts both)."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{name} must be a finite number, got {value}")
