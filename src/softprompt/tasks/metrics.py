"""Task metrics with numpy/scipy, reported in percent (0-100) like the papers' tables.

compute_metrics(task, predictions, labels, groups=None) returns, by task type:
  classification   accuracy, macro_f1, acc_macro_f1
  + two classes    f1 (class 1 = positive), acc_f1 (GLUE's MRPC/QQP score), mcc
  MultiRC          + f1a (F1 over all answer options), em (per-question exact match), f1a_em
  regression       pearson, spearman, pearson_spearman (their mean), mse (not in percent)
and "main", the task's headline score (Task.metric). Text-to-text views score parsed label
indices here too; data-to-text tasks (E2E) are scored by tasks.generation_metrics instead. MRPC/QQP use acc_macro_f1 as main because
the ID-SPAM paper reports "average of accuracy and macro F1-Score" for them; GLUE's own
(accuracy + positive-class F1)/2 is there as acc_f1. CB's main is acc_macro_f1 and MultiRC's is
f1a_em, SuperGLUE's averaging of a task's two metrics.

Conventions: macro-F1 averages over the classes present in labels or predictions (scikit-
learn's default); an undefined F1 / correlation (no positives, constant input) counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from softprompt.errors import ConfigError, DataError
from softprompt.tasks.registry import Task, get_task

ArrayLike = Sequence[float] | Sequence[int] | np.ndarray


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels)) if len(labels) else 0.0


def _confusion(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix [true, predicted] over the sorted union of classes, and those classes."""
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    true_idx, pred_idx = encoded[: len(labels)], encoded[len(labels) :]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (true_idx, pred_idx), 1)
    return matrix, classes


def _f1_per_class(matrix: np.ndarray) -> np.ndarray:
    tp = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def macro_f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    predictions, labels = _pair(predictions, labels)
    if not len(labels):
        return 0.0
    matrix, _ = _confusion(predictions, labels)
    return float(np.mean(_f1_per_class(matrix)))


def binary_f1(predictions: ArrayLike, labels: ArrayLike, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's F1 for MRPC/QQP, MultiRC's F1a)."""
    predictions, labels = _pair(predictions, labels)
    tp = float(np.sum((predictions == positive) & (labels == positive)))
    predicted, actual = float(np.sum(predictions == positive)), float(np.sum(labels == positive))
    return 2 * tp / (predicted + actual) if predicted + actual else 0.0


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation, multi-class form (Gorodkin's R_K), as scikit-learn computes it."""
    predictions, labels = _pair(predictions, labels)
    if not len(labels):
        return 0.0
    matrix = _confusion(predictions, labels)[0].astype(float)
    t_k, p_k = matrix.sum(axis=1), matrix.sum(axis=0)
    c, s = np.trace(matrix), matrix.sum()
    cov_ytyp = c * s - t_k @ p_k
    cov_ypyp = s * s - p_k @ p_k
    cov_ytyt = s * s - t_k @ t_k
    denominator = np.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denominator) if denominator > 0 else 0.0


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    predictions, labels = _pair(predictions, labels, dtype=float)
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    from scipy.stats import pearsonr

    return float(pearsonr(predictions, labels)[0])


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    predictions, labels = _pair(predictions, labels, dtype=float)
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    from scipy.stats import spearmanr

    return float(spearmanr(predictions, labels)[0])


def multirc_exact_match(predictions: ArrayLike, labels: ArrayLike, groups: Sequence[str]) -> float:
    """Share of question groups whose every answer option is predicted correctly."""
    predictions, labels = _pair(predictions, labels)
    if len(groups) != len(labels):
        raise DataError(f"got {len(groups)} groups for {len(labels)} labels; expected one group per example")
    all_right: dict[str, bool] = {}
    for group, correct in zip(groups, (predictions == labels).tolist()):
        all_right[group] = all_right.get(group, True) and correct
    return float(np.mean(list(all_right.values()))) if all_right else 0.0


def compute_metrics(
    task: Task | str,
    predictions: ArrayLike,
    labels: ArrayLike,
    groups: Sequence[str] | None = None,
) -> dict[str, float]:
    """All metrics of the task in percent (mse excepted) plus "main", the headline score, and for
    classification "majority": the headline score of always answering the split's most frequent label."""
    task = get_task(task)
    if task.is_generation and not task.label_names:
        raise ConfigError(
            f"task {task.name!r} has no labels; score its generated text with "
            f"softprompt.tasks.score_predictions (BLEU, ROUGE-L, METEOR, CIDEr)"
        )
    if any(label is None for label in labels):
        raise DataError("labels contain None (an unlabeled split?); expected a gold label for every example")
    out = _all_metrics(task, predictions, labels, groups)
    if not task.is_regression and len(labels):
        out["majority"] = _all_metrics(task, np.full(len(labels), _most_frequent(labels)), labels, groups)[task.metric]
    return out


def _most_frequent(labels: ArrayLike) -> int:
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    return int(values[np.argmax(counts)])


def _all_metrics(task: Task, predictions: ArrayLike, labels: ArrayLike, groups: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if task.is_regression:
        p, y = _pair(predictions, labels, dtype=float)
        out["pearson"] = 100 * pearson(p, y)
        out["spearman"] = 100 * spearman(p, y)
        out["pearson_spearman"] = (out["pearson"] + out["spearman"]) / 2
        out["mse"] = float(np.mean((p - y) ** 2)) if len(y) else 0.0
    else:
        p, y = _pair(predictions, labels)
        out["accuracy"] = 100 * accuracy(p, y)
        out["macro_f1"] = 100 * macro_f1(p, y)
        out["acc_macro_f1"] = (out["accuracy"] + out["macro_f1"]) / 2
        if task.num_labels == 2:
            out["f1"] = 100 * binary_f1(p, y)
            out["acc_f1"] = (out["accuracy"] + out["f1"]) / 2
            out["mcc"] = 100 * matthews_corrcoef(p, y)
        if task.grouped:
            if groups is None:
                raise DataError(f"{task.name} metrics need groups (Example.group per prediction); got none")
            out["f1a"] = 100 * binary_f1(p, y)
            out["em"] = 100 * multirc_exact_match(p, y, groups)
            out["f1a_em"] = (out["f1a"] + out["em"]) / 2
    out["main"] = out[task.metric]
    return out


def _pair(predictions: ArrayLike, labels: ArrayLike, dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1:
        raise DataError(
            f"predictions {p.shape} and labels {y.shape} must be 1-D and the same length; expected one prediction per label"
        )
    if dtype is np.int64:
        for name, values in (("predictions", p), ("labels", y)):
            if values.size and not np.all(np.equal(np.mod(values.astype(float), 1), 0)):
                raise DataError(f"{name} must be class indices (integers) for a classification task")
    return p.astype(dtype), y.astype(dtype)
