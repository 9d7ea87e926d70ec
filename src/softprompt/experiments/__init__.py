"""Experiment grids: a YAML spec -> cells (method x task x backbone x seed + extras) -> results -> report.

    from softprompt.experiments import load_spec, expand, run_grid
    spec = load_spec("experiments/glue.yaml")
    cells = expand(spec, "quick", data_dir="../shared/data")
    run_grid(spec, "quick", out="runs/bench", data_dir="../shared/data")

`softprompt bench SPEC.yaml` (or `python -m softprompt.experiments.grid SPEC.yaml`) runs a grid
(resumable, one result.json per finished cell); `softprompt report RESULTS_DIR` (or
`python -m softprompt.experiments.report RESULTS_DIR`) turns the results into paper-style
Markdown tables and an index.html with plots.
"""

from importlib import import_module

_EXPORTS = {
    "PROFILES": "spec", "Spec": "spec", "load_spec": "spec", "parse_spec": "spec",
    "Cell": "grid", "expand": "grid", "run_grid": "grid",
    "build_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy, so `python -m softprompt.experiments.grid` imports grid only once
    if name in _EXPORTS:
        return getattr(import_module(f"softprompt.experiments.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'softprompt.experiments' has no attribute {name!r}")
