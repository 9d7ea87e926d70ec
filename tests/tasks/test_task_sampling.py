"""Deterministic subsampling with a local generator; grouped tasks keep whole groups."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from softprompt.errors import ConfigError
from softprompt.tasks import Example, load_split, load_split_with_report, subsample


def make_examples(n: int, groups: int | None = None) -> list[Example]:
    return [Example(f"t{i}", None, i % 2, None if groups is None else f"g{i % groups}", f"f:{i}") for i in range(n)]


def test_same_seed_same_rows_different_seed_different_rows(data_root):
    first = load_split("sst2", "validation", data_root, limit=50, seed=3)
    again = load_split("sst2", "validation", data_root, limit=50, seed=3)
    other = load_split("sst2", "validation", data_root, limit=50, seed=4)
    assert len(first) == 50 and first == again
    assert [e.uid for e in first] != [e.uid for e in other]
    # original file order is kept
    lines = [int(e.uid.rsplit(":", 1)[1]) for e in first]
    assert lines == sorted(lines)


def test_sampling_does_not_touch_global_rng_state():
    np.random.seed(123)
    random.seed(123)
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    subsample(make_examples(100), 10, seed=5)
    assert (np.random.get_state()[1] == numpy_state).all() and random.getstate() == python_state


def test_subsample_edges():
    examples = make_examples(10)
    assert subsample(examples, 10, seed=0) == examples
    assert subsample(examples, 99, seed=0) == examples
    assert subsample(examples, 0, seed=0) == []
    assert len(subsample(examples, 3, seed=0)) == 3
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="limit must be a non-negative integer"):
            subsample(examples, bad, seed=0)  # type: ignore[arg-type]


def test_grouped_subsample_keeps_whole_groups():
    examples = make_examples(40, groups=8)  # 8 groups of 5
    chosen = subsample(examples, 12, seed=1, grouped=True)
    assert len(chosen) == 10  # two whole groups fit in 12
    assert set(Counter(e.group for e in chosen).values()) == {5}
    assert subsample(examples, 12, seed=1, grouped=True) == chosen


def test_multirc_limit_keeps_questions_whole(data_root):
    full = Counter(e.group for e in load_split("multirc", "validation", data_root))
    sample, report = load_split_with_report("multirc", "validation", data_root, limit=100, seed=0)
    assert 90 <= len(sample) <= 100
    assert all(count == full[group] for group, count in Counter(e.group for e in sample).items())
    assert report.not_sampled == 4_848 - len(sample) and report.rows_returned == len(sample)


def test_binary_view_limit_applies_after_dropping(data_root):
    sample, report = load_split_with_report("fpb-binary", "test", data_root, limit=40, seed=0)
    assert len(sample) == 40 and {e.label for e in sample} <= {0, 1}
    assert report.rows_read == 227 and report.rows_dropped == 139 and report.not_sampled == 88 - 40
    assert "48 not sampled (limit)" in report.summary()
