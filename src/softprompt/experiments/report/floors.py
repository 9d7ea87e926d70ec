"""Cells that did not learn, each with why: one class for every example, at the majority-class floor, or a
regression with no correlation to speak of; the reason is read from the cell's own curves."""

from __future__ import annotations

import math

from softprompt.experiments.report.results import SpecResults


def constant_predictions(sr: SpecResults, floor: list[dict]) -> list[str]:
    """Cells of binary tasks whose predictions were (almost surely) a single class, except the `floor` cells
    (`floor_cells`), which `at_floor` lists with their curves."""
    at = {id(r) for r in floor}
    return [r.get("cell") for r in sr.results if one_class(r) and "f1" in r["scores"] and id(r) not in at]


def one_class(r: dict) -> bool:
    """A binary cell whose MCC is exactly 0: it answered one class for every example."""
    return (r.get("scores") or {}).get("mcc") == 0.0


FLOOR_MARGIN = 0.5  # points above the majority-class score still counted as "at the floor"


def floor_cells(sr: SpecResults) -> list[dict]:
    """Trained cells scoring at most FLOOR_MARGIN above the majority-class score of their split (recorded in
    the task's headline metric, so cells scored in another metric are not compared with it)."""
    return [r for r in sr.results
            if trained(r) and "majority" in (r.get("scores") or {}) and _scored_in_headline_metric(r)
            and r["score"] <= r["scores"]["majority"] + FLOOR_MARGIN]


CORRELATIONS = ("pearson", "spearman", "pearson_spearman")


def uncorrelated_cells(sr: SpecResults) -> list[str]:
    """Trained regression cells whose correlation lies within the 95% band of zero for their number of examples
    (±1.96/√n, in points): a constant prediction's floor, which a regression has instead of a majority class."""
    out = []
    for r in sr.results:
        n, score = r.get("examples"), r.get("score")
        if trained(r) and r.get("metric") in CORRELATIONS and isinstance(n, int) and n > 0:
            band = 196 / math.sqrt(n)
            if abs(score) <= band:
                out.append(f"- `{r.get('cell')}`: {score:.1f} on {n} examples (the band is ±{band:.1f}); "
                           f"{floor_reason(r)}")
    return out


def trained(r: dict) -> bool:
    """A training cell (ours or peft's) with a numeric score."""
    return r.get("kind") in ("train", "peft") and isinstance(r.get("score"), (int, float))


def _scored_in_headline_metric(r: dict) -> bool:
    from softprompt.errors import ConfigError
    from softprompt.tasks import get_task

    try:
        return r.get("metric") in (None, get_task(r.get("task", "")).metric)
    except ConfigError:  # a task this install does not know: its metric cannot be checked
        return False


def at_floor(floor: list[dict]) -> list[str]:
    """The floor cells (`floor_cells`), each with what its curves say."""
    return [f"- `{r.get('cell')}`: {r['score']:.1f} vs {r['scores']['majority']:.1f} for always answering the most "
            f"frequent label; {floor_reason(r)}" for r in floor]


def floor_reason(r: dict) -> str:
    """Why a cell stayed at the floor, read from its selection and loss curves."""
    curve = r.get("curve") or {}
    evals = [v for _, v in curve.get("eval") or []]
    losses = [v for _, v in curve.get("loss") or []]
    parts = []
    if one_class(r):
        parts.append("it predicts one class for every example")
    if evals:
        where = f"{len(evals)} evaluation(s) over {r.get('epochs_run', '?')} epoch(s)"
        if max(evals) <= evals[0]:
            parts.append(f"the selection score never rose above its first value ({evals[0]:.1f}) in {where}")
        else:
            parts.append(f"the selection score went from {evals[0]:.1f} to at best {max(evals):.1f} in {where}")
    if len(losses) >= 4:
        k = max(1, len(losses) // 10)
        head, tail = losses[:k], losses[-k:]
        last = sum(tail) / len(tail)
        parts.append(f"training loss {sum(head) / len(head):.3f} → {last:.3f} "
                     f"(first / last tenth of the logged steps{_loss_reference(r, last)})")
    return "; ".join(parts) or "no curves recorded"


def _loss_reference(r: dict, last: float) -> str:
    """The loss a binary classifier reaches without reading its input: ln 2 for a guess, or, for a cell that
    answers one class, the entropy of the label frequencies (its accuracy is that class's share)."""
    scores = r.get("scores") or {}
    if "mcc" not in scores:
        return ""
    if not one_class(r) or "accuracy" not in scores:
        return "; a two-way guess is ln 2 = 0.693"
    selection = (r.get("summary") or {}).get("selection") or {}
    carved = "accuracy" in (selection.get("scores") or {})
    p = (selection["scores"] if carved else scores)["accuracy"] / 100
    prior = -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)
    where = "on the split carved from train" if carved else f"on {r.get('split', 'the scored split')}"
    verdict = (": the prompt learned the class frequencies and nothing more" if abs(last - prior) <= 0.02
               else "")
    return (f"; predicting only the label frequencies ({100 * p:.1f}% / {100 * (1 - p):.1f}% {where}) "
            f"gives {prior:.3f}{verdict}")
