"""Experiment specs: one YAML file declares a grid of runs and how its table is read.

    name: glue                      # results go to RESULTS_DIR/<name>/ (default: file stem)
    title: GLUE dev results ...     # table heading
    reference: ID-SPAM Table 2      # the published table it mirrors (text)
    methods: [prompt-tuning, id-spam, {label: mean-pooling, name: id-spam, producer: {pooling: mean}}]
    # a method entry with `sweep:` is one method per combination of producer values (in the order given),
    # labelled <label>-<value>... (num_tokens as t<n>): prompt-tuning-random-t1, prompt-tuning-random-t5, ...
    #   - {name: prompt-tuning, producer: {init_text: "..."}, sweep: {init: [random, text], num_tokens: [1, 5]}}
    # method_overrides may name the entry's own label for all of them; the report plots score against
    # the first integer-valued field (num_tokens: score vs prompt length), one line per other values
    tasks: [sst2, mrpc]             # training tasks (hub-only ones are skipped offline, with the reason)
    backbones: [minilm-l6]
    seeds: [0, 1, 2]
    metric: {mrpc: acc_macro_f1}    # per task (or one name for all); default: the task's headline metric
    train: {max_length: 128}        # TrainConfig keys shared by every training cell
    task_overrides: {boolq: {max_length: 256}}
    method_overrides: {full-finetune: {batch_size: 16}}
    profiles:                       # merged over the built-in PROFILES below
      quick: {train: {train_limit: 1000}, seeds: [0]}
    # extras (any combination):
    eval_tasks: [{task: imdb, split: test, limit: 1000, max_length: 512}]  # cross-domain: every trained
                                                           # run on each (max_length: tokens read, capped
                                                           # by the positions the prompt leaves)
    zero_shot: {backbone: smollm2-135m}                    # instruction baseline on the eval tasks
                                                           # (generation tasks: generated answers; optional
                                                           # instruction: "... {input}", max_new_tokens)
    layers: all                                            # sweep the prompt layer m (or a list)
    pairs: [{train: sst2, eval: imdb, split: test}]        # zero-shot transfer A -> B (same label space,
                                                           # or same_labels: true as for MRPC <-> QQP)
    few_shot: {examples: 100, pairs: [{train: sst2, eval: imdb, split: test}], train: {epochs: 10},
               methods: [lpt, id-spam],                # default: all methods
               sources: {attempt: prompt-tuning}}      # few-shot only: starts from prompt-tuning's run on A
                                                       # (its adapter folder wherever the method says
                                                       # "{source}", e.g. producer: {sources: ["{source}"]})
    params: {backbones: [minilm-l6, mpnet-base]}           # trainable parameters per method (parameter_table)
    timing: true                                           # also time inference per sample
    published: [{title: ..., columns: [...], rows: {method: [values]}}]  # paper numbers, shown as is
    versus: [[prefix-tuning, peft-prefix-tuning]]          # seed-paired differences a - b in the report
    executors: {slurm: {partition: gpu, time_min: 240, gpus: 1}, ray: {cpus: 2}}  # bench --executor
                                                           # ray/slurm options per cell (executor_options.py)

Method entries with `peft:` are baselines trained by the peft library (experiments/peft_baseline.py,
generation tasks on decoders): {label: peft-prompt-tuning, peft: {peft_type: PROMPT_TUNING,
num_virtual_tokens: 10, prompt_tuning_init: TEXT, prompt_tuning_init_text: ...}}.

Every field is checked when the spec is loaded; an error names the field (e.g. `methods[2]`).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softprompt.config import load_yaml
from softprompt.errors import ConfigError
from softprompt.experiments.executor_options import check_block

# built-in profiles; a spec's `profiles:` block is merged over these
PROFILES: dict[str, dict[str, Any]] = {
    # minutes on a laptop CPU with minilm-l6: subsampled data, one seed, few epochs
    "quick": {
        "seeds": [0],
        "train": {"train_limit": 1000, "eval_limit": 500, "epochs": 2},
        "eval_limit": 500,
        "few_shot": {"train": {"epochs": 5}},
    },
    # hours on a 2-core CPU with `--workers 2` (one thread each): up to 4,000 training examples, 3 seeds,
    # up to 6 epochs with early stopping once the selection score has not improved for 2 evaluations
    # (counted only after its first gain: a run still at its first score keeps its epochs).
    # Specs size it further per task (experiments/*.yaml name their estimated wall time).
    "medium": {
        "seeds": [0, 1, 2],
        "train": {"train_limit": 4000, "eval_limit": 1000, "epochs": 6, "patience": 2},
        "eval_limit": 1000,
        "few_shot": {"train": {"epochs": 10}},
    },
    # the papers' protocol: all data, seeds 0,1,2, up to 30 epochs (t = 10 is the presets' default)
    "full": {
        "seeds": [0, 1, 2],
        "train": {"train_limit": None, "eval_limit": None, "epochs": 30, "patience": 5},
        "eval_limit": None,
        "few_shot": {"train": {"epochs": 20}},
    },
}

TOP_LEVEL = (
    "name", "title", "description", "reference", "methods", "tasks", "backbones", "seeds", "metric", "train",
    "task_overrides", "method_overrides", "profiles", "eval_tasks", "zero_shot", "layers", "pairs", "few_shot",
    "params", "timing", "published", "eval_limit", "versus", "executors",
)
PROFILE_KEYS = ("seeds", "backbones", "tasks", "train", "task_overrides", "method_overrides", "eval_limit", "layers",
                "few_shot", "params", "eval_tasks", "pairs", "executors")
SOURCE = "{source}"  # in a few-shot method's config: the adapter folder of its `few_shot.sources` run on A
# TrainConfig keys a cell sets itself
CELL_OWNED = ("backbone", "task", "method", "seed", "output_dir", "data_dir")
BAD_METRICS = ("mse", "main")  # lower-is-better / alias; tables assume higher is better
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass
class MethodEntry:
    label: str  # row name in tables, part of cell ids
    config: dict[str, Any]  # method dict for method_config / TrainConfig.method
    soft_prompt: bool  # eligible for bold (the paper bolds the best soft-prompt method)
    backbone_mode: str  # "frozen" | "lora" | "full"
    peft: dict[str, Any] | None = None  # a peft-library baseline (config: {"peft": ...})
    sweep: dict[str, Any] | None = None  # from a `sweep:` entry: {"of": its label, "values": {field: value}}


@dataclass
class EvalTarget:
    task: str
    split: str | None = None  # None: validation where labeled, else test
    limit: int | None = None
    max_length: int | None = None  # tokens read per example (None: the trained run's max_length)


@dataclass
class Pair:
    train: str
    eval: str
    split: str | None = None
    same_labels: bool = False  # label index i means the same in both tasks (names may differ: MRPC/QQP)


@dataclass
class Spec:
    name: str
    title: str
    methods: list[MethodEntry]
    tasks: list[str]
    backbones: list[str]
    seeds: list[int]
    description: str = ""
    reference: str = ""
    metric: dict[str, str] = field(default_factory=dict)  # task -> metric ("*" -> default for all)
    train: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_tasks: list[EvalTarget] = field(default_factory=list)
    eval_limit: int | None = None
    zero_shot: dict[str, Any] | None = None
    layers: str | list[int] | None = None
    pairs: list[Pair] = field(default_factory=list)
    few_shot: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    timing: bool = False
    published: list[dict[str, Any]] = field(default_factory=list)
    versus: list[list[str]] = field(default_factory=list)  # [a, b]: seed-paired differences a - b
    executors: dict[str, dict[str, Any]] = field(default_factory=dict)  # bench --executor ray/slurm options
    path: str | None = None
    profile: str | None = None  # set by for_profile
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def metric_for(self, task: str) -> str:
        from softprompt.tasks import get_task

        return self.metric.get(task) or self.metric.get("*") or get_task(task).metric

    def method(self, label: str) -> MethodEntry:
        return next(m for m in self.methods if m.label == label)

    def for_profile(self, profile: str) -> "Spec":
        """This spec with a profile (built-in defaults, then the spec's own block) merged in."""
        if profile not in PROFILES and profile not in self.profiles:
            raise ConfigError(f"spec {self.name}: unknown profile {profile!r}; expected one of "
                              f"{', '.join(sorted(set(PROFILES) | set(self.profiles)))}")
        over = _merge(PROFILES.get(profile, {}), self.profiles.get(profile) or {})
        raw = copy.deepcopy(self.raw)
        for key, value in over.items():
            if key in ("train", "task_overrides", "method_overrides", "few_shot", "params", "executors") \
                    and isinstance(value, dict):
                raw[key] = _merge(raw.get(key) or {}, value) if (key != "few_shot" or raw.get("few_shot")) else None
            else:
                raw[key] = copy.deepcopy(value)
        raw.pop("profiles", None)
        spec = parse_spec(raw, self.path, where=f"spec {self.name} (profile {profile})")
        spec.profiles, spec.profile, spec.raw = self.profiles, profile, raw
        return spec


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file (see the module docstring for the fields)."""
    path = Path(path)
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return parse_spec(data, str(path))


def _list(data: dict, key: str, where: str, required: bool = False) -> list:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: field {key!r} is required")
        return []
    if not isinstance(value, list):
        value = [value]
    return value


def _task(name: Any, where: str) -> str:
    from softprompt.tasks import get_task

    try:
        return get_task(str(name)).name
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_train_keys(values: Any, where: str) -> dict:
    from softprompt.train.config import TrainConfig

    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of training config keys")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown training config key(s) {', '.join(unknown)}")
    owned = sorted(set(values) & set(CELL_OWNED))
    if owned:
        raise ConfigError(f"{where}: {', '.join(owned)} is set per cell by the grid; use the spec's "
                          f"methods/tasks/backbones/seeds fields instead")
    return dict(values)


def _method(entry: Any, where: str) -> MethodEntry:
    from softprompt.methods import method_config

    if isinstance(entry, str):
        data = {"name": entry}
    elif isinstance(entry, dict):
        data = dict(entry)
    else:
        raise ConfigError(f"{where}: expected a method name or a mapping, got {entry!r}")
    label = str(data.pop("label", None) or data.get("name") or "")
    if not label:
        raise ConfigError(f"{where}: a custom method needs a 'label'")
    if not NAME_RE.match(label):
        raise ConfigError(f"{where}: label {label!r} must be lowercase letters, digits, '-', '_' or '.'")
    if "peft" in data:
        from softprompt.experiments.peft_baseline import peft_config

        extra = sorted(set(data) - {"peft"})
        if extra:
            raise ConfigError(f"{where}: a peft baseline takes only 'label' and 'peft', not {', '.join(extra)}")
        peft_config(data["peft"], f"{where}.peft")
        values = dict(data["peft"])
        values["peft_type"] = str(values["peft_type"]).upper()
        return MethodEntry(label, {"peft": values}, False, "frozen", values)
    try:
        cfg = method_config(data)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    if cfg.zero_shot:
        raise ConfigError(f"{where}: {label!r} is not trained; use the spec field 'zero_shot: {{backbone: ...}}'")
    return MethodEntry(label, data, cfg.producer is not None, cfg.backbone)


def _backbone(name: Any, where: str) -> str:
    from softprompt.backbones.registry import REGISTRY

    name = str(name)
    if name not in REGISTRY and not Path(name).expanduser().exists():
        raise ConfigError(f"{where}: unknown backbone {name!r}; expected one of {', '.join(REGISTRY)} or a local path")
    return name


def _split(task: str, split: Any, where: str) -> str | None:
    from softprompt.tasks import get_task

    if split is None:
        return None
    try:
        return get_task(task).check_split(str(split))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return value


def _eval_target(entry: Any, where: str) -> EvalTarget:
    if isinstance(entry, str):
        entry = {"task": entry}
    entry = _mapping(entry, where)
    unknown = sorted(set(entry) - {"task", "split", "limit", "max_length"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected task, split, limit, max_length")
    if "task" not in entry:
        raise ConfigError(f"{where}: field 'task' is required")
    task = _task(entry["task"], f"{where}.task")
    for key in ("limit", "max_length"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{where}.{key}: expected a positive integer, got {value!r}")
    return EvalTarget(task, _split(task, entry.get("split"), f"{where}.split"), entry.get("limit"),
                      entry.get("max_length"))


def _pair(entry: Any, where: str) -> Pair:
    entry = _mapping(entry, where)
    unknown = sorted(set(entry) - {"train", "eval", "split", "same_labels"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected train, eval, split, same_labels")
    for key in ("train", "eval"):
        if key not in entry:
            raise ConfigError(f"{where}: field {key!r} is required")
    a, b = _task(entry["train"], f"{where}.train"), _task(entry["eval"], f"{where}.eval")
    return Pair(a, b, _split(b, entry.get("split"), f"{where}.split"), bool(entry.get("same_labels", False)))


def _check_label_spaces(pair: Pair, where: str) -> None:
    """A trained adapter is scored on B as is: B needs A's labels (or same_labels: true and as many)."""
    from softprompt.tasks import get_task

    a, b = get_task(pair.train), get_task(pair.eval)
    if a.is_regression or b.is_regression or a.num_labels != b.num_labels:
        raise ConfigError(f"{where}: {a.name} ({a.num_labels} labels) and {b.name} ({b.num_labels} labels) do not "
                          f"share a label space; zero-shot transfer needs the same labels")
    if list(a.label_names) != list(b.label_names) and not pair.same_labels:
        raise ConfigError(f"{where}: {a.name} labels {list(a.label_names)} differ from {b.name} labels "
                          f"{list(b.label_names)}; set same_labels: true if label i means the same in both")


def _check_generation(methods, tasks, eval_tasks, zero_shot, layers, where: str) -> None:
    """Generation and classification do not mix in one evaluation; peft baselines train generation tasks."""
    from softprompt.tasks import get_task

    gen = {t for t in tasks if get_task(t).is_generation}
    if gen and len(gen) != len(tasks):
        raise ConfigError(f"{where}: tasks: {', '.join(sorted(gen))} are generation tasks and "
                          f"{', '.join(t for t in tasks if t not in gen)} are not; use one kind per spec")
    for i, e in enumerate(eval_tasks):
        if tasks and get_task(e.task).is_generation != bool(gen):
            kind = "generation" if get_task(e.task).is_generation else "classification"
            raise ConfigError(f"{where}: eval_tasks[{i}]: {e.task} is a {kind} task but the training tasks are "
                              f"{'generation' if gen else 'classification'} tasks: an adapter is scored the way it "
                              f"was trained (generation tasks: the '-t2t' views)")
    peft = [m.label for m in methods if m.peft is not None]
    if peft and not gen and tasks:
        raise ConfigError(f"{where}: methods {', '.join(peft)} (peft baselines) train generation tasks (causal LM); "
                          f"{', '.join(tasks)} are classification tasks")
    if peft and layers is not None:
        raise ConfigError(f"{where}: layers: a layer sweep cannot include the peft baselines {', '.join(peft)}")
    for i, t in enumerate((zero_shot or {}).get("tasks") or []):
        if not get_task(t.task).is_generation and any(zero_shot.get(k) is not None for k in ("instruction", "max_new_tokens")):
            raise ConfigError(f"{where}: zero_shot.tasks[{i}]: {t.task} is scored by label words; instruction and "
                              f"max_new_tokens apply to generation tasks only")


def _ints(values: Any, where: str) -> list[int]:
    values = values if isinstance(values, list) else [values]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}: expected a list of integers, got {values!r}")
    return list(values)


def parse_spec(data: dict[str, Any], path: str | None = None, where: str | None = None) -> Spec:
    """Check a spec mapping and build a Spec; ConfigError names the offending field."""
    from softprompt.tasks import get_task

    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'spec'}: expected a mapping at the top level")
    name = str(data.get("name") or "")
    where = where or f"spec {name or path or '?'}"
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected one of {', '.join(TOP_LEVEL)}")
    if not NAME_RE.match(name):
        raise ConfigError(f"{where}: field 'name' must be lowercase letters, digits, '-', '_' or '.', got {name!r}")

    methods = _methods(data, where)
    labels = [m.label for m in methods]
    tasks = [_task(t, f"{where}: tasks[{i}]") for i, t in enumerate(_list(data, "tasks", where))]
    backbones = [_backbone(b, f"{where}: backbones[{i}]") for i, b in enumerate(_list(data, "backbones", where))]
    seeds = _ints(data.get("seeds", [0]), f"{where}: seeds")
    metric = _metric(data, where)
    swept = {}  # a sweep entry's own label -> its methods' labels
    for m in methods:
        if m.sweep:
            swept.setdefault(m.sweep["of"], []).append(m.label)
    train, task_overrides, method_overrides, profiles = _training_blocks(data, labels, where, swept)
    eval_tasks = [_eval_target(e, f"{where}: eval_tasks[{i}]") for i, e in enumerate(_list(data, "eval_tasks", where))]
    zero_shot = _zero_shot(data.get("zero_shot"), eval_tasks, where)
    layers = _layers(data.get("layers"), methods, where)
    _check_generation(methods, tasks, eval_tasks, zero_shot, layers, where)
    pairs = [_pair(p, f"{where}: pairs[{i}]") for i, p in enumerate(_list(data, "pairs", where))]
    for i, p in enumerate(pairs):
        _check_label_spaces(p, f"{where}: pairs[{i}]")
    few_shot = _few_shot(data.get("few_shot"), labels, where)
    params = _params(data.get("params"), methods, backbones, where)
    published = _published(data, where)
    versus = _versus(data, labels, where)
    _check_something_runs(methods, tasks, pairs, eval_tasks, few_shot, zero_shot, params, backbones, where)
    for t in tasks:
        get_task(t)
    return Spec(
        name=name, title=str(data.get("title") or name), methods=methods, tasks=tasks, backbones=backbones,
        seeds=seeds, description=str(data.get("description") or ""), reference=str(data.get("reference") or ""),
        metric=metric, train=train, task_overrides=task_overrides, method_overrides=method_overrides,
        profiles=profiles, eval_tasks=eval_tasks, eval_limit=data.get("eval_limit"), zero_shot=zero_shot,
        layers=layers, pairs=pairs, few_shot=few_shot, params=params, timing=bool(data.get("timing", False)),
        published=published, versus=versus, path=path, raw=copy.deepcopy(data),
        executors=check_block(data.get("executors"), f"{where}: executors"),
    )


def _methods(data: dict, where: str) -> list:
    methods = [e for i, m in enumerate(_list(data, "methods", where)) for e in _swept(m, f"{where}: methods[{i}]")]
    labels = [m.label for m in methods]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"{where}: methods: label(s) {', '.join(dup)} appear twice; give each a distinct 'label'")
    return methods


def _swept(entry: Any, where: str) -> list[MethodEntry]:
    """A method entry, or with `sweep: {producer field: [values]}` one entry per combination of the values."""
    if not (isinstance(entry, dict) and "sweep" in entry):
        return [_method(entry, where)]
    data = dict(entry)
    sweep = _mapping(data.pop("sweep"), f"{where}.sweep")
    if not sweep or "peft" in data:
        raise ConfigError(f"{where}.sweep: expected a mapping of producer fields to lists of values "
                          f"(not with a peft baseline)")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values or not all(isinstance(v, (str, int, float)) for v in values):
            raise ConfigError(f"{where}.sweep.{key}: expected a non-empty list of values, got {values!r}")
    base = str(data.get("label") or data.get("name") or "")
    out = []
    for combo in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combo))
        one = copy.deepcopy(data)
        one["producer"] = {**_mapping(one.get("producer"), f"{where}.producer"), **values}
        one["label"] = "-".join([base] + [_sweep_part(k, v) for k, v in values.items()])
        m = _method(one, f"{where} ({', '.join(f'{k}={v}' for k, v in values.items())})")
        m.sweep = {"of": base, "values": values}
        out.append(m)
    return out


def _sweep_part(key: str, value: Any) -> str:
    if key == "num_tokens":
        return f"t{value}"
    text = re.sub(r"[^a-z0-9.]+", "-", str(value).lower()).strip("-")
    return text if isinstance(value, str) else f"{re.sub(r'[^a-z0-9]+', '-', key.lower())}{text}"


def _metric(data: dict, where: str) -> dict:
    metric_raw = data.get("metric") or {}
    metric = {"*": metric_raw} if isinstance(metric_raw, str) else dict(_mapping(metric_raw, f"{where}: metric"))
    for task, m in metric.items():
        if task != "*":
            _task(task, f"{where}: metric.{task}")
        if not isinstance(m, str) or m in BAD_METRICS:
            raise ConfigError(f"{where}: metric.{task}: expected a higher-is-better metric name, got {m!r}")
    return metric


def _training_blocks(data: dict, labels: list[str], where: str, swept: dict[str, list[str]] | None = None):
    """train, task_overrides, method_overrides and profiles, each checked against the training keys
    (method_overrides of a sweep entry's own label apply to each of its methods)."""
    swept = swept or {}
    train = _check_train_keys(data.get("train"), f"{where}: train")
    task_overrides = {}
    for task, values in _mapping(data.get("task_overrides"), f"{where}: task_overrides").items():
        task_overrides[_task(task, f"{where}: task_overrides.{task}")] = _check_train_keys(
            values, f"{where}: task_overrides.{task}")
    method_overrides = {}
    for label, values in _mapping(data.get("method_overrides"), f"{where}: method_overrides").items():
        if label not in labels and label not in swept:
            raise ConfigError(f"{where}: method_overrides.{label}: not one of the spec's methods "
                              f"({', '.join(labels + list(swept))})")
        for one in swept.get(label, [label]):
            method_overrides[one] = {**method_overrides.get(one, {}),
                                     **_check_train_keys(values, f"{where}: method_overrides.{label}")}
    profiles = _mapping(data.get("profiles"), f"{where}: profiles")
    for pname, block in profiles.items():
        block = _mapping(block, f"{where}: profiles.{pname}")
        bad = sorted(set(block) - set(PROFILE_KEYS))
        if bad:
            raise ConfigError(f"{where}: profiles.{pname}: unknown field(s) {', '.join(bad)}; "
                              f"expected one of {', '.join(PROFILE_KEYS)}")
        _check_train_keys(block.get("train"), f"{where}: profiles.{pname}.train")
    return train, task_overrides, method_overrides, profiles


def _zero_shot(zero_shot, eval_tasks: list, where: str) -> dict | None:
    if zero_shot is None:
        return None
    zero_shot = dict(_mapping(zero_shot, f"{where}: zero_shot"))
    bad = sorted(set(zero_shot) - {"backbone", "tasks", "max_length", "instruction", "max_new_tokens"})
    if bad:
        raise ConfigError(f"{where}: zero_shot: unknown field(s) {', '.join(bad)}; expected backbone, tasks, "
                          f"max_length, instruction, max_new_tokens")
    if zero_shot.get("instruction") is not None and "{input}" not in str(zero_shot["instruction"]):
        raise ConfigError(f"{where}: zero_shot.instruction: expected a template with {{input}} (the example's "
                          f"input), got {zero_shot['instruction']!r}")
    mnt = zero_shot.get("max_new_tokens")
    if mnt is not None and (not isinstance(mnt, int) or isinstance(mnt, bool) or mnt < 1):
        raise ConfigError(f"{where}: zero_shot.max_new_tokens: expected a positive integer, got {mnt!r}")
    zero_shot["backbone"] = _backbone(zero_shot.get("backbone", "smollm2-135m"), f"{where}: zero_shot.backbone")
    zero_shot["tasks"] = [_eval_target(e, f"{where}: zero_shot.tasks[{i}]")
                          for i, e in enumerate(zero_shot.get("tasks") or [])] or list(eval_tasks)
    if not zero_shot["tasks"]:
        raise ConfigError(f"{where}: zero_shot: needs 'tasks' (or the spec's eval_tasks)")
    return zero_shot


def _layers(layers, methods: list, where: str):
    if layers is not None and layers != "all":
        layers = _ints(layers, f"{where}: layers")
        if any(m < 0 for m in layers):
            raise ConfigError(f"{where}: layers: expected layer indices >= 0, got {layers}")
    if layers is not None:
        not_layer = [m.label for m in methods if m.peft is None
                     and (m.config.get("site") or {}).get("kind", _preset_site(m.config)) != "layer"]
        if not_layer:
            raise ConfigError(f"{where}: layers: a layer sweep needs methods with site 'layer' (id-spam, lpt); "
                              f"{', '.join(not_layer)} put their prompt elsewhere")
    return layers


def _few_shot(few_shot, labels: list[str], where: str) -> dict | None:
    if few_shot is None:
        return None
    few_shot = dict(_mapping(few_shot, f"{where}: few_shot"))
    bad = sorted(set(few_shot) - {"examples", "pairs", "train", "methods", "sources"})
    if bad:
        raise ConfigError(f"{where}: few_shot: unknown field(s) {', '.join(bad)}; "
                          f"expected examples, pairs, train, methods, sources")
    few_shot["methods"] = [str(m) for m in (few_shot.get("methods") or labels)]
    for i, m in enumerate(few_shot["methods"]):
        if m not in labels:
            raise ConfigError(f"{where}: few_shot.methods[{i}]: {m!r} is not one of the spec's methods "
                              f"({', '.join(labels)})")
    # label -> the method whose run on A it starts from (SPoT, ATTEMPT, MPT: prompts trained on a source task);
    # such a method is not trained on its own
    sources = {str(k): str(v) for k, v in _mapping(few_shot.get("sources"), f"{where}: few_shot.sources").items()}
    for label, source in sources.items():
        if label not in few_shot["methods"]:
            raise ConfigError(f"{where}: few_shot.sources.{label}: not one of few_shot.methods "
                              f"({', '.join(few_shot['methods'])})")
        if source not in labels or source in sources:
            raise ConfigError(f"{where}: few_shot.sources.{label}: {source!r} must be one of the spec's methods that "
                              f"is trained on its own ({', '.join(m for m in labels if m not in sources)})")
    few_shot["sources"] = sources
    few_shot["examples"] = _ints(few_shot.get("examples", 100), f"{where}: few_shot.examples")[0]
    few_shot["pairs"] = [_pair(p, f"{where}: few_shot.pairs[{i}]") for i, p in enumerate(few_shot.get("pairs") or [])]
    few_shot["train"] = _check_train_keys(few_shot.get("train"), f"{where}: few_shot.train")
    if "train_limit" in few_shot["train"]:
        raise ConfigError(f"{where}: few_shot.train.train_limit: use few_shot.examples")
    return few_shot


def _params(params, methods: list, backbones: list[str], where: str) -> dict | None:
    from softprompt.methods.presets import PRESETS

    if params is None:
        return None
    params = dict(_mapping(params, f"{where}: params"))
    bad = sorted(set(params) - {"backbones", "methods", "num_labels"})
    if bad:
        raise ConfigError(f"{where}: params: unknown field(s) {', '.join(bad)}; expected backbones, methods, num_labels")
    params["backbones"] = [_backbone(b, f"{where}: params.backbones[{i}]")
                           for i, b in enumerate(params.get("backbones") or backbones)]
    params["methods"] = list(params.get("methods") or [m.config["name"] for m in methods
                                                         if m.peft is None and m.config.get("name")])
    for i, m in enumerate(params["methods"]):
        if m not in PRESETS or PRESETS[m].get("zero_shot"):
            raise ConfigError(f"{where}: params.methods[{i}]: unknown method {m!r}; expected a trainable preset "
                              f"({', '.join(k for k, v in PRESETS.items() if not v.get('zero_shot'))})")
    params["num_labels"] = int(params.get("num_labels", 2))
    return params


def _published(data: dict, where: str) -> list:
    published = _list(data, "published", where)
    for i, table in enumerate(published):
        table = _mapping(table, f"{where}: published[{i}]")
        if not isinstance(table.get("columns"), list) or not isinstance(table.get("rows"), dict):
            raise ConfigError(f"{where}: published[{i}]: expected 'columns' (a list) and 'rows' (method: [values])")
    return published


def _versus(data: dict, labels: list[str], where: str) -> list[list[str]]:
    versus = _list(data, "versus", where)
    for i, pair in enumerate(versus):
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in labels for p in pair) and pair[0] != pair[1]):
            raise ConfigError(f"{where}: versus[{i}]: expected two different method labels [a, b] of this spec "
                              f"({', '.join(labels)}), got {pair!r}")
    return [list(p) for p in versus]


def _check_something_runs(methods, tasks, pairs, eval_tasks, few_shot, zero_shot, params, backbones, where) -> None:
    trains_something = bool(methods and (tasks or pairs or (few_shot or {}).get("pairs")))
    if not (trains_something or zero_shot or params):
        raise ConfigError(f"{where}: nothing to run: give methods and tasks (or pairs), zero_shot or params")
    if (tasks or pairs or eval_tasks or few_shot) and not methods:
        raise ConfigError(f"{where}: field 'methods' is required when tasks, pairs or eval_tasks are given")
    if methods and (tasks or pairs) and not backbones:
        raise ConfigError(f"{where}: field 'backbones' is required")


def _preset_site(config: dict) -> str:
    from softprompt.methods.presets import PRESETS

    preset = PRESETS.get(config.get("name", "custom")) or {}
    return (preset.get("site") or {}).get("kind", "embeddings")
