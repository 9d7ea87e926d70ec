"""ID-SPAM matches the paper: shapes, attention rows sum to 1, the prompt depends on the input."""

import torch

from softprompt.producers import ProducerInput
from tests.core.helpers import TEXTS, batch, build


def test_id_spam_generator_shapes_attention_and_input_dependence():
    model = build("tiny-bert", "id-spam", producer={"num_tokens": 10, "bottleneck": 8, "output_activation": "relu"}).eval()
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


def test_mean_pooling_ablation_has_no_attention_parameters():
    full = build("tiny-bert", "id-spam")
    ablation = build("tiny-bert", "id-spam", producer={"pooling": "mean"})
    d = full.runner.hidden_size
    assert full.num_trainable() - ablation.num_trainable() == 3 * d * d
