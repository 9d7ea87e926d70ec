"""Financial PhraseBank split 'all': every row of the agreement file, for cross-domain evaluation."""

import pytest

from softprompt.errors import ConfigError
from softprompt.tasks import get_task, load_split, load_split_with_report


def test_all_is_the_union_of_the_seeded_splits_in_file_order(data_dir):
    rows = load_split("fpb", "all", data_dir)
    assert len(rows) == 2_264 and [e.uid for e in rows][:2] == ["financial_phrasebank/Sentences_AllAgree.txt:1",
                                                              "financial_phrasebank/Sentences_AllAgree.txt:2"]
    parts = [e.uid for s in ("train", "validation", "test") for e in load_split("fpb", s, data_dir)]
    assert sorted(parts) == sorted(e.uid for e in rows)


def test_binary_all_keeps_every_negative_and_positive_sentence(data_dir):
    rows, report = load_split_with_report("fpb-binary", "all", data_dir)
    assert len(rows) == 873 and report.rows_read == 2_264
    assert report.dropped == {"label 'neutral' not in the binary view": 1_391}
    assert sum(e.label == 0 for e in rows) == 303 and sum(e.label == 1 for e in rows) == 570
    assert len(load_split(get_task("fpb-binary", agreement="50"), "all", data_dir)) == 1_967


def test_all_is_an_fpb_split_only():
    assert get_task("fpb-binary").check_split("all") == "all"
    with pytest.raises(ConfigError, match="has no split 'all'"):
        get_task("sst2").check_split("all")
