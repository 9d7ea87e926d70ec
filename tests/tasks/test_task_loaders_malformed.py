"""Crafted bad files, laid out like the data dir: every error names file, line and expectation."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from softprompt.errors import DataError
from softprompt.tasks import get_task, load_split


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def error_of(task: str, split: str, root: Path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        load_split(task, split, root, **kwargs)
    return str(err.value)


SST2_HEADER = "sentence\tlabel\n"


# --- GLUE TSV ---------------------------------------------------------------------------------

def test_sst2_wrong_column_count_names_file_line_and_columns(tmp_path):
    rows = "".join(f"sentence {i}\t{i % 2}\n" for i in range(15)) + "a\tb\t1\n"
    path = write(tmp_path, "glue/SST-2/train.tsv", SST2_HEADER + rows)
    message = error_of("sst2", "train", tmp_path)
    assert message == f"{path} line 17: expected 2 tab-separated columns (sentence, label), got 3"


def test_sst2_bad_header(tmp_path):
    path = write(tmp_path, "glue/SST-2/dev.tsv", "text\tlabel\nfine\t1\n")
    message = error_of("sst2", "validation", tmp_path)
    assert message.startswith(f"{path} line 1: expected header 'sentence\\tlabel'")
    assert "got 'text\\tlabel'" in message


def test_sst2_unknown_label(tmp_path):
    path = write(tmp_path, "glue/SST-2/dev.tsv", SST2_HEADER + "good\t1\nbad\tpositive\n")
    assert error_of("sst2", "validation", tmp_path) == (
        f"{path} line 3: unknown label 'positive'; expected one of '0', '1'"
    )


def test_blank_line_inside_a_tsv_is_an_error_not_skipped(tmp_path):
    path = write(tmp_path, "glue/SST-2/dev.tsv", SST2_HEADER + "good\t1\n\nbad\t0\n")
    assert error_of("sst2", "validation", tmp_path) == (
        f"{path} line 3: expected 2 tab-separated columns (sentence, label), got 1"
    )


def test_undecodable_bytes_name_the_line(tmp_path):
    path = write(tmp_path, "glue/SST-2/dev.tsv", SST2_HEADER.encode() + b"fine\t1\ncaf\xe9 au lait\t1\n")
    message = error_of("sst2", "validation", tmp_path)
    assert message == f"{path} line 3: cannot decode byte(s) e9 at column 4; expected utf-8 text"


def test_cola_has_no_header_so_line_1_is_data(tmp_path):
    path = write(tmp_path, "glue/CoLA/train.tsv", "gj04\t1\t\tGood.\ngj04\t1\tBad.\n")
    assert error_of("cola", "train", tmp_path) == (
        f"{path} line 2: expected 4 tab-separated columns (source, label, original_mark, sentence), got 3"
    )
    write(tmp_path, "glue/CoLA/train.tsv", "gj04\t1\t\tGood.\ngj04\t0\t*\tBad.\n")
    examples = load_split("cola", "train", tmp_path)
    assert [(e.text, e.label, e.uid) for e in examples] == [("Good.", 1, "glue/CoLA/train.tsv:1"), ("Bad.", 0, "glue/CoLA/train.tsv:2")]


def test_mrpc_bom_is_tolerated_and_quality_checked(tmp_path):
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    write(tmp_path, "glue/MRPC/dev.tsv", header + "1\t1\t2\tA .\tB .\n")
    assert load_split("mrpc", "validation", tmp_path)[0].text_pair == "B ."
    path = write(tmp_path, "glue/MRPC/dev.tsv", header + "1\t1\t2\tA .\tB .\nyes\t3\t4\tC .\tD .\n")
    assert error_of("mrpc", "validation", tmp_path) == (
        f"{path} line 3: unknown Quality 'yes'; expected one of '0', '1'"
    )


def test_rte_unknown_label_string(tmp_path):
    path = write(tmp_path, "glue/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    assert error_of("rte", "train", tmp_path) == (
        f"{path} line 2: unknown label 'maybe'; expected one of 'entailment', 'not_entailment'"
    )


STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


@pytest.mark.parametrize("score", ["high", "5.5", "-0.1", "nan"])
def test_stsb_bad_score(tmp_path, score):
    row = f"0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA.\tB.\t{score}\n"
    path = write(tmp_path, "glue/STS-B/train.tsv", STSB_HEADER + row)
    assert error_of("stsb", "train", tmp_path) == (
        f"{path} line 2: expected a similarity score between 0 and 5 in column score, got {score!r}"
    )


def test_glue_missing_file_gives_full_path_and_the_fix(tmp_path):
    (tmp_path / "glue").mkdir()
    message = error_of("mrpc", "train", tmp_path)
    assert str(tmp_path / "glue" / "MRPC" / "train.tsv") in message
    assert "SOFTPROMPT_DATA" in message and "--data-dir" in message


def test_missing_data_dir(tmp_path):
    message = error_of("sst2", "train", tmp_path / "nowhere")
    assert f"data dir {tmp_path / 'nowhere'} does not exist" in message and "SOFTPROMPT_DATA" in message


def test_labeled_split_with_a_missing_label_column_value_is_an_error(tmp_path):
    path = write(tmp_path, "glue/SST-2/dev.tsv", SST2_HEADER + "good\t\n")
    assert error_of("sst2", "validation", tmp_path) == f"{path} line 2: unknown label ''; expected one of '0', '1'"


# --- SuperGLUE JSONL ---------------------------------------------------------------------------

def jsonl(*records: object) -> str:
    return "".join((record if isinstance(record, str) else json.dumps(record)) + "\n" for record in records)


CB_OK = {"premise": "P.", "hypothesis": "H.", "label": "neutral", "idx": 0}


def test_superglue_bad_json(tmp_path):
    path = write(tmp_path, "superglue/CB/val.jsonl", jsonl(CB_OK, CB_OK, '{"premise": "P.", "hypothesis": '))
    message = error_of("cb", "validation", tmp_path)
    assert message.startswith(f"{path} line 3: invalid JSON (")
    assert message.endswith("expected one JSON object per line")


def test_superglue_non_object_line(tmp_path):
    path = write(tmp_path, "superglue/CB/val.jsonl", jsonl(CB_OK, "[1, 2]"))
    assert error_of("cb", "validation", tmp_path) == f"{path} line 2: expected a JSON object, got list"


def test_superglue_missing_field(tmp_path):
    path = write(tmp_path, "superglue/CB/train.jsonl", jsonl(CB_OK, {"premise": "P.", "label": "neutral", "idx": 1}))
    assert error_of("cb", "train", tmp_path) == (
        f"{path} line 2: missing field 'hypothesis'; expected it in every record"
    )


def test_superglue_unknown_labels(tmp_path):
    path = write(tmp_path, "superglue/CB/train.jsonl", jsonl({**CB_OK, "label": "unsure"}))
    assert error_of("cb", "train", tmp_path) == (
        f"{path} line 1: unknown label 'unsure'; expected one of 'entailment', 'contradiction', 'neutral'"
    )
    path = write(tmp_path, "superglue/BoolQ/train.jsonl", jsonl({"question": "q", "passage": "p", "label": "True", "idx": 0}))
    assert error_of("boolq", "train", tmp_path) == f"{path} line 1: unknown label 'True'; expected true or false"
    copa = {"premise": "P.", "choice1": "A.", "choice2": "B.", "question": "cause", "idx": 0}
    path = write(tmp_path, "superglue/COPA/train.jsonl", jsonl({**copa, "label": 2}))
    assert error_of("copa", "train", tmp_path) == f"{path} line 1: unknown label 2; expected one of 0, 1"
    path = write(tmp_path, "superglue/COPA/train.jsonl", jsonl({**copa, "question": "reason", "label": 0}))
    assert error_of("copa", "train", tmp_path) == (
        f"{path} line 1: unknown question 'reason'; expected 'cause' or 'effect'"
    )


def test_superglue_wrong_field_type(tmp_path):
    path = write(tmp_path, "superglue/WiC/val.jsonl",
                 jsonl({"word": 3, "sentence1": "a", "sentence2": "b", "label": True, "idx": 0}))
    assert error_of("wic", "validation", tmp_path) == f"{path} line 1: field 'word' should be str, got int 3"


def test_wsc_missing_target_span(tmp_path):
    record = {"text": "Mark lied. He was bad.", "target": {"span1_text": "Mark", "span1_index": 0}, "label": True, "idx": 0}
    path = write(tmp_path, "superglue/WSC/train.jsonl", jsonl(record))
    assert error_of("wsc", "train", tmp_path) == (
        f"{path} line 1: missing field 'target.span2_text'; expected it in every record"
    )


def multirc_record(answer_label: object = 1) -> dict:
    return {"idx": 7, "version": 1.1, "passage": {"text": "Para.", "questions": [
        {"question": "Q0?", "idx": 0, "answers": [{"text": "a", "idx": 0, "label": 0}]},
        {"question": "Q1?", "idx": 1, "answers": [{"text": "b", "idx": 1, "label": 1}, {"text": "c", "idx": 2, "label": answer_label}]},
    ]}}


def test_multirc_nested_rows_and_errors(tmp_path):
    write(tmp_path, "superglue/MultiRC/val.jsonl", jsonl(multirc_record()))
    examples = load_split("multirc", "validation", tmp_path)
    assert [(e.text, e.text_pair, e.label, e.group, e.uid) for e in examples] == [
        ("Para.", "Q0? a", 0, "7-0", "superglue/MultiRC/val.jsonl:1:q0a0"),
        ("Para.", "Q1? b", 1, "7-1", "superglue/MultiRC/val.jsonl:1:q1a0"),
        ("Para.", "Q1? c", 1, "7-1", "superglue/MultiRC/val.jsonl:1:q1a1"),
    ]
    path = write(tmp_path, "superglue/MultiRC/val.jsonl", jsonl(multirc_record(), multirc_record("yes")))
    assert error_of("multirc", "validation", tmp_path) == (
        f"{path} line 2: unknown passage.questions[1].answers[1].label 'yes'; expected one of 0, 1"
    )
    broken = multirc_record()
    del broken["passage"]["questions"][1]["answers"][0]["label"]
    path = write(tmp_path, "superglue/MultiRC/val.jsonl", jsonl(broken))
    assert error_of("multirc", "validation", tmp_path) == (
        f"{path} line 1: missing field 'passage.questions[1].answers[0].label'; expected it in every record"
    )


def test_superglue_missing_file(tmp_path):
    (tmp_path / "superglue").mkdir()
    message = error_of("boolq", "validation", tmp_path)
    assert str(tmp_path / "superglue" / "BoolQ" / "val.jsonl") in message and "SOFTPROMPT_DATA" in message


def test_superglue_undecodable_bytes(tmp_path):
    good = json.dumps(CB_OK).encode()
    path = write(tmp_path, "superglue/CB/val.jsonl", good + b"\n" + good.replace(b"P.", b"P\xff.") + b"\n")
    assert error_of("cb", "validation", tmp_path) == (
        f"{path} line 2: cannot decode byte(s) ff at column 15; expected utf-8 text"
    )


# --- Financial PhraseBank ------------------------------------------------------------------------

def test_fpb_row_without_label_separator(tmp_path):
    path = write(tmp_path, "financial_phrasebank/Sentences_AllAgree.txt", "Profit rose .@positive\nNo label here\n")
    assert error_of("fpb", "train", tmp_path) == f"{path} line 2: expected 'sentence@label', got 'No label here'"


def test_fpb_unknown_label(tmp_path):
    path = write(tmp_path, "financial_phrasebank/Sentences_AllAgree.txt", "Profit rose .@positive\nSales fell .@bad\n")
    assert error_of("fpb", "train", tmp_path) == (
        f"{path} line 2: unknown label 'bad'; expected one of negative, neutral, positive"
    )


def test_fpb_allagree_must_be_utf8_but_others_are_latin1(tmp_path):
    latin1_row = "Sepp\u00e4l\u00e4 sales rose .@positive\n".encode("latin-1")
    path = write(tmp_path, "financial_phrasebank/Sentences_AllAgree.txt", b"Profit rose .@positive\n" + latin1_row)
    assert error_of("fpb", "train", tmp_path) == f"{path} line 2: cannot decode byte(s) e4 at column 5; expected utf-8 text"
    write(tmp_path, "financial_phrasebank/Sentences_50Agree.txt", latin1_row * 10)
    task = get_task("fpb", agreement="50")
    rows = [e for split in ("train", "validation", "test") for e in load_split(task, split, tmp_path)]
    assert len(rows) == 10 and rows[0].text == "Sepp\u00e4l\u00e4 sales rose ."


def test_fpb_sentence_with_at_sign_splits_at_the_last_one(tmp_path):
    write(tmp_path, "financial_phrasebank/Sentences_AllAgree.txt", "Mail ir@example.com now .@neutral\n" * 10)
    rows = load_split("fpb", "train", tmp_path)
    assert rows[0].text == "Mail ir@example.com now ." and rows[0].label == 1


def test_fpb_missing_file(tmp_path):
    (tmp_path / "financial_phrasebank").mkdir()
    message = error_of("fpb-binary", "test", tmp_path)
    assert str(tmp_path / "financial_phrasebank" / "Sentences_AllAgree.txt") in message and "--data-dir" in message


# --- TweetEval -----------------------------------------------------------------------------------

def test_tweeteval_line_counts_must_match(tmp_path):
    texts = write(tmp_path, "tweeteval/sentiment/val_text.txt", "a\nb\nc\n")
    labels = write(tmp_path, "tweeteval/sentiment/val_labels.txt", "0\n2\n")
    assert error_of("tweeteval", "validation", tmp_path) == (
        f"{texts} has 3 lines but {labels} has 2; expected one label line per text line"
    )


def test_tweeteval_unknown_label(tmp_path):
    write(tmp_path, "tweeteval/sentiment/test_text.txt", "a\nb\nc\n")
    labels = write(tmp_path, "tweeteval/sentiment/test_labels.txt", "0\n2\n3\n")
    assert error_of("tweeteval", "test", tmp_path) == f"{labels} line 3: unknown label '3'; expected one of '0', '1', '2'"


def test_tweeteval_missing_labels_file(tmp_path):
    write(tmp_path, "tweeteval/sentiment/val_text.txt", "a\n")
    message = error_of("tweeteval-binary", "validation", tmp_path)
    assert str(tmp_path / "tweeteval" / "sentiment" / "val_labels.txt") in message


def test_tweeteval_lines_split_on_newline_only(tmp_path):
    # \x0b and \u2028 are line breaks for str.splitlines but are text inside a tweet
    write(tmp_path, "tweeteval/sentiment/val_text.txt", "a\x0bb\nc\u2028d\n")
    write(tmp_path, "tweeteval/sentiment/val_labels.txt", "0\n2\n")
    rows = load_split("tweeteval", "validation", tmp_path)
    assert [(e.text, e.label) for e in rows] == [("a\x0bb", 0), ("c\u2028d", 2)]


# --- IMDB tarball --------------------------------------------------------------------------------

def make_tarball(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_imdb_missing_tarball(tmp_path):
    (tmp_path / "imdb").mkdir()
    message = error_of("imdb", "train", tmp_path)
    assert str(tmp_path / "imdb" / "aclImdb_v1.tar.gz") in message and "SOFTPROMPT_DATA" in message


def test_imdb_corrupt_tarball(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    path = write(tmp_path, "imdb/aclImdb_v1.tar.gz", b"\x1f\x8b\x08\x00 definitely not a tarball" * 50)
    message = error_of("imdb", "test", tmp_path)
    assert message.startswith(f"{path}: cannot read the tarball (")
    assert "expected the aclImdb_v1.tar.gz release" in message


def test_imdb_undecodable_review(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    path = make_tarball(tmp_path / "imdb" / "aclImdb_v1.tar.gz", {
        "aclImdb/train/pos/0_9.txt": b"Great.",
        "aclImdb/train/neg/1_2.txt": b"Bad \xff film.",
        "aclImdb/test/pos/0_8.txt": b"Fine.",
    })
    assert error_of("imdb", "train", tmp_path) == (
        f"{path} member aclImdb/train/neg/1_2.txt: cannot decode byte 0xff at offset 4; expected UTF-8 text"
    )


def test_imdb_empty_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    path = make_tarball(tmp_path / "imdb" / "aclImdb_v1.tar.gz", {"aclImdb/train/pos/0_9.txt": b"Great."})
    assert re.fullmatch(re.escape(f"{path}: found no reviews under aclImdb/test/") + ".*", error_of("imdb", "train", tmp_path))
