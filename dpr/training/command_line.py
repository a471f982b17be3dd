"""DPR's command line of `train_dense_encoder.py`, read into the config dataclasses
(`dpr.training.config`): the parser generated from their fields, a `--config` JSON file's
values under the command line's, every value checked against its field's annotation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from dpr.training.config import BIENCODER_ONLY, CONFIG_CLASSES, Config, RerankConfig
from dpr.utils.errors import UsageError
from dpr.utils.options import add_options, given_options, options_of


def _classes(reranker: bool) -> tuple[type, ...]:
    return (*CONFIG_CLASSES, RerankConfig) if reranker else CONFIG_CLASSES


def build_parser(description: str | None = None, *,
                 reranker: bool = False) -> argparse.ArgumentParser:
    """Builds the parser of `train_dense_encoder.py` from the dataclass fields, or with
    `reranker` that of `train_reranker.py` (the same flags but `BIENCODER_ONLY`, and
    `RerankConfig`'s; checkpoints named `reranker.*`)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=str, default=None,
                        help="JSON file of flag values, applied before command-line flags.")
    for cls in _classes(reranker):
        names = [f.name for f in dataclasses.fields(cls) if not (reranker and
                                                                   f.name in BIENCODER_ONLY)]
        add_options(parser.add_argument_group(cls.__name__, (cls.__doc__ or "").splitlines()[0]),
                    cls, names=names)
    if reranker:
        parser.set_defaults(checkpoint_file_name="reranker")
    return parser


# The annotation of each config field -> the Python types its value may have.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
    "str | None": (str, type(None)), "float | None": (int, float, type(None)),
}


def check_value(name: str, annotation: str, value: Any) -> None:
    """Checks one flag value against its field's annotation (values from a `--config` file
    do not go through argparse's conversion), floats being finite: `UsageError` naming the
    flag, the value and the expected type."""
    allowed = _FIELD_TYPES[annotation]
    wrong_bool = isinstance(value, bool) and bool not in allowed
    if wrong_bool or not isinstance(value, allowed):
        expected = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise UsageError(f"--{name}: expected {expected}, got {json.dumps(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"--{name}: must be a finite number, got {value}")


def _read_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is skipped
            values = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"--config {path}: {err}") from err
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: must hold a JSON object of flag values")
    unknown = sorted(set(values) - set(vars(parser.parse_args([]))))
    if unknown:
        raise UsageError(f"--config {path}: unknown keys {unknown}")
    return values


def config_from_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                     args: argparse.Namespace, *, reranker: bool = False) -> Config:
    """The `Config` of `args` parsed from `argv` by `parser` (`build_parser`, the same
    `reranker`), with a `--config` file's values under the command line's (`argv` is parsed
    again over them); `UsageError` for an unreadable or unknown-key `--config` file and
    invalid values."""
    fields = [f for cls in _classes(reranker) for f in dataclasses.fields(cls)]
    explicit = given_options(parser, argv, [f.name for f in fields])
    if args.config:
        from_file = _read_config_file(args.config, parser)
        explicit |= set(from_file)
        parser.set_defaults(**from_file)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # argparse already printed which value it refused
            raise UsageError(f"--config {args.config}: a value is invalid") from exit_
    values = vars(args)
    for f in fields:
        if f.name in values:
            check_value(f.name, str(f.type), values[f.name])
    return Config(*(options_of(cls, values) for cls in CONFIG_CLASSES),
                  explicit=frozenset(explicit - {"config"}),
                  rerank=options_of(RerankConfig, values) if reranker else None)
