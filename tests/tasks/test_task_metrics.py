"""Metrics: hand-computed values, agreement with scikit-learn / scipy on random inputs, task keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from softprompt.errors import ConfigError, DataError
from softprompt.tasks import TASKS, compute_metrics
from softprompt.tasks.metrics import (
    accuracy,
    binary_f1,
    macro_f1,
    matthews_corrcoef,
    multirc_exact_match,
    pearson,
    spearman,
)

PREDS = [1, 0, 1, 1, 0, 1]
GOLD = [1, 0, 0, 1, 1, 1]  # tp 3, tn 1, fp 1, fn 1


def test_hand_computed_binary_metrics():
    assert accuracy(PREDS, GOLD) == pytest.approx(4 / 6)
    assert binary_f1(PREDS, GOLD) == pytest.approx(0.75)  # 2*3 / (2*3 + 1 + 1)
    assert macro_f1(PREDS, GOLD) == pytest.approx((0.75 + 0.5) / 2)  # negative class: 2*1 / (2*1 + 1 + 1)
    assert matthews_corrcoef(PREDS, GOLD) == pytest.approx(0.25)  # (3*1 - 1*1) / sqrt(4*4*2*2)


def test_compute_metrics_mrpc_in_percent():
    scores = compute_metrics("mrpc", PREDS, GOLD)
    assert set(scores) == {"accuracy", "macro_f1", "acc_macro_f1", "f1", "acc_f1", "mcc", "main", "majority"}
    # always answering 1 (4 of 6 gold): accuracy 4/6, F1 0.8 for class 1 and 0 for class 0
    assert scores["majority"] == pytest.approx((200 / 3 + 40) / 2)
    assert scores["accuracy"] == pytest.approx(66.6667, abs=1e-4)
    assert scores["f1"] == pytest.approx(75.0)
    assert scores["acc_f1"] == pytest.approx((200 / 3 + 75) / 2)
    assert scores["acc_macro_f1"] == pytest.approx((200 / 3 + 62.5) / 2)
    assert scores["main"] == scores["acc_macro_f1"]  # ID-SPAM's MRPC/QQP score
    assert compute_metrics("qqp", PREDS, GOLD)["main"] == scores["acc_macro_f1"]


def test_headline_per_task():
    assert compute_metrics("sst2", PREDS, GOLD)["main"] == pytest.approx(200 / 3)
    assert compute_metrics("cola", PREDS, GOLD)["main"] == pytest.approx(25.0)
    assert compute_metrics("cola", PREDS, GOLD)["majority"] == 0.0  # MCC of one class is 0
    assert compute_metrics("sst2", [0, 0, 1], [0, 0, 1])["majority"] == pytest.approx(200 / 3)
    assert "majority" not in compute_metrics("stsb", [0.1, 0.5, 0.9], [1.0, 2.0, 4.0])
    cb = compute_metrics("cb", [0, 1, 2, 2], [0, 1, 2, 1])
    assert cb["accuracy"] == pytest.approx(75.0)
    assert cb["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3 * 100)
    assert cb["main"] == pytest.approx((cb["accuracy"] + cb["macro_f1"]) / 2)
    assert "f1" not in cb and "mcc" not in cb  # three classes


def test_multirc_f1a_and_exact_match():
    groups = ["a", "a", "b", "b", "c"]
    preds, gold = [1, 0, 1, 1, 0], [1, 0, 1, 0, 0]
    assert multirc_exact_match(preds, gold, groups) == pytest.approx(2 / 3)  # a and c fully right
    scores = compute_metrics("multirc", preds, gold, groups)
    assert scores["f1a"] == pytest.approx(80.0)  # tp 2, fp 1, fn 0
    assert scores["em"] == pytest.approx(200 / 3)
    assert scores["main"] == scores["f1a_em"] == pytest.approx((80 + 200 / 3) / 2)
    with pytest.raises(DataError, match="multirc metrics need groups"):
        compute_metrics("multirc", preds, gold)
    with pytest.raises(DataError, match="got 2 groups for 5 labels"):
        multirc_exact_match(preds, gold, ["a", "b"])


def test_stsb_correlations():
    preds, gold = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]
    expected_pearson = 6.5 / math.sqrt(5 * 8.75)
    scores = compute_metrics("stsb", preds, gold)
    assert scores["pearson"] == pytest.approx(100 * expected_pearson)
    assert scores["spearman"] == pytest.approx(100.0)
    assert scores["main"] == scores["pearson_spearman"] == pytest.approx((100 * expected_pearson + 100) / 2)
    assert scores["mse"] == pytest.approx(0.25)
    assert pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0  # constant predictions: undefined -> 0


def test_degenerate_inputs():
    assert binary_f1([0, 0], [0, 0]) == 0.0
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0
    assert accuracy([], []) == 0.0 and macro_f1([], []) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_sklearn_and_scipy_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(5, 300)), int(rng.integers(2, 5))
    preds, gold = rng.integers(0, classes, n), rng.integers(0, classes, n)
    assert accuracy(preds, gold) == pytest.approx(skm.accuracy_score(gold, preds))
    assert macro_f1(preds, gold) == pytest.approx(skm.f1_score(gold, preds, average="macro"))
    assert matthews_corrcoef(preds, gold) == pytest.approx(skm.matthews_corrcoef(gold, preds))
    assert binary_f1(preds, gold) == pytest.approx(
        skm.f1_score(gold, preds, labels=[1], average="macro", zero_division=0)
    )
    x, y = rng.normal(size=n), rng.normal(size=n) + 0.3 * np.arange(n)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


@pytest.mark.parametrize("name", sorted(name for name, task in TASKS.items() if task.label_names or task.is_regression))
def test_every_task_has_a_main_score(name):
    task = TASKS[name]
    if task.is_regression:
        preds, gold = [0.5, 2.0, 4.5], [1.0, 2.5, 4.0]
    else:
        gold = [i % task.num_labels for i in range(12)]
        preds = [(i * 7) % task.num_labels for i in range(12)]
    groups = [f"q{i // 3}" for i in range(len(gold))] if task.grouped else None
    scores = compute_metrics(task, preds, gold, groups)
    assert scores["main"] == scores[task.metric]
    assert all(0.0 <= value <= 100.0 for key, value in scores.items() if key not in ("mse", "mcc", "pearson", "spearman",
                                                                                    "pearson_spearman"))
    assert compute_metrics(task, gold, gold, groups)["main"] == pytest.approx(100.0)


def test_data_to_text_tasks_point_to_the_generation_metrics():
    with pytest.raises(ConfigError, match="task 'e2e' has no labels; score its generated text with"):
        compute_metrics("e2e", [0], [0])


def test_bad_inputs():
    with pytest.raises(DataError, match="must be 1-D and the same length"):
        compute_metrics("sst2", [0, 1], [0, 1, 1])
    with pytest.raises(DataError, match="labels contain None"):
        compute_metrics("sst2", [0, 1], [0, None])
    with pytest.raises(DataError, match="class indices"):
        compute_metrics("sst2", [0.5, 1.0], [0, 1])
