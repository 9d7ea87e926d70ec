"""Cartridges (Eyuboglu et al. 2025): a trainable key/value cache that starts as a real prefill of a text."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel

CORPUS = "the food was good and cheap, the staff were kind"
TEXT = " so we went back"


def cartridge(name: str, generative: bool = True, **producer) -> SoftPromptModel:
    backbone = load_backbone(name)
    n = len(backbone.tokenizer(CORPUS)["input_ids"])  # the whole corpus as the model reads it (BOS included)
    torch.manual_seed(0)
    cfg = method_config("cartridge", producer={"num_tokens": n, "init_text": CORPUS, **producer})
    return SoftPromptModel(backbone, cfg, 0 if generative else 2, generative=generative).eval()


def hf_cache(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(key, value) per layer, each (B, H, T, hd), from any transformers cache."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in (cache.to_legacy_cache() if hasattr(cache, "to_legacy_cache") else cache)]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_cartridge_starts_as_the_prefill_of_its_text(name):
    model = cartridge(name)
    tok, hf = model.backbone.tokenizer, model.backbone.model
    corpus = tok(CORPUS, return_tensors="pt")["input_ids"]
    text = tok(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        own = hf_cache(hf(corpus, use_cache=True).past_key_values)
        prefixes = model.site.prefixes(model.producer(), model.runner, 1)
        logits = model.lane(text, torch.ones_like(text)).logits
        reference = hf(torch.cat([corpus, text], 1)).logits[:, -1]
    assert sorted(prefixes) == list(range(len(own)))
    for layer, (k, v) in enumerate(own):  # the prefix is the base's own keys/values for the corpus tokens
        assert torch.allclose(prefixes[layer][0], k, atol=1e-5) and torch.allclose(prefixes[layer][1], v, atol=1e-5)
    assert torch.allclose(logits, reference, atol=1e-4), (logits - reference).abs().max()


def test_the_attention_sink_stays_frozen_and_the_rest_trains():
    model = cartridge("tiny-llama", generative=False, frozen_tokens=1)
    sink, rest = model.producer.sink.clone(), model.producer.prompt.detach().clone()
    assert sink.shape[0] == 1 and "producer.sink" in model.adapter_state()  # saved, ...
    assert all("sink" not in name for name in model.adapter_params())  # ... never trained
    ids = model.backbone.tokenizer(["good fun", "bad plot"], return_tensors="pt")["input_ids"]
    model.train()
    model(ids, torch.ones_like(ids), labels=torch.tensor([0, 1])).loss.backward()
    torch.optim.SGD(model.adapter_params().values(), lr=1.0).step()
    assert torch.equal(model.producer.sink, sink)
    assert not torch.allclose(model.producer.prompt, rest)


def test_encoder_decoder_cartridges_prefill_the_encoder_and_start_the_decoder_random():
    model = cartridge("tiny-t5")
    ids = model.backbone.tokenizer(CORPUS, return_tensors="pt")["input_ids"][0]
    prompt = model.producer()[0]
    words = model.site.word_vectors(model.runner, ids, partial=True)
    assert words.shape[1] < prompt.shape[1]
    assert torch.equal(prompt[:, : words.shape[1]], words)
    assert prompt[:, words.shape[1]:].std() < 0.05  # the decoder's prefixes: N(0, init_std^2)


def test_a_corpus_shorter_than_the_cartridge_names_the_field():
    with pytest.raises(ConfigError, match="method.producer.init_text: has .* fewer than num_tokens"):
        SoftPromptModel(load_backbone("tiny-llama"),
                        method_config("cartridge", producer={"num_tokens": 64, "init_text": "short"}), 2)
    with pytest.raises(ConfigError, match="frozen_tokens"):
        method_config("cartridge", producer={"num_tokens": 2, "frozen_tokens": 3})
