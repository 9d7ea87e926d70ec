"""Help that reads like a reference: config-key flags documented by their config field (meaning, unit,
allowed values, default; see `softprompt.config.option`), and every option's default stated."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from softprompt.config import allowed_values, describe, show_value
from softprompt.train.config import TrainConfig


class ReferenceHelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default: appended where the help text does not give it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower() or action.default is argparse.SUPPRESS:
            return text
        if action.nargs == 0:  # a switch (store_true / store_false)
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: {show_value(action.default)})"


def _metavar(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(allowed_values(hint)) + "}"
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _metavar(inner[0]) if len(inner) == 1 else "VALUE"
    if origin in (list, tuple):
        return "[" + ", ".join(_metavar(a) for a in (args or (str,)) if a is not Ellipsis) + "]"
    return {int: "INT", float: "FLOAT", bool: "BOOL", str: "TEXT"}.get(hint, "VALUE")


def config_help(cls, name: str, default: str | None = None) -> str:
    """The --help text of config field `name` of `cls` (escaped for argparse)."""
    return describe(cls, name, default).replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, cls=TrainConfig) -> None:
    """--key VALUE for every field (parsed as YAML scalars, so 1e-3, true, [0.9, 0.98] work); each flag's
    help is the field's documentation."""
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file with these keys; flags override it (default: none, every key at its default)")
    group = parser.add_argument_group(f"{cls.__name__} keys (YAML key = flag name with _ for -)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, dest=f"cfg_{f.name}", metavar=_metavar(hints[f.name]), default=None,
                           help=config_help(cls, f.name))


def add_field_flag(parser, cls, name: str, **kwargs) -> None:
    """One --flag documented by config field `name` of `cls`, with argparse settings `kwargs` (type, default,
    action...); the help shows the argparse default where `kwargs` gives one."""
    shown = show_value(kwargs["default"]) if kwargs.get("default") is not None else None  # None: the field's
    parser.add_argument("--" + name.replace("_", "-"), help=config_help(cls, name, shown), **kwargs)
