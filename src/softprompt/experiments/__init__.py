"""Experiment grids: a YAML spec -> cells (method x task x backbone x seed + extras) -> results -> report.

    from softprompt.experiments import load_spec, expand, run_grid
    spec = load_spec("experiments/glue.yaml")
    cells = expand(spec, "medium", data_dir="../shared/data")
    run_grid(spec, "medium", data_dir="../shared/data", workers=2)   # results/medium/glue/cells/*.json

`softprompt bench SPEC.yaml` (or `python -m softprompt.commands.bench SPEC.yaml`) runs a grid
(resumable, one small committed cell file per finished cell, run folders in runs/);
`softprompt report results/<profile>` (or `python -m softprompt.commands.report ...`) turns the
cell files into paper-style Markdown tables and an index.html with plots. This package never
imports softprompt.commands.
"""

from importlib import import_module

_EXPORTS = {
    "PROFILES": "spec", "Spec": "spec", "load_spec": "spec", "parse_spec": "spec",
    "Cell": "grid", "expand": "grid", "run_grid": "grid",
    "build_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy: importing the package loads no submodule
    if name in _EXPORTS:
        return getattr(import_module(f"softprompt.experiments.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'softprompt.experiments' has no attribute {name!r}")
