"""`softprompt data stats`: row counts per task and split, read from the files."""

from __future__ import annotations

import re

from softprompt.cli import main
from softprompt.commands.data import format_table


def row_of(output: str, task: str) -> list[str]:
    for line in output.splitlines():
        if line.split("  ")[0].strip() == task:
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row for {task} in:\n{output}")


def test_stats_table_for_every_task(data_root, capsys):
    assert main(["data", "stats", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["task", "train", "validation", "test", "notes"]
    assert row_of(out, "sst2") == ["sst2", "67,349", "872", "1,821*"]
    assert row_of(out, "imdb") == ["imdb", "25,000", "-", "25,000"]
    assert row_of(out, "mrpc") == ["mrpc", "3,668", "408", "1,725*"]
    assert row_of(out, "boolq") == ["boolq", "9,427", "3,270", "3,245*"]
    assert row_of(out, "cola") == ["cola", "8,551", "1,043", "1,063*"]
    assert row_of(out, "stsb") == ["stsb", "5,749", "1,500", "1,379*"]
    assert row_of(out, "qnli") == ["qnli", "hub only", "5,463", "5,463*"]
    assert row_of(out, "mnli") == ["mnli", "hub only", "hub only", "hub only"]
    assert row_of(out, "tweeteval") == ["tweeteval", "hub only", "2,000", "12,284"]
    assert row_of(out, "fpb") == ["fpb", "1,811", "226", "227", "agreement all"]
    fpb_binary = row_of(out, "fpb-binary")
    assert fpb_binary[:4] == ["fpb-binary", "698", "87", "88"]
    assert "dropped train 1,113, validation 139, test 139 (label 'neutral' not in the binary view)" in fpb_binary[4]
    assert "* unlabeled" in out


def test_stats_selected_tasks_and_agreement(data_root, capsys):
    assert main(["data", "stats", "--data-dir", str(data_root), "--task", "cb", "fpb", "--agreement", "50"]) == 0
    out = capsys.readouterr().out
    assert row_of(out, "cb") == ["cb", "250", "56", "250*"]
    assert row_of(out, "fpb") == ["fpb", "3,876", "484", "486", "agreement 50"]
    assert "sst2" not in out


def test_stats_lists_generation_tasks_and_e2e_mr_splits(data_root, capsys):
    tasks = ["e2e", "e2e-official", "sst2-t2t", "fpb-binary-t2t"]
    assert main(["data", "stats", "--data-dir", str(data_root), "--task", *tasks]) == 0
    out = capsys.readouterr().out
    assert row_of(out, "e2e") == ["e2e", "3,777", "55", "54", "by MR: train 438 MRs / 3,777 references, "
                                  "validation 55 MRs / 515 references, test 54 MRs / 380 references"]
    assert row_of(out, "e2e-official") == ["e2e-official", "hub only", "hub only", "hub only"]
    assert row_of(out, "sst2-t2t") == ["sst2-t2t", "67,349", "872", "1,821*", "text-to-text, targets negative/positive"]
    fpb = row_of(out, "fpb-binary-t2t")
    assert fpb[:4] == ["fpb-binary-t2t", "698", "87", "88"] and "text-to-text, targets negative/positive" in fpb[4]


def test_stats_uses_the_environment_data_dir(data_root, capsys, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_DATA", str(data_root))
    assert main(["data", "stats", "--task", "wsc"]) == 0
    assert row_of(capsys.readouterr().out, "wsc") == ["wsc", "554", "104", "146*"]


def test_stats_without_data_dir_is_a_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SOFTPROMPT_DATA", raising=False)
    assert main(["data", "stats"]) == 2
    assert "pass --data-dir or set $SOFTPROMPT_DATA" in capsys.readouterr().err
    assert main(["data", "stats", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stats_reports_broken_files_and_fails(tmp_path, capsys):
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "glue" / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    assert main(["data", "stats", "--data-dir", str(tmp_path), "--task", "sst2"]) == 1
    captured = capsys.readouterr()
    assert row_of(captured.out, "sst2") == ["sst2", "error", "1", "error"]
    assert f"missing GLUE SST-2 train file: expected {tmp_path / 'glue' / 'SST-2' / 'train.tsv'}" in captured.err


def test_format_table_alignment():
    table = format_table(["task", "train", "notes"], [["a", "1", ""], ["bbb", "1,000", "x"]])
    assert table.splitlines() == ["task  train  notes", "----  -----  -----", "a         1", "bbb   1,000  x"]
