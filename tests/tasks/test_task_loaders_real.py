"""Every loader on the real benchmark files: exact row counts, first rows, label balance."""

from __future__ import annotations

from collections import Counter

import pytest

from softprompt.errors import DataError
from softprompt.tasks import get_task, load_split, load_split_with_report

# (task, split, rows, first text starts with, first text_pair starts with, first label, first uid)
FIRST_ROWS = [
    ("sst2", "train", 67_349, "hide new secretions from the parental units", None, 0, "glue/SST-2/train.tsv:2"),
    ("sst2", "validation", 872, "it 's a charming and often affecting journey .", None, 1, "glue/SST-2/dev.tsv:2"),
    ("cola", "train", 8_551, "Our friends won't buy this analysis", None, 1, "glue/CoLA/train.tsv:1"),
    ("cola", "validation", 1_043, "The sailors rode the breeze clear of the rocks.", None, 1, "glue/CoLA/dev.tsv:1"),
    ("mrpc", "train", 3_668, "Amrozi accused his brother", "Referring to him as only", 1, "glue/MRPC/train.tsv:2"),
    ("mrpc", "validation", 408, "He said the foodservice pie business", '" The foodservice pie business', 1, "glue/MRPC/dev.tsv:2"),
    ("rte", "train", 2_490, "No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction", 1, "glue/RTE/train.tsv:2"),
    ("rte", "validation", 277, "Dana Reeve, the widow", "Christopher Reeve had an accident.", 1, "glue/RTE/dev.tsv:2"),
    ("wnli", "train", 635, "I stuck a pin through a carrot.", "The carrot had a hole.", 1, "glue/WNLI/train.tsv:2"),
    ("wnli", "validation", 71, "The drain is clogged with hair.", "The hair has to be cleaned.", 0, "glue/WNLI/dev.tsv:2"),
    ("stsb", "train", 5_749, "A plane is taking off.", "An air plane is taking off.", 5.0, "glue/STS-B/train.tsv:2"),
    ("stsb", "validation", 1_500, "A man with a hard hat is dancing.", "A man wearing a hard hat", 5.0, "glue/STS-B/dev.tsv:2"),
    ("qnli", "validation", 5_463, "What came into force after the new constitution", "As of that day", 0, "glue/QNLI/dev.tsv:2"),
    ("boolq", "train", 9_427, "Persian language -- Persian", "do iran and afghanistan speak the same language", 1, "superglue/BoolQ/train.jsonl:1"),
    ("boolq", "validation", 3_270, "Ethanol fuel --", "does ethanol take more energy", 0, "superglue/BoolQ/val.jsonl:1"),
    ("cb", "train", 250, "It was a complex language.", "the language was peeled down", 0, "superglue/CB/train.jsonl:1"),
    ("cb", "validation", 56, "Valence the void-brain", "Valence was helping", 1, "superglue/CB/val.jsonl:1"),
    ("copa", "train", 400, "My body cast a shadow over the grass. What was the cause?",
     "The sun was rising or the grass was cut.", 0, "superglue/COPA/train.jsonl:1"),
    ("copa", "validation", 100, "The man turned on the faucet. What was the effect?",
     "The toilet filled with water or Water flowed from the spout.", 1, "superglue/COPA/val.jsonl:1"),
    ("multirc", "train", 27_243, "While this process moved along", "What did the high-level effort", 0, "superglue/MultiRC/train.jsonl:1:q0a0"),
    ("multirc", "validation", 4_848, "What causes a change in motion?",
     "Would the mass of a baseball affect how much force you have to use to pick it up? No", 0,
     "superglue/MultiRC/val.jsonl:1:q0a0"),
    ("wic", "train", 5_428, "Do you want to come over to my place later?",
     'A political system with no place for the less prominent groups. Is "place" used in the same sense', 0,
     "superglue/WiC/train.jsonl:1"),
    ("wic", "validation", 638, "An emerging professional class.", "Apologizing for losing your temper", 0, "superglue/WiC/val.jsonl:1"),
    ("superglue-rte", "train", 2_490, "No Weapons of Mass Destruction", "Weapons of Mass Destruction Found", 1, "superglue/RTE/train.jsonl:1"),
    ("superglue-rte", "validation", 277, "Dana Reeve", "Christopher Reeve had an accident.", 1, "superglue/RTE/val.jsonl:1"),
    ("wsc", "train", 554, "Mark told Pete many lies about himself", 'Does "He" refer to "Mark"?', 0, "superglue/WSC/train.jsonl:1"),
    ("wsc", "validation", 104, "Bernard , who had not told", 'Does "him" refer to "anyone"?', 0, "superglue/WSC/val.jsonl:1"),
    ("imdb", "train", 25_000, "Story of a man who has unnatural feelings for a pig.", None, 0,
     "imdb/aclImdb_v1.tar.gz:aclImdb/train/neg/0_3.txt"),
    ("imdb", "test", 25_000, "Once again Mr. Costner has dragged out a movie", None, 0,
     "imdb/aclImdb_v1.tar.gz:aclImdb/test/neg/0_2.txt"),
    ("fpb", "train", 1_811, "According to Gran , the company has no plans", None, 1, "financial_phrasebank/Sentences_AllAgree.txt:1"),
    ("fpb", "validation", 226, "For the last quarter of 2010 , Componenta", None, 2, "financial_phrasebank/Sentences_AllAgree.txt:2"),
    ("fpb", "test", 227, "Finnish Talentum reports its operating profit", None, 2, "financial_phrasebank/Sentences_AllAgree.txt:6"),
    ("fpb-binary", "train", 698, "In the third quarter of 2010 , net sales", None, 1, "financial_phrasebank/Sentences_AllAgree.txt:3"),
    ("tweeteval", "validation", 2_000, "Dark Souls 3 April Launch Date Confirmed", None, 1, "tweeteval/sentiment/val_text.txt:1"),
    ("tweeteval", "test", 12_284, "@user @user what do these '1/2 naked pics'", None, 1, "tweeteval/sentiment/test_text.txt:1"),
    ("tweeteval-binary", "validation", 1_131, '"National hot dog day', None, 1, "tweeteval/sentiment/val_text.txt:2"),
]


@pytest.mark.parametrize(("task", "split", "rows", "text", "pair", "label", "uid"), FIRST_ROWS,
                         ids=[f"{row[0]}-{row[1]}" for row in FIRST_ROWS])
def test_real_split(data_root, task, split, rows, text, pair, label, uid):
    examples = load_split(task, split, data_root)
    assert len(examples) == rows
    first = examples[0]
    assert first.text.startswith(text)
    if pair is None:
        assert first.text_pair is None
    else:
        assert first.text_pair is not None and first.text_pair.startswith(pair)
    assert first.label == label and type(first.label) is type(label)
    assert first.uid == uid
    assert len({example.uid for example in examples}) == rows  # uids are unique
    definition = get_task(task)
    assert (definition.is_pair) == (first.text_pair is not None)
    if definition.is_regression:
        assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in examples)
    else:
        assert {e.label for e in examples} <= set(range(definition.num_labels))


# (task, rows) of the hidden-label test files
UNLABELED_TESTS = [("sst2", 1_821), ("cola", 1_063), ("mrpc", 1_725), ("rte", 3_000), ("wnli", 146), ("stsb", 1_379),
                   ("qnli", 5_463), ("boolq", 3_245), ("cb", 250), ("copa", 500), ("multirc", 9_693), ("wic", 1_400),
                   ("superglue-rte", 3_000), ("wsc", 146)]


@pytest.mark.parametrize(("task", "rows"), UNLABELED_TESTS, ids=[row[0] for row in UNLABELED_TESTS])
def test_hidden_label_test_split(data_root, task, rows):
    with pytest.raises(DataError, match=rf"{task} test split has no public labels; pass labeled=False"):
        load_split(task, "test", data_root)
    examples = load_split(task, "test", data_root, labeled=False)
    assert len(examples) == rows
    assert all(example.label is None for example in examples)
    assert all(example.text for example in examples)


def test_label_balance_matches_the_distributions(data_root):
    def counts(task, split):
        return Counter(example.label for example in load_split(task, split, data_root))

    assert counts("imdb", "train") == {0: 12_500, 1: 12_500}
    assert counts("imdb", "test") == {0: 12_500, 1: 12_500}
    assert counts("boolq", "validation") == {1: 2_033, 0: 1_237}
    assert counts("cb", "validation") == {1: 28, 2: 5, 0: 23}  # contradiction / neutral / entailment
    assert counts("superglue-rte", "validation") == {0: 146, 1: 131}
    assert counts("rte", "validation") == counts("superglue-rte", "validation")
    assert counts("tweeteval", "test") == {1: 5_937, 0: 3_972, 2: 2_375}
    assert counts("sst2", "validation") == {1: 444, 0: 428}


def test_multirc_groups(data_root):
    examples = load_split("multirc", "validation", data_root)
    groups = Counter(example.group for example in examples)
    assert len(groups) == 953  # questions in val.jsonl
    assert groups["0-0"] == 4  # the first question has four answer options
    assert all(example.group for example in examples)
    # every answer row of a question shares the paragraph
    first_rows = [e for e in examples if e.group == "0-0"]
    assert len({e.text for e in first_rows}) == 1
    assert [e.label for e in first_rows] == [0, 1, 1, 0]


@pytest.mark.parametrize(("agreement", "total", "encoding_name"),
                         [("50", 4_846, "latin-1"), ("66", 4_217, "latin-1"), ("75", 3_453, "latin-1"), ("all", 2_264, "utf-8")])
def test_fpb_agreement_files_and_split(data_root, agreement, total, encoding_name):
    task = get_task("fpb", agreement=agreement)
    splits = {split: load_split(task, split, data_root) for split in ("train", "validation", "test")}
    assert sum(len(rows) for rows in splits.values()) == total
    uids = [set(e.uid for e in rows) for rows in splits.values()]
    assert not (uids[0] & uids[1]) and not (uids[0] & uids[2]) and not (uids[1] & uids[2])
    assert abs(len(splits["train"]) - 0.8 * total) <= 3
    assert abs(len(splits["validation"]) - 0.1 * total) <= 3
    # Latin-1 (50/66/75) and UTF-8 (All) decode the same Finnish name identically
    texts = {e.text for rows in splits.values() for e in rows}
    assert any(text.startswith("Clothing retail chain Sepp+\u00f1l+\u00f1 's sales") for text in texts), encoding_name


def test_fpb_split_is_deterministic_and_stratified(data_root):
    first = load_split("fpb", "train", data_root)
    again = load_split("fpb", "train", data_root)
    assert first == again
    assert [(e.uid, e.label) for e in first[:3]] == [
        ("financial_phrasebank/Sentences_AllAgree.txt:1", 1),
        ("financial_phrasebank/Sentences_AllAgree.txt:3", 2),
        ("financial_phrasebank/Sentences_AllAgree.txt:4", 2),
    ]
    assert Counter(e.label for e in first) == {0: 242, 1: 1_113, 2: 456}
    assert Counter(e.label for e in load_split("fpb", "test", data_root)) == {0: 31, 1: 139, 2: 57}


def test_binary_views_drop_and_report_neutral(data_root):
    full = load_split("fpb", "train", data_root)
    binary, report = load_split_with_report("fpb-binary", "train", data_root)
    assert report.rows_read == len(full) == 1_811
    assert report.dropped == {"label 'neutral' not in the binary view": 1_113}
    assert report.rows_dropped == 1_113 and report.rows_returned == len(binary) == 698
    assert "dropped 1,113" in report.summary()
    # same sentences as the 3-class split, relabelled negative 0 / positive 1
    by_uid = {e.uid: e.label for e in full}
    assert all({0: 0, 2: 1}[by_uid[e.uid]] == e.label for e in binary)

    tweets, tweet_report = load_split_with_report("tweeteval-binary", "test", data_root)
    assert tweet_report.rows_read == 12_284
    assert tweet_report.dropped == {"label 'neutral' not in the binary view": 5_937}
    assert Counter(e.label for e in tweets) == {0: 3_972, 1: 2_375}


def test_load_split_logs_the_report(data_root, caplog):
    with caplog.at_level("INFO", logger="softprompt.tasks"):
        load_split("tweeteval-binary", "validation", data_root)
    assert "dropped 869 (label 'neutral' not in the binary view)" in caplog.text


def test_splits_missing_offline_say_how_to_get_them(data_root):
    with pytest.raises(DataError, match=r"qnli train is not available offline \(the local data has validation, test\)"):
        load_split("qnli", "train", data_root)
    with pytest.raises(DataError, match=r"tweeteval train is not available offline.*datasets hub"):
        load_split("tweeteval", "train", data_root)
    with pytest.raises(DataError, match=r"mnli validation is not available offline \(the local data has no splits\)"):
        load_split("mnli", "validation", data_root)
    with pytest.raises(DataError, match="qqp"):
        load_split("qqp", "train", data_root)


def test_data_dir_comes_from_the_environment(data_root, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_DATA", str(data_root))
    assert len(load_split("cb", "validation")) == 56
    assert len(load_split("cb", "dev")) == 56
