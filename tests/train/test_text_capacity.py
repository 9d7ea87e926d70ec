"""Prompt tokens take positions: inputs are cut so text + prompt fit the base (absolute-position encoders)."""

import pytest

from softprompt.backbones.tiny import MAX_POSITIONS
from softprompt.errors import ConfigError
from softprompt.methods import method_config
from softprompt.train.inference import evaluate_adapter
from softprompt.train.trainer import Trainer, train
from tests.train.test_protocol import config

PROMPT = method_config("prompt-tuning").producer.num_tokens


def test_training_longer_than_the_window_left_by_the_prompt_names_the_field(tmp_path, data_dir):
    cfg = config(tmp_path, data_dir, max_length=MAX_POSITIONS)
    with pytest.raises(ConfigError, match=rf"^max_length: {MAX_POSITIONS} text tokens do not fit tiny-bert with "
                                          rf"this prompt .*leave {MAX_POSITIONS - PROMPT}\); use max_length <= "
                                          rf"{MAX_POSITIONS - PROMPT}$"):
        Trainer(cfg, log=lambda *a: None).setup()


def test_evaluation_reads_up_to_the_window_left_by_the_prompt(tmp_path, data_dir):
    train(config(tmp_path, data_dir, epochs=1), log=lambda *a: None)
    run = tmp_path / "run"
    whole = evaluate_adapter(run, "imdb", "test", data_dir, 6, max_length=5000)  # more than the base has
    assert whole["max_length"] == MAX_POSITIONS - PROMPT
    exact = evaluate_adapter(run, "imdb", "test", data_dir, 6, max_length=MAX_POSITIONS - PROMPT)
    assert whole["scores"] == exact["scores"] and whole["truncated"] == exact["truncated"] > 0
    short = evaluate_adapter(run, "imdb", "test", data_dir, 6, max_length=16)
    assert short["max_length"] == 16 and short["truncated"] == 6


@pytest.mark.parametrize("method,taken", [("prompt-tuning", "prompt"), ("prefix-tuning", "prompt"),
                                          ("id-spam", 0), ("lora", 0)])
def test_the_window_is_exactly_what_the_site_leaves(method, taken):
    """Embedding prompts and key/value prefixes take positions; a prompt entering at layer m > 0 does not."""
    import torch

    from tests.core.helpers import build

    model = build("tiny-bert", method).eval()
    n = model.producer.num_tokens if taken == "prompt" else 0
    capacity = model.max_text_tokens()
    assert capacity == MAX_POSITIONS - n
    ids = torch.full((1, capacity), 5)
    with torch.no_grad():
        assert model(ids, torch.ones_like(ids)).logits.shape == (1, 2)  # the longest input runs
        if n:  # one more token would index past the position table
            with pytest.raises(IndexError):
                model(torch.full((1, capacity + 1), 5), torch.ones(1, capacity + 1, dtype=torch.long))
