"""Interop tests run torch single-threaded: tiny models gain nothing from threads, and on a busy
machine OpenMP threads waiting on each other made the Trainer test 5x slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
