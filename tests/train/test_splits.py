"""The selection split carved from train: size rule, determinism, disjointness, stratification, report."""

from collections import Counter

import pytest

from softprompt.errors import ConfigError
from softprompt.tasks import Example, load_split
from softprompt.train.splits import CARVE_MAX, carve_size, carve_validation


def rows(n, labels=(0, 1), group=None):
    return [Example(f"text {i}", None, labels[i % len(labels)], group(i) if group else None, f"f:{i}") for i in range(n)]


@pytest.mark.parametrize("n,size", [(1, 1), (4, 1), (14, 1), (15, 2), (64, 6), (120, 12), (4000, 400),
                                    (9994, 999), (9995, 1000), (67_349, CARVE_MAX)])
def test_size_is_ten_percent_rounded_half_up_at_least_one_at_most_1000(n, size):
    assert carve_size(n) == size


def test_carve_is_disjoint_from_training_and_covers_the_split():
    data = rows(500)
    carve = carve_validation(data, "t")
    val, rest = {e.uid for e in carve.validation}, {e.uid for e in carve.rest}
    assert len(val) == 50 and len(rest) == 450
    assert not val & rest and val | rest == {e.uid for e in data}
    # both keep the file order
    assert [e.uid for e in carve.validation] == sorted(val, key=lambda u: int(u[2:]))


def test_carve_is_deterministic_and_ignores_the_run_seed_and_input_copies():
    a = carve_validation(rows(300), "t")
    b = carve_validation(list(rows(300)), "t")
    assert [e.uid for e in a.validation] == [e.uid for e in b.validation]
    assert a.report["fingerprint"] == b.report["fingerprint"]
    assert carve_validation(rows(300), "t", seed=7).report["fingerprint"] != a.report["fingerprint"]


def test_train_limit_sets_the_size_and_smaller_carves_are_subsets_of_larger_ones():
    data = rows(2000)
    full = carve_validation(data, "t")  # 200
    small = carve_validation(data, "t", n_train=640)  # 64
    assert len(full.validation) == 200 and len(small.validation) == 64
    assert {e.uid for e in small.validation} <= {e.uid for e in full.validation}
    assert small.report["of_rows"] == 640 and small.report["rows"] == 64


def test_stratified_carve_keeps_the_label_proportions():
    data = rows(1000, labels=(0, 0, 0, 1))  # 750 / 250
    carve = carve_validation(data, "t")
    assert Counter(e.label for e in carve.validation) == {0: 75, 1: 25}
    assert carve.report["label_counts"] == {"0": 75, "1": 25} and carve.report["stratified"] is True


def test_grouped_tasks_carve_whole_groups():
    data = rows(200, group=lambda i: f"q{i // 4}")  # 50 groups of 4
    carve = carve_validation(data, "t", grouped=True)
    val_groups = {e.group for e in carve.validation}
    assert len(carve.validation) == 20 and len(val_groups) == 5
    assert not val_groups & {e.group for e in carve.rest}
    assert carve.report["stratified"] is False and carve.report["grouped"] is True


def test_a_single_row_cannot_be_carved():
    with pytest.raises(ConfigError, match="selection_split"):
        carve_validation(rows(1), "t")


def test_report_names_the_rule_and_the_counts():
    carve = carve_validation(rows(120), "sst2")
    text = carve.summary()
    assert "12 rows carved as the selection split (10% of 120 training rows, at most 1,000" in text
    assert "108 rows left for training" in text and carve.report["fingerprint"] in text


def test_sst2_carve_is_1000_rows_of_train_none_in_the_training_pool(data_dir):
    train = load_split("sst2", "train", data_dir)
    carve = carve_validation(train, "sst2")
    assert len(carve.validation) == 1000 and len(carve.rest) == 67_349 - 1000
    assert not {e.uid for e in carve.validation} & {e.uid for e in carve.rest}
    counts = Counter(e.label for e in train)
    got = Counter(e.label for e in carve.validation)
    for label in counts:  # proportional to within one row
        assert abs(got[label] - 1000 * counts[label] / len(train)) <= 1
