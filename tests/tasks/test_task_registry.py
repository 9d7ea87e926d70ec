"""Task registry: names, label spaces, splits, lookups."""

from __future__ import annotations

import dataclasses

import pytest

from softprompt.errors import ConfigError
from softprompt.tasks import SPLITS, TASKS, Example, Task, get_task

EXPECTED = {
    "sst2", "cola", "mrpc", "rte", "wnli", "stsb", "qnli", "mnli", "qqp",
    "boolq", "cb", "copa", "multirc", "wic", "superglue-rte", "wsc",
    "imdb", "fpb", "fpb-binary", "tweeteval", "tweeteval-binary",
}
GENERATION = {"sst2-t2t", "imdb-t2t", "fpb-binary-t2t", "tweeteval-binary-t2t", "e2e", "e2e-official"}


def test_registry_has_every_task():
    assert set(TASKS) == EXPECTED | GENERATION
    assert {name for name, task in TASKS.items() if task.kind == "generation"} == GENERATION
    assert all(isinstance(task, Task) and TASKS[name] is task and task.name == name for name, task in TASKS.items())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_declarations_are_consistent(name):
    task = get_task(name)
    assert task.description and task.metric
    assert 1 <= len(task.input_fields) <= 2
    assert len(task.verbalizer) == len(task.label_names)
    assert all(word and " " not in word for word in task.verbalizer)
    assert set(task.offline_splits) <= set(task.splits)
    assert set(task.unlabeled_splits) <= set(task.splits)
    assert set(task.splits) >= {"train", "test"}
    if task.is_regression:
        assert task.label_names == () and task.num_labels == 1
    else:
        assert task.num_labels == len(task.label_names) >= 2


def test_sentiment_views_share_sst2_label_space():
    sst2 = get_task("sst2")
    assert sst2.label_names == ("negative", "positive")
    for name in ("imdb", "fpb-binary", "tweeteval-binary"):
        assert get_task(name).label_names == sst2.label_names
        assert get_task(name).verbalizer == sst2.verbalizer
    for name in ("fpb", "tweeteval"):
        assert get_task(name).label_names == ("negative", "neutral", "positive")
    # binary views map negative -> 0, drop neutral, positive -> 1
    assert get_task("fpb-binary").label_map == (0, None, 1)
    assert get_task("tweeteval-binary").parent == "tweeteval"


def test_headline_metrics():
    metrics = {name: task.metric for name, task in TASKS.items()}
    assert metrics["cola"] == "mcc"
    assert metrics["mrpc"] == metrics["qqp"] == "acc_macro_f1"
    assert metrics["stsb"] == "pearson_spearman"
    assert metrics["multirc"] == "f1a_em"
    assert metrics["sst2"] == metrics["rte"] == metrics["boolq"] == metrics["imdb"] == "accuracy"
    assert get_task("stsb").is_regression and get_task("multirc").grouped


def test_splits_and_aliases():
    assert SPLITS == ("train", "validation", "test")
    sst2 = get_task("sst2")
    assert sst2.check_split("dev") == sst2.check_split("val") == "validation"
    assert get_task("imdb").splits == ("train", "test")
    assert get_task("qnli").offline_splits == ("validation", "test")
    assert get_task("tweeteval").offline_splits == ("validation", "test")
    assert get_task("mnli").offline_splits == () and "validation_mismatched" in get_task("mnli").splits
    with pytest.raises(ConfigError, match=r"task 'imdb' has no split 'validation'; its splits are: train, test"):
        get_task("imdb").check_split("validation")


def test_unknown_task_lists_known_names():
    with pytest.raises(ConfigError) as err:
        get_task("sst-5")
    message = str(err.value)
    assert "unknown task 'sst-5'" in message
    assert all(name in message for name in EXPECTED)


def test_lookup_is_case_insensitive_and_task_passes_through():
    task = get_task("SST2")
    assert task is TASKS["sst2"] and get_task(task) is task


def test_fpb_agreement_option():
    assert get_task("fpb").agreement == "all"
    for value, expected in [(50, "50"), ("66", "66"), ("75Agree", "75"), ("All", "all"), ("allagree", "all")]:
        task = get_task("fpb-binary", agreement=value)
        assert task.agreement == expected and task.name == "fpb-binary"
    assert TASKS["fpb"].agreement == "all"  # the registry entry is untouched
    with pytest.raises(ConfigError, match="agreement must be one of 50, 66, 75, all"):
        get_task("fpb", agreement="90")
    with pytest.raises(ConfigError, match="fpb tasks only"):
        get_task("sst2", agreement="50")


def test_task_and_example_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["sst2"].metric = "mcc"  # type: ignore[misc]
    example = Example("a", None, 1, None, "x:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.label = 0  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(Example)] == [
        "text", "text_pair", "label", "group", "uid", "target", "references"]
    assert (example.target, example.references) == (None, ())


def test_kinds():
    assert {TASKS[name].kind for name in EXPECTED - {"stsb"}} == {"classification"}
    assert get_task("stsb").kind == "regression"
    with pytest.raises(ConfigError, match="kind must be one of classification, regression, generation"):
        dataclasses.replace(TASKS["sst2"], kind="ranking")
    with pytest.raises(ConfigError, match="is_regression=True contradicts kind 'classification'"):
        dataclasses.replace(TASKS["stsb"], kind="classification")
