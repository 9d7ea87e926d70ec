"""Argument helpers shared by commands: every TrainConfig key becomes a --flag (documented in
softprompt.commands.reference), read back into the config here."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import yaml

from softprompt.commands.reference import ReferenceHelpFormatter
from softprompt.config import from_dict, load_yaml
from softprompt.train.config import TrainConfig


def config_from_args(args: argparse.Namespace, cls=TrainConfig, **defaults):
    data = dict(defaults)
    if getattr(args, "config", None):
        data.update(load_yaml(args.config))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        raw = getattr(args, f"cfg_{f.name}", None)
        if raw is None:
            continue
        value = parse_scalar(raw) if hints[f.name] is not str else raw
        if f.name == "method" and isinstance(value, str):
            value = {**(data.get("method") or {}), "name": value} if isinstance(data.get("method"), dict) else value
        data[f.name] = value
    if isinstance(data.get("method"), str):
        data["method"] = {"name": data["method"]}
    return from_dict(cls, data, "config")


def parse_scalar(raw: str):
    """A flag value: int, float (1e-3 too, which YAML 1.1 reads as a string), else YAML."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return yaml.safe_load(raw)


def module_main(name: str, help_text: str, add_arguments, run, argv: list[str] | None, prog: str | None) -> int:
    """Run one command outside the `softprompt` entry point (`python -m ...`), with the same arguments."""
    import sys

    from softprompt.errors import SoftPromptError

    parser = argparse.ArgumentParser(prog=f"softprompt {name}", description=help_text,
                                     formatter_class=ReferenceHelpFormatter)
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv, args._prog = argv, prog
    try:
        return run(args)
    except SoftPromptError as err:
        print(f"softprompt {name}: error: {err}", file=sys.stderr)
        return 2
