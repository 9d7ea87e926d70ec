"""Generation metrics: multi-reference corpus BLEU, ROUGE-L (max over references), METEOR, CIDEr."""

from __future__ import annotations

import math
import shutil

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from softprompt.errors import DataError
from softprompt.tasks import generation_metrics
from softprompt.tasks.generation_metrics import generation_scores

JAVA = shutil.which("java")

# Hand-computed case, lowercased whitespace tokens, two examples (the 2nd has one reference):
#   "the cat is on the mat" vs {"the cat sat on the mat", "there is a cat on the mat"}
#     clipped matches 1..4-grams: 6/6, 3/5 (the cat, on the, the mat), 1/4 (on the mat), 0/3
#   "a dog runs in the park" vs {"a dog runs in the park"}: 6/6, 5/5, 4/4, 3/3
# corpus precisions 12/12, 8/10, 5/8, 3/6; hypothesis length 12 = closest reference length 12,
# so BP = 1 and BLEU = 100 * (1 * 0.8 * 0.625 * 0.5) ** (1/4) = 100 * 0.25 ** 0.25.
HYPS = ["The cat is on the mat", "a dog runs in the park"]
REFS = [["the cat sat on the mat", "There is a cat on the mat"], ["a dog runs in  the park"]]
HAND_BLEU = 100 * 0.25 ** 0.25


def test_bleu_on_a_hand_computed_case_equals_sacrebleu():
    scores = generation_scores(HYPS, REFS, with_meteor=False)
    assert scores["bleu"] == pytest.approx(HAND_BLEU) == pytest.approx(70.7107, abs=1e-4)
    streams = [[REFS[0][0], REFS[1][0]], [REFS[0][1], None]]
    direct = sacrebleu.corpus_bleu([h.lower() for h in HYPS], [[r and " ".join(r.lower().split()) for r in s] for s in streams],
                                   tokenize="none")
    assert scores["bleu"] == pytest.approx(direct.score)
    assert scores["sacrebleu_13a"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)
    assert scores["sacrebleu_13a"] != pytest.approx(scores["bleu"])  # case matters there ("The" vs "the")
    assert "case:lc" in scores["signatures"]["bleu"] and "tok:none" in scores["signatures"]["bleu"]
    assert scores["main"] == scores["bleu"] and scores["n"] == 2


def test_bleu_is_100_for_perfect_predictions():
    refs = [["The Eagle is a coffee shop near Burger King .", "Near Burger King is The Eagle ."],
            ["Alimentum is a family friendly place in the city centre ."]]
    scores = generation_scores([refs[0][1], refs[1][0]], refs, with_meteor=False)
    assert scores["bleu"] == pytest.approx(100.0) and scores["sacrebleu_13a"] == pytest.approx(100.0)
    assert scores["rouge_l"] == pytest.approx(100.0)


def test_rouge_l_takes_the_best_reference_per_example():
    # "the cat sat" vs "the cat sat on the mat": LCS 3, P 1, R 1/2 -> F 2/3; vs "cat sat": LCS 2, P 2/3, R 1 -> F 0.8
    scores = generation_scores(["the cat sat", "a dog"], [["the cat sat on the mat", "cat sat"], ["a dog"]], with_meteor=False)
    assert scores["rouge_l"] == pytest.approx(100 * (0.8 + 1.0) / 2)
    scorer = RougeScorer(["rougeL"])
    assert scorer.score("cat sat", "the cat sat")["rougeL"].fmeasure == pytest.approx(0.8)


def test_cider_runs_and_rewards_agreement_with_the_references():
    refs = [["the eagle is a coffee shop .", "the eagle serves coffee ."],
            ["alimentum is in the city centre .", "alimentum is located in the centre of the city ."],
            ["the wrestlers is cheap .", "the wrestlers has low prices ."]]
    good = generation_scores(["the eagle is a coffee shop .", "alimentum is in the city centre .", "the wrestlers is cheap ."],
                             refs, with_meteor=False)
    bad = generation_scores(["dogs bark", "cats sleep", "birds fly"], refs, with_meteor=False)  # no shared n-gram
    assert math.isfinite(good["cider"]) and good["cider"] > 1.0
    assert bad["cider"] == pytest.approx(0.0)
    assert good["unavailable"] == bad["unavailable"] == {"meteor": "not requested (with_meteor=False)"}
    assert good["meteor"] is None


@pytest.mark.slow  # one JVM start that loads METEOR's paraphrase table: tens of seconds on a busy machine
@pytest.mark.skipif(JAVA is None, reason="java not found on PATH: pycocoevalcap's METEOR runs meteor-1.5.jar")
def test_meteor_runs_with_java():
    refs = [["the eagle is a coffee shop .", "the eagle serves coffee ."], ["alimentum is in the city centre ."]]
    scores = generation_scores(["The Eagle is a coffee shop.", "the river"], refs)
    assert scores["unavailable"] == {}
    # corpus-level METEOR pools the statistics: one exact match and one miss give 33.8 here
    assert scores["meteor"] == pytest.approx(33.84, abs=0.5)


def test_meteor_without_java_is_reported_not_dropped(monkeypatch):
    monkeypatch.setattr(generation_metrics.shutil, "which", lambda name: None)
    scores = generation_scores(HYPS, REFS)
    assert scores["meteor"] is None
    assert scores["unavailable"]["meteor"].startswith("java not found on PATH")
    assert scores["bleu"] == pytest.approx(HAND_BLEU)


def test_bad_inputs():
    with pytest.raises(DataError, match="got 2 predictions for 1 reference lists"):
        generation_scores(["a", "b"], [["a"]])
    with pytest.raises(DataError, match="references of example 0 must be a non-empty list of strings"):
        generation_scores(["a"], [[]])
    with pytest.raises(DataError, match="references of example 0 must be a non-empty list of strings"):
        generation_scores(["a"], ["a"])
    with pytest.raises(DataError, match="prediction 0 must be text"):
        generation_scores([None], [["a"]])
    with pytest.raises(DataError, match="no predictions"):
        generation_scores([], [])


def test_coco_metrics_see_lowercased_tokens_without_punctuation():
    assert generation_metrics.coco_text('The Eagle, a "coffee shop" (near Café Rouge)... ||| ok.') == (
        "the eagle a coffee shop near café rouge ok"
    )
