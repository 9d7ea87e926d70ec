"""E2E data-to-text: MR grouping, the seeded MR-disjoint 80/10/10 split, malformed CSV errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from softprompt.errors import DataError
from softprompt.tasks import load_split, load_split_with_report
from softprompt.tasks.loaders import e2e

SPLITS = ("train", "validation", "test")


def csv_groups(path: Path) -> dict[str, list[str]]:
    """MR -> its references in file order, read independently with the csv module."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row["mr"].strip(), []).append(row["ref"].strip())
    return groups


@pytest.fixture(scope="module")
def real_splits(data_root):
    return {split: load_split("e2e", split, data_root) for split in SPLITS}


def test_real_file_splits_the_547_mrs_80_10_10_without_overlap(data_root, real_splits):
    by_split = {split: {e.text for e in examples} for split, examples in real_splits.items()}
    assert {split: len(mrs) for split, mrs in by_split.items()} == {"train": 438, "validation": 55, "test": 54}
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]
    assert set().union(*by_split.values()) == set(csv_groups(data_root / "e2e" / "devset.csv"))


def test_real_file_references_are_grouped_by_mr(data_root, real_splits):
    groups = csv_groups(data_root / "e2e" / "devset.csv")
    assert sum(len(refs) for refs in groups.values()) == 4_672
    train = real_splits["train"]
    # train: one example per (MR, reference) pair, target = that reference
    assert len(train) == sum(len(groups[mr]) for mr in {e.text for e in train})
    assert all(e.references == (e.target,) and e.label is None for e in train)
    per_mr: dict[str, list[str]] = {}
    for example in train:
        per_mr.setdefault(example.text, []).append(example.target)
    assert per_mr == {mr: groups[mr] for mr in per_mr}
    # validation / test: one example per MR carrying every reference of it
    for split in ("validation", "test"):
        examples = real_splits[split]
        assert len({e.text for e in examples}) == len(examples)
        assert all(list(e.references) == groups[e.text] and e.target == e.references[0] for e in examples)
    assert sum(len(e.references) for s in ("validation", "test") for e in real_splits[s]) + len(train) == 4_672
    alimentum = next(e for e in real_splits["validation"] if e.uid == "e2e/devset.csv:46")
    assert alimentum.text == "name[Alimentum], area[riverside], familyFriendly[yes]"
    assert len(alimentum.references) == 37 and alimentum.group == alimentum.uid


def test_split_is_deterministic_and_seeded(data_root, real_splits):
    again = {split: load_split("e2e", split, data_root) for split in SPLITS}
    assert again == real_splits
    assert e2e.split_indices(547) == e2e.split_indices(547, seed=e2e.E2E_SPLIT_SEED)
    assert e2e.split_indices(547, seed=e2e.E2E_SPLIT_SEED + 1) != e2e.split_indices(547)
    # pinned: a changed seed or cut would silently change every reported number
    assert [e.uid for e in real_splits["test"][:3]] == ["e2e/devset.csv:14", "e2e/devset.csv:139", "e2e/devset.csv:196"]


@pytest.mark.parametrize(("n", "sizes"), [(547, (438, 55, 54)), (10, (8, 1, 1)), (3, (2, 0, 1)), (1, (1, 0, 0))])
def test_split_indices_partition(n, sizes):
    parts = e2e.split_indices(n)
    assert tuple(len(parts[s]) for s in SPLITS) == sizes
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(n))
    assert all(parts[s] == sorted(parts[s]) for s in SPLITS)


def write_csv(root: Path, content: str | bytes) -> Path:
    path = root / "e2e" / "devset.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


SMALL = (
    'mr,ref\n'
    '"name[A], food[Thai]","A serves Thai."\n'  # line 2
    '"name[A], food[Thai]","Thai food, at A."\n'  # line 3
    '"name[B], area[riverside]","B is by\nthe river. "\n'  # lines 4-5: a quoted newline
    '"name[B], area[riverside]",B is riverside.\n'  # line 6
    '"name[C], customer rating[5 out of 5]","C is rated 5 out of 5."\n'  # line 7
)


def test_small_csv_groups_references_and_names_lines(tmp_path):
    path = write_csv(tmp_path, SMALL)
    groups = e2e.group_rows(e2e.read_rows(path, tmp_path))
    assert groups == [
        e2e.MRGroup("name[A], food[Thai]", ("A serves Thai.", "Thai food, at A."), ("e2e/devset.csv:2", "e2e/devset.csv:3")),
        e2e.MRGroup("name[B], area[riverside]", ("B is by\nthe river.", "B is riverside."), ("e2e/devset.csv:4", "e2e/devset.csv:6")),
        e2e.MRGroup("name[C], customer rating[5 out of 5]", ("C is rated 5 out of 5.",), ("e2e/devset.csv:7",)),
    ]
    # 3 MRs -> 2 train MRs, 0 validation, 1 test; train is expanded to (MR, reference) pairs
    test_mr = groups[e2e.split_indices(3)["test"][0]]
    test = load_split("e2e", "test", tmp_path)
    assert [(e.text, e.references, e.target, e.uid) for e in test] == [
        (test_mr.mr, test_mr.refs, test_mr.refs[0], test_mr.uid)
    ]
    train, report = load_split_with_report("e2e", "train", tmp_path)
    assert sorted((e.text, e.target) for e in train) == sorted(
        (g.mr, ref) for g in groups if g is not test_mr for ref in g.refs
    )
    assert report.rows_read == len(train) and report.source == str(path)
    assert load_split("e2e", "validation", tmp_path) == []


@pytest.mark.parametrize(("content", "line", "expected"), [
    ("mr,reference\n", 1, "expected header 'mr,ref', got 'mr,reference'"),
    ('mr,ref\n"name[A]",ok\n"name[B]",ok,extra\n', 3, "expected 2 comma-separated fields (mr, ref), got 3"),
    ('mr,ref\n"name[A]",ok\n\n"name[B]",ok\n', 3, "expected 2 comma-separated fields (mr, ref), got 0"),
    ('mr,ref\n"name[A]","two\nlines"\n"name[B]",  \n', 4, "empty reference (ref) for MR 'name[B]'"),
    ('mr,ref\n"name[A]",ok\nname=A,ok\n', 3, "expected a meaning representation of attribute[value] slots"),
    ('mr,ref\n"name[A]",ok\n"name[A], area[x",ok\n', 3, "got 'name[A], area[x'"),
    ('mr,ref\n"name[A]",ok\n"name[B]","unterminated\n', 3, "malformed CSV"),
    ('mr,ref\n"name[A]",ok\n"name[B]","quoted"word\n', 3, "malformed CSV"),
])
def test_malformed_csv_names_file_and_line(tmp_path, content, line, expected):
    path = write_csv(tmp_path, content)
    with pytest.raises(DataError) as err:
        load_split("e2e", "train", tmp_path)
    assert str(err.value).startswith(f"{path} line {line}: ")
    assert expected in str(err.value)


def test_bad_bytes_empty_and_missing_files(tmp_path):
    path = write_csv(tmp_path, b'mr,ref\n"name[A]",caf\xe9\n')
    with pytest.raises(DataError, match=rf"{path} line 2: cannot decode byte\(s\) e9 .* expected utf-8"):
        load_split("e2e", "train", tmp_path)
    write_csv(tmp_path, "mr,ref\n")
    with pytest.raises(DataError, match="no data rows"):
        load_split("e2e", "train", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"missing E2E file: expected .*empty/e2e/devset\.csv"):
        load_split("e2e", "train", tmp_path / "empty")


def test_official_splits_are_hub_only(data_root):
    with pytest.raises(DataError, match="e2e-official train is not available offline"):
        load_split("e2e-official", "train", data_root)
