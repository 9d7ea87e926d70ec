"""Adapters are built in a thread that ends with the build (no OpenMP team left in long-lived threads)."""

import threading

import pytest

from softprompt.serve.store import in_fresh_thread


def test_in_fresh_thread_returns_raises_and_leaves_no_thread_behind():
    seen = []
    assert in_fresh_thread(lambda a, b: seen.append(threading.current_thread()) or a + b, 2, 3) == 5
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()
    with pytest.raises(KeyError, match="boom"):
        in_fresh_thread(lambda: {}["boom"])
