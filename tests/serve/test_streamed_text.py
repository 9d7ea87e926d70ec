"""Streamed text: each token's delta comes from a short decode window; the deltas join to the full decode."""

import time

import pytest

from softprompt.backbones import load_backbone
from softprompt.decode import Finish, SamplingParams, Token, new_request

TEXT = "Café naïve 😀 — the soufflé was 10/10!\nNext line: 東京 ok."


def emit_all(tokenizer, ids, **params):
    events = []
    req = new_request(None, [1], SamplingParams(**params), tokenizer, None, report=events.append)
    reason = None
    for t in ids:
        reason = req.take(t, time.monotonic())
        if reason:
            break
    req.end(reason or "length")
    deltas = [e.text for e in events if isinstance(e, Token)]
    return deltas, events[-1], reason


@pytest.mark.parametrize("name", ["smollm2-135m", "tiny-llama", "tiny-t5"])
def test_deltas_join_to_the_full_decode_and_never_hold_half_characters(name):
    tok = load_backbone(name).tokenizer
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    deltas, finish, reason = emit_all(tok, ids, max_tokens=len(ids))
    assert reason == "length" and isinstance(finish, Finish)
    assert "".join(deltas) == finish.text == tok.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in d for d in deltas)
    assert len(deltas) == len(ids)  # one event per token (empty while a character is incomplete)


def test_a_stop_string_spanning_tokens_cuts_the_text_before_it():
    tok = load_backbone("smollm2-135m").tokenizer
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    deltas, finish, reason = emit_all(tok, ids, max_tokens=len(ids), stop=["soufflé was"])
    assert reason == "stop" and finish.text == "Café naïve 😀 — the "
    # token deltas may run into the stop string; the HTTP layer holds such text back (serve/streams.py)
    assert "".join(deltas).startswith(finish.text)
