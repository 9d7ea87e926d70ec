"""Dataclass configs that validate themselves and round-trip through dicts/YAML."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

import yaml

from softprompt.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown fields and wrong types by name."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown field(s) {', '.join(unknown)}; expected one of {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, path)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def _coerce(hint, value, path):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if hasattr(hint, "from_value"):  # a config with its own reading rules (e.g. method presets)
            return hint.from_value(value, path)
        return from_dict(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def option(default: Any = dataclasses.MISSING, *, help: str, unit: str | None = None, unset: str | None = None,
           values: str | None = None, default_factory: Any = dataclasses.MISSING,
           shown_default: str | None = None) -> Any:
    """A documented config field: `help` says what it means, `unit` its unit, `unset` what leaving it
    unset (None) does, `values` the allowed values where the type does not say them (a Literal does),
    and `shown_default` the default as a user writes it where a factory builds it. The CLI's --help
    reads these through `describe`; `undocumented` lists the fields that lack them."""
    meta = {"help": help, "unit": unit, "unset": unset, "values": values, "shown_default": shown_default}
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={k: v for k, v in meta.items() if v is not None})


def undocumented(cls) -> list[str]:
    """Fields of dataclass `cls` without a `help` (see `option`)."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]


def allowed_values(hint) -> list[str]:
    """The values a type allows, as a user writes them: Literal members, true/false, none if optional."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return [show_value(a) for a in args]
    if hint is bool:
        return ["true", "false"]
    if origin in (typing.Union, types.UnionType):
        inner = [v for a in args if a is not type(None) for v in allowed_values(a)]
        return inner + ["none"] if inner and type(None) in args else inner
    return []


def show_value(value: Any) -> str:
    """A value as it is written in YAML or on the command line (true, none, 0.001, [0.9, 0.98])."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def field_default(f: dataclasses.Field) -> str:
    """A field's default as a user writes it."""
    if "shown_default" in f.metadata:
        return f.metadata["shown_default"]
    if f.default is None and f.metadata.get("unset"):
        return f"unset ({f.metadata['unset']})"
    if f.default is not dataclasses.MISSING:
        return show_value(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return show_value(f.default_factory())
    return "required"


def describe(cls, name: str, default: str | None = None) -> str:
    """One field's reference text: meaning, unit, allowed values, default (`default`: another shown)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    text = f.metadata.get("help")
    if not text:
        raise ConfigError(f"{cls.__name__}.{name} has no documentation: declare it with option(help=...)")
    parts = [text.rstrip(".")]
    if f.metadata.get("unit"):
        parts.append(f"unit: {f.metadata['unit']}")
    values = f.metadata.get("values") or ", ".join(allowed_values(typing.get_type_hints(cls)[name]))
    if values:
        parts.append(f"one of: {values}")
    parts.append(f"default: {field_default(f) if default is None else default}")
    return "; ".join(parts)


def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def load_yaml(path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
