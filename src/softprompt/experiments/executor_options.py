"""Where a grid's cells run, and with what: `bench --executor local|ray|slurm` and its options.

Options come from the spec (top-level `executors:`, merged with the profile's `executors:`) and
from flags, flags winning:

    profiles:
      full:
        executors:
          ray: {cpus: 4, gpus: 1}                             # per cell (a Ray task each)
          slurm: {partition: gpu, time_min: 240, cpus: 8, gpus: 1, mem_gb: 32}

This module only checks and holds the options (spec.py checks a spec's block with it); the
executors themselves are in experiments/executors/.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from softprompt.errors import ConfigError

EXECUTORS = ("local", "ray", "slurm")


@dataclass
class RayOptions:
    address: str | None = None  # a running cluster ("auto", "ray://host:10001"); None: a local runtime started here
    local_cpus: int | None = None  # CPUs of the local runtime started here (None: every core)
    cpus: float = 1  # per cell
    gpus: float = 0  # per cell
    retries: int = 2  # a cell whose worker process died is run again this many times


@dataclass
class SlurmOptions:
    local: bool = False  # submitit's local executor: the same code path, jobs as local processes
    partition: str | None = None
    time_min: int = 60  # per cell (a job of the array)
    cpus: int = 1  # per cell (cpus_per_task; also its torch threads)
    gpus: int = 0  # per cell
    mem_gb: float | None = None
    parallel: int | None = None  # cells running at once (Slurm array parallelism; local: jobs at once)
    retries: int = 2  # a cell whose job ended without a result is submitted again this many times
    folder: str | None = None  # submitit's job files and logs (default <runs>/<spec>/submitit)
    additional: dict[str, Any] = field(default_factory=dict)  # more sbatch options, e.g. {account: x, qos: y}


OPTIONS = {"ray": RayOptions, "slurm": SlurmOptions}


def check_block(block: Any, where: str) -> dict[str, dict[str, Any]]:
    """A spec's `executors:` block: {ray: {...}, slurm: {...}}, every field known and typed."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping {{ray: {{...}}, slurm: {{...}}}}, got {block!r}")
    for kind, values in block.items():
        if kind not in OPTIONS:
            raise ConfigError(f"{where}.{kind}: unknown executor; expected one of {', '.join(OPTIONS)}")
        build(kind, values or {}, f"{where}.{kind}")
    return {kind: dict(values or {}) for kind, values in block.items()}


def build(kind: str, values: dict[str, Any], where: str):
    """RayOptions / SlurmOptions from a mapping; an unknown or mistyped field is a ConfigError naming it."""
    cls = OPTIONS[kind]
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
                          f"got {values!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown field; expected one of {', '.join(names)}")
        _check_value(key, value, names[key].type, f"{where}.{key}")
    return cls(**values)


def _check_value(key: str, value: Any, hint: str, where: str) -> None:
    if value is None:
        if "None" not in hint:
            raise ConfigError(f"{where}: must be set, got null")
        return
    kind = hint.split(" ")[0].split("[")[0]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    least = 0 if key in ("retries", "gpus") or kind == "float" else 1
    ok = {"bool": isinstance(value, bool), "int": number and isinstance(value, int) and value >= least,
          "float": number and value >= least, "str": isinstance(value, str) and bool(value),
          "dict": isinstance(value, dict)}[kind]
    if not ok:
        at_least = f" of at least {least}" if kind in ("int", "float") else ""
        raise ConfigError(f"{where}: expected {'a mapping' if kind == 'dict' else kind}{at_least}, got {value!r}")


def resolve(kind: str, spec_block: dict[str, dict[str, Any]] | None, flags: dict[str, Any], where: str):
    """The options of executor `kind`: the spec's values, then the flags given (None = not given)."""
    if kind not in EXECUTORS:
        raise ConfigError(f"bench: --executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    given = {k: v for k, v in flags.items() if v is not None}
    if kind == "local":
        if given:
            raise ConfigError(f"bench: {', '.join(_flag(k) for k in given)}: for --executor ray or slurm, "
                              f"not local (local: --workers N)")
        return None
    cls = OPTIONS[kind]
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    foreign = [k for k in given if k not in hints]
    if foreign:
        other = "slurm" if kind == "ray" else "ray"
        raise ConfigError(f"bench: {', '.join(_flag(k) for k in foreign)}: not an option of --executor {kind} "
                          f"(it is for --executor {other})")
    values = dict((spec_block or {}).get(kind) or {})
    build(kind, values, where)
    for key, value in given.items():
        _check_value(key, value, hints[key], f"bench: {_flag(key)}")
    return cls(**{**values, **given})


FLAGS = {"address": "--address", "local_cpus": "--ray-cpus", "cpus": "--cpus-per-cell", "gpus": "--gpus-per-cell",
         "retries": "--retries", "local": "--slurm-local", "partition": "--partition", "time_min": "--time-min",
         "mem_gb": "--mem-gb", "parallel": "--parallel", "folder": "--slurm-folder"}


def _flag(key: str) -> str:
    return FLAGS.get(key, "--" + key.replace("_", "-"))
