"""The datasets-hub route, with `datasets.load_dataset` replaced by in-memory hub-shaped datasets.

Where possible the fake hub rows are built from the real files, and the hub route must then
produce exactly what the file route produces.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from softprompt.errors import DataError
from softprompt.settings import DATA_ENV
from softprompt.tasks import get_task, load_split, load_split_with_report


class FakeHub:
    """Stands in for datasets.load_dataset; serves registered (path, config, split) tables."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str | None, str], dict[str, list]] = {}
        self.calls: list[tuple[str, str | None, str]] = []

    def add(self, path: str, config: str | None, split: str, **columns: list) -> None:
        self.tables[(path, config, split)] = columns

    def __call__(self, path, name=None, split=None, **kwargs):
        self.calls.append((path, name, split))
        try:
            return datasets.Dataset.from_dict(self.tables[(path, name, split)])
        except KeyError:
            raise ConnectionError(f"no network (asked for {path}/{name} {split})") from None


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.delenv(DATA_ENV, raising=False)
    return fake


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def fields(examples) -> list[tuple]:
    return [(e.text, e.text_pair, e.label, e.group) for e in examples]


def test_sst2_rows_map_to_examples(hub):
    hub.add("glue", "sst2", "train", sentence=["a fine film ", "dull"], label=[1, 0], idx=[0, 1])
    examples = load_split("sst2", "train")
    assert [(e.text, e.text_pair, e.label, e.group, e.uid) for e in examples] == [
        ("a fine film ", None, 1, None, "glue/sst2/train:0"),
        ("dull", None, 0, None, "glue/sst2/train:1"),
    ]
    assert hub.calls == [("glue", "sst2", "train")]


def test_hub_only_splits_load_without_a_data_dir(hub):
    hub.add("glue", "mnli", "train", premise=["P"], hypothesis=["H"], label=[2], idx=[0])
    hub.add("glue", "mnli", "validation_matched", premise=["P2"], hypothesis=["H2"], label=[1], idx=[0])
    hub.add("glue", "mnli", "validation_mismatched", premise=["P3"], hypothesis=["H3"], label=[0], idx=[0])
    hub.add("glue", "mnli", "test_matched", premise=["P4"], hypothesis=["H4"], label=[-1], idx=[0])
    hub.add("glue", "qqp", "train", question1=["q1"], question2=["q2"], label=[1], idx=[0])
    hub.add("glue", "qnli", "train", question=["q"], sentence=["s"], label=[0], idx=[0])
    assert fields(load_split("mnli", "train")) == [("P", "H", 2, None)]
    assert fields(load_split("mnli", "validation")) == [("P2", "H2", 1, None)]
    assert fields(load_split("mnli", "validation_mismatched")) == [("P3", "H3", 0, None)]
    assert fields(load_split("mnli", "test", labeled=False)) == [("P4", "H4", None, None)]
    with pytest.raises(DataError, match="mnli test split has no public labels"):
        load_split("mnli", "test")
    assert fields(load_split("qqp", "train")) == [("q1", "q2", 1, None)]
    assert fields(load_split("qnli", "train")) == [("q", "s", 0, None)]
    assert ("glue", "mnli", "validation_matched") in hub.calls


def test_stsb_scores_and_hidden_test_labels(hub):
    hub.add("glue", "stsb", "validation", sentence1=["a", "b"], sentence2=["c", "d"], label=[4.25, 0.0], idx=[0, 1])
    hub.add("glue", "stsb", "test", sentence1=["e"], sentence2=["f"], label=[-1.0], idx=[0])
    assert fields(load_split("stsb", "validation")) == [("a", "c", 4.25, None), ("b", "d", 0.0, None)]
    assert fields(load_split("stsb", "test", labeled=False)) == [("e", "f", None, None)]


@pytest.mark.parametrize(("task", "folder", "hub_config", "builder"), [
    ("boolq", "BoolQ", "boolq", lambda r: {"question": r["question"], "passage": r["passage"], "idx": r["idx"],
                                          "label": int(r["label"])}),
    ("cb", "CB", "cb", lambda r: {"premise": r["premise"], "hypothesis": r["hypothesis"], "idx": r["idx"],
                                  "label": ["entailment", "contradiction", "neutral"].index(r["label"])}),
    ("superglue-rte", "RTE", "rte", lambda r: {"premise": r["premise"], "hypothesis": r["hypothesis"], "idx": r["idx"],
                                               "label": ["entailment", "not_entailment"].index(r["label"])}),
    ("copa", "COPA", "copa", lambda r: {k: r[k] for k in ("premise", "choice1", "choice2", "question", "idx", "label")}),
    ("wic", "WiC", "wic", lambda r: {**{k: r[k] for k in ("word", "sentence1", "sentence2", "start1", "start2", "end1",
                                                           "end2", "idx")}, "label": int(r["label"])}),
    ("wsc", "WSC", "wsc.fixed", lambda r: {"text": r["text"], **r["target"], "idx": r["idx"], "label": int(r["label"])}),
])
def test_superglue_hub_rows_match_the_file_route(hub, data_root, task, folder, hub_config, builder):
    records = [builder(r) for r in read_jsonl(data_root / "superglue" / folder / "val.jsonl")]
    hub.add("super_glue", hub_config, "validation", **{k: [r[k] for r in records] for k in records[0]})
    from_hub = load_split(task, "validation")
    from_files = load_split(task, "validation", data_root)
    assert fields(from_hub) == fields(from_files)
    assert from_hub[0].uid == f"super_glue/{hub_config}/validation:0"


def test_multirc_hub_rows_match_the_file_route(hub, data_root):
    rows = []
    for record in read_jsonl(data_root / "superglue" / "MultiRC" / "val.jsonl"):
        for question in record["passage"]["questions"]:
            for answer in question["answers"]:
                rows.append({"paragraph": record["passage"]["text"], "question": question["question"],
                             "answer": answer["text"], "label": answer["label"],
                             "idx": {"paragraph": record["idx"], "question": question["idx"], "answer": answer["idx"]}})
    hub.add("super_glue", "multirc", "validation", **{k: [r[k] for r in rows] for k in rows[0]})
    assert fields(load_split("multirc", "validation")) == fields(load_split("multirc", "validation", data_root))


def test_glue_hub_rows_match_the_file_route(hub, data_root):
    files = load_split("mrpc", "validation", data_root)
    hub.add("glue", "mrpc", "validation", sentence1=[e.text for e in files], sentence2=[e.text_pair for e in files],
            label=[e.label for e in files], idx=list(range(len(files))))
    assert fields(load_split("mrpc", "validation")) == fields(files)


def fpb_hub_columns(data_root: Path, name: str, encoding: str) -> dict[str, list]:
    lines = (data_root / "financial_phrasebank" / name).read_text(encoding=encoding).splitlines()
    pairs = [line.rsplit("@", 1) for line in lines]
    return {"sentence": [s for s, _ in pairs], "label": [["negative", "neutral", "positive"].index(l) for _, l in pairs]}


def test_fpb_hub_gives_the_same_seeded_split(hub, data_root):
    hub.add("financial_phrasebank", "sentences_allagree", "train", **fpb_hub_columns(data_root, "Sentences_AllAgree.txt", "utf-8"))
    for split in ("train", "validation", "test"):
        assert fields(load_split("fpb", split)) == fields(load_split("fpb", split, data_root))
    binary, report = load_split_with_report("fpb-binary", "train")
    assert len(binary) == 698 and report.rows_dropped == 1_113 and report.source == "datasets hub financial_phrasebank/sentences_allagree"
    assert set(hub.calls) == {("financial_phrasebank", "sentences_allagree", "train")}


def test_fpb_hub_agreement_config(hub, data_root):
    hub.add("financial_phrasebank", "sentences_75agree", "train", **fpb_hub_columns(data_root, "Sentences_75Agree.txt", "latin-1"))
    task = get_task("fpb", agreement="75")
    assert sum(len(load_split(task, split)) for split in ("train", "validation", "test")) == 3_453
    assert hub.calls[-1] == ("financial_phrasebank", "sentences_75agree", "train")


def test_tweeteval_train_via_hub_and_binary_view(hub):
    hub.add("tweet_eval", "sentiment", "train", text=["bad day", "meh", "great day", "ok"], label=[0, 1, 2, 1])
    assert fields(load_split("tweeteval", "train")) == [("bad day", None, 0, None), ("meh", None, 1, None),
                                                        ("great day", None, 2, None), ("ok", None, 1, None)]
    binary, report = load_split_with_report("tweeteval-binary", "train")
    assert fields(binary) == [("bad day", None, 0, None), ("great day", None, 1, None)]
    assert report.dropped == {"label 'neutral' not in the binary view": 2}


def test_imdb_via_hub(hub):
    hub.add("imdb", None, "test", text=["Bad.", "Good."], label=[0, 1])
    examples = load_split("imdb", "test")
    assert fields(examples) == [("Bad.", None, 0, None), ("Good.", None, 1, None)]
    assert examples[1].uid == "imdb/test:1"


def test_hub_failure_says_how_to_use_local_files(hub):
    with pytest.raises(DataError) as err:
        load_split("sst2", "validation")
    message = str(err.value)
    assert "cannot load glue/sst2 split 'validation' from the datasets hub (ConnectionError" in message
    assert "SOFTPROMPT_DATA" in message and "--data-dir" in message


def test_hub_missing_column(hub):
    hub.add("glue", "rte", "train", premise=["a"], hypothesis=["b"], label=[0], idx=[0])
    with pytest.raises(DataError, match=r"glue/rte split 'train' lacks column\(s\) sentence1, sentence2; "
                                         r"expected sentence1, sentence2, label, got premise, hypothesis, label, idx"):
        load_split("rte", "train")


def test_hub_bad_label(hub):
    hub.add("glue", "cola", "train", sentence=["ok", "odd"], label=[1, 5], idx=[0, 1])
    with pytest.raises(DataError, match=r"hub dataset glue/cola split 'train' row 1: unknown label 5; expected 0..1"):
        load_split("cola", "train")
    hub.add("glue", "cola", "validation", sentence=["ok"], label=[-1], idx=[0])
    with pytest.raises(DataError, match="1 of 1 rows have no label"):
        load_split("cola", "validation")


def test_a_data_dir_means_files_never_the_hub(hub, data_root, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_root))
    assert len(load_split("wsc", "validation")) == 104
    assert hub.calls == []
    assert Counter(e.label for e in load_split("cb", "validation", data_root)) == {1: 28, 0: 23, 2: 5}


# --- generation datasets: E2E (e2e_nlg: meaning_representation, human_reference; no label) ----

def e2e_hub_columns(data_root: Path) -> dict[str, list]:
    with (data_root / "e2e" / "devset.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"meaning_representation": [r["mr"] for r in rows], "human_reference": [r["ref"] for r in rows]}


def text_fields(examples) -> list[tuple]:
    return [(e.text, e.label, e.target, e.references) for e in examples]


def test_e2e_hub_gives_the_same_mr_split(hub, data_root):
    hub.add("e2e_nlg", None, "validation", **e2e_hub_columns(data_root))
    for split in ("train", "validation", "test"):
        from_hub, report = load_split_with_report("e2e", split)
        assert text_fields(from_hub) == text_fields(load_split("e2e", split, data_root))
        assert report.source == "datasets hub e2e_nlg"
    assert from_hub[0].uid.startswith("e2e_nlg/validation:") and from_hub[0].group == from_hub[0].uid
    assert set(hub.calls) == {("e2e_nlg", None, "validation")}


def test_e2e_official_splits_via_hub(hub):
    hub.add("e2e_nlg", None, "train", meaning_representation=["name[A]", "name[A]", "name[B]"],
            human_reference=["A one.", "A two.", "B one."])
    hub.add("e2e_nlg", None, "test", meaning_representation=["name[A]", "name[B]", "name[B]"],
            human_reference=["A.", "B1.", "B2."])
    assert text_fields(load_split("e2e-official", "train")) == [
        ("name[A]", None, "A one.", ("A one.",)), ("name[A]", None, "A two.", ("A two.",)),
        ("name[B]", None, "B one.", ("B one.",)),
    ]
    test = load_split("e2e-official", "test")
    assert text_fields(test) == [("name[A]", None, "A.", ("A.",)), ("name[B]", None, "B1.", ("B1.", "B2."))]
    assert [e.uid for e in test] == ["e2e_nlg/test:0", "e2e_nlg/test:1"]
    assert hub.calls == [("e2e_nlg", None, "train"), ("e2e_nlg", None, "test")]


def test_e2e_hub_bad_rows(hub):
    hub.add("e2e_nlg", None, "validation", meaning_representation=["name[A]", "name: A"], human_reference=["A.", "A!"])
    with pytest.raises(DataError, match=r"hub dataset e2e_nlg split 'validation' row 1: expected a meaning representation"):
        load_split("e2e", "test")
    hub.add("e2e_nlg", None, "train", meaning_representation=["name[A]"], target=["A."])
    with pytest.raises(DataError, match=r"e2e_nlg split 'train' lacks column\(s\) human_reference; "
                                         r"expected meaning_representation, human_reference, got meaning_representation, target"):
        load_split("e2e-official", "train")


def test_text_to_text_views_via_hub(hub):
    hub.add("imdb", None, "test", text=["Bad.", "Good."], label=[0, 1])
    hub.add("tweet_eval", "sentiment", "train", text=["bad day", "meh", "great day"], label=[0, 1, 2])
    assert [(e.text, e.label, e.target) for e in load_split("imdb-t2t", "test")] == [("Bad.", 0, "negative"), ("Good.", 1, "positive")]
    assert [(e.text, e.label, e.target) for e in load_split("tweeteval-binary-t2t", "train")] == [
        ("bad day", 0, "negative"), ("great day", 1, "positive")]
    assert hub.calls == [("imdb", None, "test"), ("tweet_eval", "sentiment", "train")]
