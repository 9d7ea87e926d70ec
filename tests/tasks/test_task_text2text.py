"""Text-to-text views: label words as targets, parsing generated text back to labels, scoring,
and the per-example outputs writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from softprompt.errors import ConfigError, DataError
from softprompt.tasks import (
    TASKS,
    Example,
    compute_metrics,
    get_task,
    label_scores_from_text,
    load_split,
    load_split_with_report,
    parse_label,
    render_input,
    score_predictions,
)
from softprompt.tasks.generation_outputs import output_records, write_outputs

VIEWS = {"sst2-t2t": "sst2", "imdb-t2t": "imdb", "fpb-binary-t2t": "fpb-binary", "tweeteval-binary-t2t": "tweeteval-binary"}


@pytest.mark.parametrize(("view", "source"), sorted(VIEWS.items()))
def test_views_share_the_label_words_and_splits_of_their_task(view, source):
    t2t, task = get_task(view), get_task(source)
    assert t2t.kind == "generation" and t2t.is_text_to_text and not task.is_generation
    assert (t2t.label_names, t2t.verbalizer) == (task.label_names, task.verbalizer) == (("negative", "positive"),) * 2
    assert (t2t.splits, t2t.offline_splits, t2t.unlabeled_splits) == (task.splits, task.offline_splits, task.unlabeled_splits)
    assert (t2t.parent or "", t2t.label_map) == (task.parent or source, task.label_map)
    assert t2t.input_template == "Sentence: {text}\nSentiment:"


@pytest.mark.parametrize(("view", "split"), [("sst2-t2t", "validation"), ("fpb-binary-t2t", "test"),
                                             ("tweeteval-binary-t2t", "validation")])
def test_views_yield_the_label_words_as_targets(data_root, view, split):
    examples, report = load_split_with_report(view, split, data_root)
    source = load_split(VIEWS[view], split, data_root)
    assert [(e.text, e.label, e.uid) for e in examples] == [(e.text, e.label, e.uid) for e in source]
    assert [e.target for e in examples] == [("negative", "positive")[e.label] for e in source]
    assert {e.target for e in examples} == {"negative", "positive"}
    if view == "fpb-binary-t2t":
        assert report.dropped == {"label 'neutral' not in the binary view": 139}


def test_unlabeled_split_has_no_target(data_root):
    examples = load_split("sst2-t2t", "test", data_root, labeled=False, limit=5)
    assert [(e.label, e.target) for e in examples] == [(None, None)] * 5


def test_render_input():
    example = Example(" a fine film ", None, 1, None, "x:1", target="positive")
    assert render_input("sst2-t2t", example) == "Sentence: a fine film\nSentiment:"
    mr = "name[The Eagle], eatType[coffee shop]"
    assert render_input("e2e", Example(mr, None, None, None, "x:2")) == mr


@pytest.mark.parametrize(("text", "label"), [
    ("positive", 1), ("negative", 0),  # exact
    ("  Positive.", 1), ("NEGATIVE!", 0), ("The sentiment is Negative", 0),  # casefolded, stripped, in a sentence
    ("negative, not positive", 0), ("positive or negative", 1),  # the first label word wins
    ("positively great", None), ("non-negative", 0), ("nonnegative", None),  # whole words only ('-' separates)
    ("", None), ("neutral", None), ("pos", None),  # unparseable
])
def test_parse_label(text, label):
    assert parse_label("sst2-t2t", text) == label


def test_parse_label_needs_label_words():
    with pytest.raises(ConfigError, match="task 'e2e' has no label words"):
        parse_label("e2e", "positive")


def test_label_scores_count_unparseable_as_wrong():
    gold = [1, 1, 0, 0, 1, 0]
    texts = ["positive", "Negative.", "negative", "no idea", "POSITIVE", ""]
    scores = label_scores_from_text("sst2-t2t", texts, gold)
    # parsed: 1, 0, 0, None, 1, None -> 3 of 6 right
    assert scores["accuracy"] == pytest.approx(50.0) and scores["main"] == scores["accuracy"]
    assert scores["unparseable"] == 2 and scores["n"] == 6
    # class 1: tp 2, fp 0, fn 1 -> F1 0.8;  class 0: tp 1, fp 1, fn 2 -> F1 0.4
    assert scores["macro_f1"] == pytest.approx(60.0)


def test_label_scores_match_compute_metrics_when_all_parse():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, size=40).tolist()
    predicted = rng.integers(0, 2, size=40).tolist()
    texts = [("Negative", "positive.")[p] for p in predicted]
    scores = label_scores_from_text("sst2-t2t", texts, gold)
    reference = compute_metrics("sst2", predicted, gold)
    assert scores["accuracy"] == pytest.approx(reference["accuracy"])
    assert scores["macro_f1"] == pytest.approx(reference["macro_f1"])
    assert scores["unparseable"] == 0


def test_label_scores_bad_input():
    with pytest.raises(DataError, match="got 1 predictions for 2 labels"):
        label_scores_from_text("sst2-t2t", ["positive"], [0, 1])
    with pytest.raises(DataError, match="labels contain None"):
        label_scores_from_text("sst2-t2t", ["positive"], [None])


def test_score_predictions_dispatches_by_task():
    examples = [Example("a", None, 1, None, "x:1", target="positive"), Example("b", None, 0, None, "x:2", target="negative")]
    assert score_predictions("sst2-t2t", examples, ["positive", "???"])["accuracy"] == pytest.approx(50.0)
    refs = ("The Eagle is a coffee shop by the river.", "By the river is The Eagle.")
    e2e = [Example("name[The Eagle]", None, None, "x:1", "x:1", refs[0], refs)]
    scores = score_predictions("e2e", e2e, ["By the river is The Eagle."], with_meteor=False)
    assert scores["bleu"] == pytest.approx(100.0) and scores["main"] == scores["bleu"]
    with pytest.raises(ConfigError, match="'sst2' is a classification task"):
        score_predictions("sst2", examples, ["positive", "negative"])


def test_write_outputs_jsonl_next_to_scores(tmp_path):
    examples = [Example(" good ", None, 1, None, "glue/SST-2/dev.tsv:2", target="positive"),
                Example("bad", None, 0, None, "glue/SST-2/dev.tsv:3", target="negative")]
    predictions = ["Positive", "hmm"]
    scores = score_predictions("sst2-t2t", examples, predictions)
    outputs, scores_path = write_outputs(tmp_path / "run", "sst2-t2t", examples, predictions, scores)
    assert outputs == tmp_path / "run" / "outputs.jsonl" and scores_path.parent == outputs.parent
    assert [json.loads(line) for line in outputs.read_text(encoding="utf-8").splitlines()] == [
        {"id": "glue/SST-2/dev.tsv:2", "input": "Sentence: good\nSentiment:", "prediction": "Positive", "label": 1, "parsed": 1},
        {"id": "glue/SST-2/dev.tsv:3", "input": "Sentence: bad\nSentiment:", "prediction": "hmm", "label": 0, "parsed": None},
    ]
    assert json.loads(scores_path.read_text()) == {"task": "sst2-t2t", **scores}

    e2e = [Example("name[Café]", None, None, "e:2", "e:2", "Café.", ("Café.", "The Café."))]
    assert output_records("e2e", e2e, ["Café."]) == [
        {"id": "e:2", "input": "name[Café]", "prediction": "Café.", "references": ["Café.", "The Café."]}
    ]
    with pytest.raises(DataError, match="got 2 predictions for 1 examples"):
        output_records("e2e", e2e, ["a", "b"])


def test_every_generation_task_is_declared_for_text():
    generation = [task for task in TASKS.values() if task.is_generation]
    assert {t.name for t in generation if t.is_text_to_text} == set(VIEWS)
    assert all(t.metric == "bleu" for t in generation if not t.is_text_to_text)
