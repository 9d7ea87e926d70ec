"""Turn a grid's cell files (RESULTS_DIR/<spec>/cells/<cell>.json) into paper-style tables and plots.

`softprompt report results/medium` needs only the committed cell files (and manifest.json, when
present, for titles and published numbers); learning curves come from the cell files too. Folders of
the old layout (RESULTS_DIR/<spec>/<cell>/result.json) are read as well.

Per spec: `<spec>.md` with
* the main table (methods as rows, tasks as columns, mean ± std over seeds as `84.8 ± 0.4`, a
  Mean column, the best soft-prompt method per column in bold, as in ID-SPAM Table 2),
  one per backbone;
* generation tasks: data-to-text (E2E) methods x BLEU / ROUGE-L / METEOR / CIDEr (peft baselines
  and the zero-shot instruction model as rows); text-to-text views: the unparseable answers;
* extras when present: cross-domain / transfer evaluations (with the zero-shot baseline as a
  row), few-shot transfer, the layer sweep (score per prompt layer m), trainable parameters,
  train / inference time per sample and time to the best validation score;
* the published numbers the spec quotes, skipped cells with their reason, failures;
* provenance: the bench command(s), git commit, machine (platform, cores), backbones, profile.

Plus `index.html` (every spec, with matplotlib PNGs: layer sweep lines, learning curves from
metrics.jsonl, score vs trainable parameters), `README.md` (all specs' Markdown) and
`results.csv` (one row per finished cell).

Modules: results (reading cell files), table (Row, Table), tables and evaluations (a spec's tables),
floors (cells that did not learn, and why), plots, provenance, build (writing the folder).
"""

from softprompt.experiments.report.build import build_report
from softprompt.experiments.report.results import SpecResults, find_specs, read_spec_dir
from softprompt.experiments.report.table import Row, Table
from softprompt.experiments.report.tables import spec_tables

__all__ = ["Row", "SpecResults", "Table", "build_report", "find_specs", "read_spec_dir", "spec_tables"]
