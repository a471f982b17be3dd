"""Dataclass fields that are command-line flags (`opt`): a flag's name, default, choices and
help declared once, turned into a parser's arguments (`add_options`), read back into the
dataclass (`options_of`), and the flags a command line gave (`given_options`). The recipe,
training's configuration and `dpr.evaluate`'s options are declared this way.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection, Iterable, Sequence
from typing import Any

# Field annotations (as strings, `from __future__ import annotations`) -> argparse types.
_TYPES = {"int": int, "float": float, "str": str}


def opt(default: Any, help: str, *, flags: Sequence[str] = (), group: str | None = None,
        **argparse_kwargs: Any) -> Any:
    """A dataclass field that is also a flag, with the field's default.

    Args:
        flags: Its spellings, the canonical one first (default `--<field name>`).
        group: The name of the argument group it belongs to (see `add_options`).
        argparse_kwargs: `add_argument`'s other settings. Without `type`, the field's
            annotation gives it (`int`, `float`, `str`); a `bool` field is a `store_true` flag.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "flags": tuple(flags), "group": group, "argparse": argparse_kwargs})


def at_least(low: int) -> Any:
    """An argparse type: an int of at least `low` (argparse names the flag when refusing)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


def _argparse_kwargs(f: dataclasses.Field, *, unset: bool) -> dict[str, Any]:
    kwargs = dict(f.metadata["argparse"])
    annotation = str(f.type).removesuffix(" | None")
    if annotation == "bool":
        kwargs.setdefault("action", "store_true")
    elif "action" not in kwargs and annotation in _TYPES:
        kwargs.setdefault("type", _TYPES[annotation])
    kwargs["default"] = None if unset else f.default
    # argparse %-formats help texts (for %(default)s): a literal % must be doubled.
    kwargs["help"] = f.metadata["help"].replace("%", "%%")
    return kwargs


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                names: Collection[str] | None = None, unset: bool = False,
                groups: dict[str, str] | None = None) -> dict[str, argparse._ArgumentGroup]:
    """Adds a flag per `opt` field of `cls` (only `names` when given), its destination the
    field's name; returns the argument groups created, by name, to add more flags to.

    Args:
        unset: Default every flag to None, "not given" (tools where a stored value wins).
        groups: Group titles by field `group` name; a field's group is created on `parser`
            when first met (fields without a group go to `parser` itself).
    """
    created: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or (names is not None and f.name not in names):
            continue
        target = parser
        name = f.metadata["group"]
        if name is not None:
            if name not in created:
                created[name] = parser.add_argument_group((groups or {}).get(name, name))
            target = created[name]
        target.add_argument(*(f.metadata["flags"] or (f"--{f.name}",)), dest=f.name,
                            **_argparse_kwargs(f, unset=unset))
    return created


def options_of(cls: type, namespace: argparse.Namespace | dict[str, Any], **extra: Any) -> Any:
    """An instance of `cls` from parsed flags: each field by its name (fields the namespace
    lacks keep their default), then `extra`."""
    values = namespace if isinstance(namespace, dict) else vars(namespace)
    known = {f.name: values[f.name] for f in dataclasses.fields(cls)
             if f.init and f.name in values}
    return cls(**(known | extra))


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                  names: Iterable[str]) -> frozenset[str]:
    """Which of the destinations `names` a command line sets, whatever the values.

    argparse only fills in the default of a destination the namespace does not have yet, so
    a namespace holding a marker for each name keeps the marker exactly for the flags absent.
    """
    marker = object()
    namespace = argparse.Namespace(**dict.fromkeys(names, marker))
    parser.parse_known_args(argv, namespace=namespace)
    return frozenset(name for name, value in vars(namespace).items() if value is not marker)
