"""Corpus metrics for generated text against several references per example (E2E style).

generation_scores(predictions, references_list) returns
  bleu            multi-reference corpus BLEU on lowercased whitespace tokens (sacrebleu with
                  lowercase=True, tokenize="none" on whitespace-joined tokens): the issue's setting
  sacrebleu_13a   sacrebleu's standard corpus BLEU (cased, 13a tokenization), for comparison
  rouge_l         ROUGE-L F1 (rouge-score), per example the max over its references, averaged
  meteor          METEOR 1.5 (pycocoevalcap, runs Java), or None with the reason in "unavailable"
  cider           CIDEr-D (pycocoevalcap), idf from this corpus's references
  main            = bleu;  n = number of examples
  unavailable     metric -> reason it was not computed ({} when everything ran)
  signatures      metric -> the exact setting, e.g. sacrebleu's signature
BLEU, ROUGE-L and METEOR are in percent (0-100), CIDEr on its own scale (0-10), as in the
E2E/Prefix-Tuning tables. METEOR and CIDEr see lowercased 13a tokens without punctuation
tokens: close to the PTB tokenization (lowercase, punctuation dropped) that the COCO caption
scripts, and so the E2E challenge's script, apply first, without a second Java process.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from softprompt.errors import DataError

BLEU_SETTING = "corpus BLEU, lowercased whitespace tokens, multi-reference"
# The tokens pycocoevalcap's PTBTokenizer drops (its PUNCTUATIONS), as 13a writes them.
PUNCTUATION = frozenset({'"', "'", "''", "`", "``", ".", "?", "!", ",", ":", ";", "-", "--", "...", "(", ")", "{", "}"})


def _check(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references_list):
        raise DataError(
            f"got {len(predictions)} predictions for {len(references_list)} reference lists; expected one per example"
        )
    for index, (prediction, references) in enumerate(zip(predictions, references_list)):
        if not isinstance(prediction, str):
            raise DataError(f"prediction {index} must be text, got {type(prediction).__name__}")
        if isinstance(references, str) or not references or not all(isinstance(r, str) for r in references):
            raise DataError(f"references of example {index} must be a non-empty list of strings, got {references!r}")


def whitespace_tokens(text: str) -> str:
    """Tokens split on whitespace, joined by single spaces (newlines and runs of spaces collapse)."""
    return " ".join(text.split())


def _reference_streams(references_list: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every example's k-th reference, None where it has fewer."""
    depth = max(len(refs) for refs in references_list)
    return [[refs[k] if k < len(refs) else None for refs in references_list] for k in range(depth)]


def bleu(predictions: Sequence[str], references_list: Sequence[Sequence[str]], lowercase_whitespace: bool = True):
    """sacrebleu's BLEUScore: on lowercased whitespace tokens (default) or sacrebleu's standard 13a."""
    from sacrebleu.metrics import BLEU

    if lowercase_whitespace:
        metric = BLEU(lowercase=True, tokenize="none")
        predictions = [whitespace_tokens(p) for p in predictions]
        references_list = [[whitespace_tokens(r) for r in refs] for refs in references_list]
    else:
        metric = BLEU()
    score = metric.corpus_score(list(predictions), _reference_streams(references_list))
    return score, str(metric.get_signature())


def rouge_l(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> float:
    """Mean over examples of the best ROUGE-L F1 against any of the example's references (0-1)."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    best = [max(scorer.score(ref, pred)["rougeL"].fmeasure for ref in refs) for pred, refs in zip(predictions, references_list)]
    return sum(best) / len(best) if best else 0.0


def coco_text(text: str) -> str:
    """Lowercased 13a tokens without punctuation tokens, one line, no METEOR '|' separators."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokens = Tokenizer13a()(text.replace("|", " ").lower()).split()
    return " ".join(token for token in tokens if token not in PUNCTUATION)


def _coco_inputs(predictions, references_list) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    gts = {i: [coco_text(r) for r in refs] for i, refs in enumerate(references_list)}
    res = {i: [coco_text(p)] for i, p in enumerate(predictions)}
    return gts, res


def cider(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> float:
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score(*_coco_inputs(predictions, references_list))
    return float(score)


def meteor_unavailable_reason() -> str | None:
    """Why pycocoevalcap's METEOR cannot run here, or None if it can."""
    if shutil.which("java") is None:
        return "java not found on PATH; pycocoevalcap's METEOR runs meteor-1.5.jar (install a Java runtime)"
    try:
        import pycocoevalcap.meteor.meteor as module
    except ImportError as err:
        return f"pycocoevalcap is not importable ({err})"
    folder = Path(module.__file__).parent
    for needed in (folder / module.METEOR_JAR, folder / "data" / "paraphrase-en.gz"):
        if not needed.is_file():
            return f"pycocoevalcap's METEOR file {needed} is missing (reinstall pycocoevalcap)"
    return None


def meteor(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> float:
    """METEOR 1.5 (0-1); raises RuntimeError when Java/METEOR fails (see meteor_unavailable_reason)."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, _ = scorer.compute_score(*_coco_inputs(predictions, references_list))
    except (ValueError, OSError) as err:  # the jar died: readline gave b"" or the pipe broke
        stderr = scorer.meteor_p.stderr.read(2000).decode(errors="replace") if scorer.meteor_p.poll() is not None else ""
        raise RuntimeError(f"METEOR (java) failed: {err}; {stderr.strip()}") from None
    finally:
        if scorer.lock.locked():  # compute_score failed holding it; Meteor.__del__ would block
            scorer.lock.release()
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.wait(timeout=60)
    return float(score)


def generation_scores(
    predictions: Sequence[str], references_list: Sequence[Sequence[str]], with_meteor: bool = True
) -> dict[str, Any]:
    """All corpus metrics (see the module docstring); with_meteor=False skips Java (reported)."""
    _check(predictions, references_list)
    if not predictions:
        raise DataError("no predictions to score; expected at least one example")
    main_bleu, main_signature = bleu(predictions, references_list)
    standard_bleu, standard_signature = bleu(predictions, references_list, lowercase_whitespace=False)
    out: dict[str, Any] = {
        "bleu": float(main_bleu.score),
        "sacrebleu_13a": float(standard_bleu.score),
        "rouge_l": 100 * rouge_l(predictions, references_list),
        "meteor": None,
        "cider": cider(predictions, references_list),
        "n": len(predictions),
        "unavailable": {},
        "signatures": {
            "bleu": f"{BLEU_SETTING}: {main_signature}",
            "sacrebleu_13a": standard_signature,
            "rouge_l": "rouge-score rougeL F1, no stemming, max over references",
            "meteor": "pycocoevalcap METEOR 1.5 (-l en -norm), lowercased 13a tokens, punctuation dropped",
            "cider": "pycocoevalcap CIDEr-D, lowercased 13a tokens, punctuation dropped",
        },
    }
    reason = meteor_unavailable_reason() if with_meteor else "not requested (with_meteor=False)"
    if reason is None:
        try:
            out["meteor"] = 100 * meteor(predictions, references_list)
        except RuntimeError as err:
            reason = str(err)
    if reason is not None:
        out["unavailable"]["meteor"] = reason
    out["main"] = out["bleu"]
    return out
