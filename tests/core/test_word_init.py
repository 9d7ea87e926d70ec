"""Prompts initialised from real words (Li & Liang 2021, Sec. 7.2): at key/value sites the prefix is the
keys/values the frozen model computes for the words, so it acts exactly like the words written first."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel

INIT = "the food was good and cheap"
TEXT = " so we went back"


def kv_model(name: str, method: str = "p-tuning-v2", **producer) -> SoftPromptModel:
    backbone = load_backbone(name)
    n = len(backbone.tokenizer(INIT, add_special_tokens=False)["input_ids"])  # the whole text, once
    torch.manual_seed(0)
    cfg = method_config(method, producer={"num_tokens": n, "init": "text", "init_text": INIT, **producer})
    return SoftPromptModel(backbone, cfg, 0, generative=True).eval()


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_kv_prefix_from_words_equals_the_words_written_before_the_text(name):
    model = kv_model(name)
    tok, hf = model.backbone.tokenizer, model.backbone.model
    words = tok(INIT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    text = tok(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model.lane(text, torch.ones_like(text)).logits
        reference = hf(torch.cat([words, text], 1)).logits[:, -1]
        plain = kv_model(name, init="random").lane(text, torch.ones_like(text)).logits
    assert torch.allclose(logits, reference, atol=1e-4), (logits - reference).abs().max()
    assert not torch.allclose(plain, reference, atol=1e-2)  # a random prefix is not the words


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_prefix_tuning_fits_its_mlp_to_the_words_keys_and_values(name):
    """Li & Liang's reference low-data init: Adam (500 steps, lr 1e-4) on the MSE between the MLP's output
    and the words' keys/values; the embedding it reads stays random."""
    model = kv_model(name, method="prefix-tuning")
    first, last = model.producer.init_fit
    assert last < 0.05 * first
    ids = model.backbone.tokenizer(INIT, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    with torch.no_grad():
        target = model.site.word_vectors(model.runner, ids)
        prompt = model.producer()[0]
    assert prompt.shape == target.shape
    assert torch.allclose(((prompt - target) ** 2).mean(), torch.tensor(last), rtol=0.1)
    assert (prompt - target).norm() < 0.01 * target.norm()  # hidden 512 > the tiny models' widths: exact
    tok, hf = model.backbone.tokenizer, model.backbone.model
    text = tok(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model.lane(text, torch.ones_like(text)).logits
        reference = hf(torch.cat([ids[None], text], 1)).logits[:, -1]
        plain = kv_model(name, method="prefix-tuning", init="random").lane(text, torch.ones_like(text)).logits
    assert torch.allclose(logits, reference, atol=1e-3), (logits - reference).abs().max()
    assert not torch.allclose(plain, reference, atol=1e-2)


def test_prefix_tuning_random_init_is_untouched_by_the_fit():
    model = kv_model("tiny-llama", method="prefix-tuning", init="random")
    assert model.producer.init_fit is None
    torch.manual_seed(0)
    fresh = kv_model("tiny-llama", method="prefix-tuning", init="random")
    assert torch.equal(model.producer()[0], fresh.producer()[0])


def test_text_shorter_than_the_prompt_repeats_and_encoders_get_their_own_keys():
    torch.manual_seed(0)
    cfg = method_config("p-tuning-v2", producer={"num_tokens": 5, "init": "text", "init_text": "good"})
    model = SoftPromptModel(load_backbone("tiny-bert"), cfg, 2)
    prompt = model.producer.prompt.detach()
    assert prompt.shape == (5, model.site.prompt_dim(model.runner))
    assert prompt.abs().mean() > 0.1  # activations, not the 0.02-scale random init
    ids = model.backbone.tokenizer("good", add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    with torch.no_grad():
        again = model.site.word_vectors(model.runner, ids.repeat(5)[:5])
    assert torch.equal(prompt, again.to(prompt.dtype))


def test_encoder_decoder_prefixes_from_words_are_refused():
    cfg = method_config("p-tuning-v2", producer={"num_tokens": 4, "init": "text", "init_text": "good"})
    with pytest.raises(ConfigError, match="method.producer.init: .*decoder"):
        SoftPromptModel(load_backbone("tiny-t5"), cfg, 0, generative=True)
