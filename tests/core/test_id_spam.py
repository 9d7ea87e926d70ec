"""ID-SPAM matches the paper: shapes, attention rows sum to 1, the prompt depends on the input."""

import torch

from softprompt.producers import ProducerInput
from softprompt.producers.attention import AttentionPromptGenerator
from tests.core.helpers import TEXTS, batch, build


def test_id_spam_defaults_are_the_papers():
    cfg = build("tiny-bert", "id-spam").producer.cfg
    assert (cfg.num_tokens, cfg.bottleneck, cfg.heads) == (10, 34, 1)  # Sec. 3.1 t; Table 12 c; one attention
    assert cfg.output_activation == "relu"  # eq. (2)
    assert cfg.dropout in (0.1, 0.2, 0.3)  # Table 7 grid
    assert AttentionPromptGenerator.default_lrs["prompt"] in (1e-3, 5e-4, 1e-4, 5e-5, 1e-5)  # Table 7 grid


def test_id_spam_generator_shapes_attention_and_input_dependence():
    model = build("tiny-bert", "id-spam", producer={"num_tokens": 10, "bottleneck": 8}).eval()
    gen = model.producer
    d = model.runner.hidden_size
    assert gen.down.in_features == d and gen.down.out_features == 8 < d
    assert gen.up.out_features == 10 * d
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS)
    e = model.runner.token_embeddings(ids)
    inp = ProducerInput(e, e, mask.bool())
    with torch.no_grad():
        weights = gen.attention_weights(e, mask.bool())
        prompts = gen(inp)
    assert weights.shape == (4, 1, ids.shape[1], ids.shape[1])
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-6)
    assert float(weights[1, 0, :, int(mask[1].sum()):].abs().max()) == 0.0  # padding gets no attention
    assert prompts.shape == (4, 10, d)
    assert not torch.allclose(prompts[0], prompts[1])  # different inputs, different prompts
    assert float(prompts.min()) >= 0.0  # eq. (2): ReLU on the output
    gen.cfg.output_activation = "none"  # the named deviation: no outer ReLU
    with torch.no_grad():
        assert float(gen(inp).min()) < 0.0


def test_mean_pooling_ablation_has_no_attention_parameters():
    full = build("tiny-bert", "id-spam")
    ablation = build("tiny-bert", "id-spam", producer={"pooling": "mean"})
    d = full.runner.hidden_size
    assert full.num_trainable() - ablation.num_trainable() == 3 * d * d
