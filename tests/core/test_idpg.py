"""IDPG (Wu et al. 2022) against a hand-written PHM generator, and as a method like the others."""

import torch

from softprompt.producers import PRODUCERS, ProducerInput
from softprompt.producers.idpg import IDPGConfig, IDPGPromptGenerator
from tests.core.helpers import TEXTS, batch, build


def reference(gen: IDPGPromptGenerator, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """f = mean(E); h = GELU(f W1 + b1), W1 = sum_i S_i (x) A_i; P = h W2 + B, W2 = sum_i S'_i (x) U_i."""
    def phm(layer):
        n = layer.shared.shape[0]
        out = torch.zeros(layer.blocks.shape[1] * n, layer.blocks.shape[2] * n)
        for i in range(n):  # Kronecker product written out block by block
            for r in range(n):
                for c in range(n):
                    rows = slice(r * layer.blocks.shape[1], (r + 1) * layer.blocks.shape[1])
                    cols = slice(c * layer.blocks.shape[2], (c + 1) * layer.blocks.shape[2])
                    out[rows, cols] += layer.shared[i, r, c] * layer.blocks[i]
        return out

    w = mask.float().unsqueeze(-1)
    f = (e * w).sum(1) / w.sum(1)
    h = torch.nn.functional.gelu(f @ phm(gen.down) + gen.down_bias)
    return (h @ phm(gen.up)).view(e.shape[0], gen.cfg.num_tokens, -1) + gen.up_bias


def test_idpg_generator_equals_the_hand_written_equations():
    torch.manual_seed(0)
    gen = IDPGPromptGenerator(IDPGConfig(num_tokens=3, bottleneck=8, phm_n=4), out_dim=12, hidden_size=16).eval()
    e = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = gen(ProducerInput(e, e, mask))
    assert out.shape == (2, 3, 12)
    assert torch.allclose(out, reference(gen, e, mask), atol=1e-5)
    other = e.clone()
    other[0, 3:] = 100.0  # padding does not change the prompt
    assert torch.allclose(gen(ProducerInput(other, other, mask))[0], out[0], atol=1e-6)


def test_phm_layers_hold_about_one_nth_of_a_dense_layers_parameters():
    gen = IDPGPromptGenerator(IDPGConfig(num_tokens=5, bottleneck=16, phm_n=4), out_dim=384, hidden_size=384)
    dense = 384 * 16 + 16 * 5 * 384
    phm = gen.down.blocks.numel() + gen.up.blocks.numel()
    assert phm * 4 == dense


def test_idpg_is_registered_input_dependent_and_trains():
    assert PRODUCERS["idpg"] is IDPGPromptGenerator and IDPGPromptGenerator.input_dependent
    model = build("tiny-llama", "idpg")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "left")
    with torch.no_grad():
        prompts = model.producer(ProducerInput(model.runner.token_embeddings(ids), None, mask.bool()))
    assert prompts.shape == (4, 5, model.runner.hidden_size)
    assert not torch.allclose(prompts[0], prompts[1])  # one prompt per input
