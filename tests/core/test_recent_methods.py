"""ULPT, ADePT and LoPA against their published equations, written out here element by element.

Sources: ULPT github.com/MANGA-UOFA/ULPT (peft/tuners/prompt_tuning_lodim.py), ADePT
github.com/HungerPWAY/ADePT (peft/peft_model.py PROMPT_TUNING_LORAX, README run script), LoPA
github.com/jabhinav/Prompt-Tuning-Strikes-Back-with-LOPA (utils/model.py, custom_peft/peft_lopa_model.py).
The all-methods suites (tests/core/test_methods.py, test_cached_decoding.py, serve/, interop/) take
the presets `ulpt`, `adept`, `lopa` from PRESETS like every other soft prompt.
"""

import math

import torch
from torch import nn

from softprompt.methods import PRESETS, method_config
from softprompt.producers import PRODUCERS, ProducerInput
from softprompt.producers.adept import ADePTConfig, ADePTPrompt, budget_rank
from softprompt.producers.lopa import LoPAConfig, LoPAPromptGenerator
from softprompt.producers.static import StaticPrompt, cycle
from softprompt.producers.ulpt import ULPTConfig, ULPTPrompt, projection_bound
from tests.core.helpers import TEXTS, batch, build

D = 16
LENGTHS = [7, 3, 5]  # real tokens per row; rows are right-padded to 7


def right_padded(seed: int = 0, dim: int = D):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(len(LENGTHS), max(LENGTHS), dim, generator=g)
    mask = torch.arange(max(LENGTHS))[None, :] < torch.tensor(LENGTHS)[:, None]
    return e, mask


def jitter(module: nn.Module, seed: int = 1, std: float = 0.3) -> None:
    """Every parameter away from its init (zero-initialised ones included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


class FixedMask(nn.Module):
    """A stand-in for nn.Dropout that multiplies by a fixed mask: shows where dropout acts."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask


def test_presets_registry_and_input_use():
    for name, kind in (("ulpt", "ulpt"), ("adept", "adept"), ("lopa", "lopa")):
        assert PRESETS[name]["producer"]["kind"] == kind and PRESETS[name]["site"]["kind"] == "embeddings"
        assert method_config(name).producer_kind == kind
    assert PRODUCERS["ulpt"] is ULPTPrompt and ULPTPrompt.folds_to_static and not ULPTPrompt.input_dependent
    assert PRODUCERS["adept"] is ADePTPrompt and ADePTPrompt.edits_embeddings and not ADePTPrompt.input_dependent
    assert PRODUCERS["lopa"] is LoPAPromptGenerator and LoPAPromptGenerator.input_dependent


# -- ULPT ------------------------------------------------------------------------------------------
def test_ulpt_prompt_is_the_lifted_low_dimensional_prompt_scaled_then_shifted():
    n, r = 5, 3
    gen = ULPTPrompt(ULPTConfig(num_tokens=n, rank=r), D, D)
    jitter(gen)  # scale and shift away from 1 and 0
    with torch.no_grad():
        got = gen(None)
        assert got.shape == (1, n, D)
        z, p, s, b = gen.z, gen.projection, gen.scale, gen.shift
        for i in range(n):
            for j in range(D):  # e_ij = s_j * sum_k z_ik p~_kj + b_j
                expected = s[j] * sum(z[i, k] * p[k, j] for k in range(r)) + b[j]
                assert torch.allclose(got[0, i, j], expected, atol=1e-6)
        folded = gen.fold()
        assert isinstance(folded, StaticPrompt) and torch.equal(folded(None), got)


def test_ulpt_init_frozen_projection_and_parameter_count():
    n, r, d = 400, 4, 64
    torch.manual_seed(0)
    gen = ULPTPrompt(ULPTConfig(num_tokens=n, rank=r), d, d)
    assert 0.9 < gen.z.std().item() < 1.1 and abs(gen.z.mean().item()) < 0.1  # nn.Embedding: N(0, 1)
    bound = math.sqrt(6 / (r + d))
    assert projection_bound(r, d) == bound
    p = gen.projection
    assert p.shape == (r, d) and p.abs().max() <= bound and p.abs().max() > 0.95 * bound
    assert abs(p.var().item() - bound ** 2 / 3) < 0.25 * bound ** 2 / 3  # uniform on (-a, a)
    assert torch.equal(gen.scale, torch.ones(d)) and torch.equal(gen.shift, torch.zeros(d))
    # the projection is frozen: a buffer, saved with the adapter, never trained
    assert "projection" not in dict(gen.named_parameters()) and "projection" in gen.state_dict()
    assert sum(p.numel() for p in gen.parameters()) == n * r + 2 * d
    gen(None).sum().backward()
    assert p.grad is None and gen.z.grad is not None and gen.scale.grad is not None and gen.shift.grad is not None
    # drawn from the run's seed
    torch.manual_seed(0)
    again = ULPTPrompt(ULPTConfig(num_tokens=n, rank=r), d, d)
    torch.manual_seed(1)
    other = ULPTPrompt(ULPTConfig(num_tokens=n, rank=r), d, d)
    assert torch.equal(again.projection, p) and not torch.equal(other.projection, p)


def test_ulpt_preset_trains_and_exports_to_peft_as_prompt_tuning(tmp_path):
    from tests.interop.test_peft import assert_same_outputs, encode, fresh_peft
    from tests.interop.test_peft import build as peft_build

    from softprompt.interop.peft import export_peft

    model = build("tiny-llama", "ulpt")
    assert model.producer.cfg.num_tokens == 100 and model.producer.cfg.rank == 2
    assert model.num_trainable() - sum(p.numel() for p in model.head.parameters()) == 100 * 2 + 2 * 64
    exported = peft_build("tiny-llama", "ulpt")  # 4 tokens, weights away from init
    export_peft(exported, tmp_path / "peft")
    ids, mask, types = encode(exported.backbone.tokenizer)
    assert_same_outputs(fresh_peft("tiny-llama", tmp_path / "peft"), exported, ids, mask, types)


# -- ADePT -----------------------------------------------------------------------------------------
def test_adept_offsets_every_text_token_by_one_shared_feed_forward_network():
    m, r = 4, 3
    gen = ADePTPrompt(ADePTConfig(num_tokens=m, rank=r), D, D).eval()
    jitter(gen)
    e, mask = right_padded()
    with torch.no_grad():
        got = gen.adjust_embeddings(e, mask)
        A, a, B, b = gen.ffn_a, gen.ffn_a_bias, gen.ffn_b, gen.ffn_b_bias
        for row, n in enumerate(LENGTHS):
            for i in range(max(LENGTHS)):
                x = e[row, i]
                hidden = [max(0.0, float(sum(x[j] * A[j, k] for j in range(D)) + a[k])) for k in range(r)]
                offset = torch.stack([sum(hidden[k] * B[k, j] for k in range(r)) + b[j] for j in range(D)])
                expected = x + offset if i < n else x  # padding keeps its embedding
                assert torch.allclose(got[row, i], expected, atol=1e-5), (row, i)
        assert torch.equal(gen(None), gen.prompt.unsqueeze(0)) and gen(None).shape == (1, m, D)


def test_adept_offset_is_token_shared_not_position_based():
    gen = ADePTPrompt(ADePTConfig(num_tokens=4, rank=3), D, D).eval()
    jitter(gen)
    e, mask = right_padded()
    e[0, 5] = e[1, 0]  # the same token at position 5 of one row and position 0 of another
    with torch.no_grad():
        got = gen.adjust_embeddings(e, mask)
        assert torch.allclose(got[0, 5] - e[0, 5], got[1, 0] - e[1, 0], atol=1e-6)
        left = torch.zeros_like(e)  # left padding: the same tokens get the same embeddings
        left_mask = torch.zeros_like(mask)
        for row, n in enumerate(LENGTHS):
            left[row, -n:] = e[row, :n]
            left_mask[row, -n:] = True
        moved = gen.adjust_embeddings(left, left_mask)
        for row, n in enumerate(LENGTHS):
            assert torch.allclose(moved[row, -n:], got[row, :n], atol=1e-6)
    assert gen.max_input_tokens is None  # no table of positions: any input length


def test_adept_dropout_acts_on_the_hidden_layer():
    """The reference drops the pre-activation; for a non-negative mask that equals dropping after the ReLU."""
    r = 3
    gen = ADePTPrompt(ADePTConfig(num_tokens=4, rank=r), D, D).train()
    assert gen.dropout.p == 0.1
    jitter(gen)
    e, mask = right_padded()
    drop = (torch.rand(len(LENGTHS), max(LENGTHS), r, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    gen.dropout = FixedMask(drop)
    with torch.no_grad():
        got = gen.adjust_embeddings(e, mask)
        hidden = torch.relu((e @ gen.ffn_a + gen.ffn_a_bias) * drop)  # reference: relu(dropout(e A + a))
        expected = e + (hidden @ gen.ffn_b + gen.ffn_b_bias) * mask.unsqueeze(-1)
    assert torch.allclose(got, expected, atol=1e-6)


def test_adept_init_budget_rule_and_groups():
    torch.manual_seed(0)
    gen = ADePTPrompt(ADePTConfig(num_tokens=60), 768, 768)
    assert gen.rank == 19  # the reference README's T5-base run: m 60, r 19
    assert budget_rank(ADePTConfig(num_tokens=60), 384, 384) == 19  # minilm-l6
    count = sum(p.numel() for p in gen.parameters())
    assert count == 60 * 768 + 2 * 768 * 19 + 19 + 768 <= 100 * 768 < count + 2 * 768 + 1  # the largest r that fits
    bound = 1 / math.sqrt(19)  # Kaiming-uniform (a = sqrt 5) on a d x r tensor: fan_in = r
    assert gen.ffn_a.abs().max() <= bound and gen.ffn_a.abs().max() > 0.95 * bound
    for zero in (gen.ffn_b, gen.ffn_a_bias, gen.ffn_b_bias):
        assert not zero.any()
    e, mask = right_padded(dim=768)
    assert torch.equal(gen.eval().adjust_embeddings(e, mask), e)  # E' = E at step 0
    groups = gen.param_groups()
    assert groups["prompt"] == [gen.prompt] and len(groups["lowrank"]) == 4
    assert ADePTPrompt.default_lrs == {"prompt": 3e-1, "lowrank": 1e-4}


def test_adept_preset_starts_from_the_reference_text():
    model = build("tiny-bert", "adept")
    tok, emb = model.backbone.tokenizer, model.runner.word_embeddings
    ids = torch.tensor(tok(PRESETS["adept"]["producer"]["init_text"], add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model.producer.prompt, emb(cycle(ids, 60)), atol=1e-6)


# -- LoPA ------------------------------------------------------------------------------------------
def lopa_reference(gen: LoPAPromptGenerator, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """f = mean of the real tokens; u, v from two tanh MLP heads; Z = Z_S * sigmoid(u v^T), entry by entry."""
    m, r, dim = gen.cfg.num_tokens, gen.cfg.rank, gen.out_dim
    out = torch.empty(e.shape[0], m, dim)
    for row in range(e.shape[0]):
        n = int(mask[row].sum())
        f = e[row, :n].mean(0)
        row_out = gen.row_out.weight @ torch.tanh(gen.row_dense.weight @ f + gen.row_dense.bias) + gen.row_out.bias
        col_out = gen.col_out.weight @ torch.tanh(gen.col_dense.weight @ f + gen.col_dense.bias) + gen.col_out.bias
        for i in range(m):
            for j in range(dim):  # u[i, k] = row_out[i r + k], v[j, k] = col_out[j r + k] (the reference's view)
                z_i = sum(row_out[i * r + k] * col_out[j * r + k] for k in range(r))
                out[row, i, j] = gen.shared[i, j] / (1 + torch.exp(-z_i))
    return out


def test_lopa_prompt_is_the_shared_prompt_gated_by_a_low_rank_instance_part():
    gen = LoPAPromptGenerator(LoPAConfig(num_tokens=3, rank=2), out_dim=12, hidden_size=D).eval()
    jitter(gen, std=0.5)
    e, mask = right_padded()
    with torch.no_grad():
        got = gen(ProducerInput(e, e, mask))
        assert got.shape == (3, 3, 12)
        assert torch.allclose(got, lopa_reference(gen, e, mask), atol=1e-5)
        assert (got.abs() <= gen.shared.abs() + 1e-6).all()  # a gate in (0, 1) on each entry of Z_S
        other = e.clone()
        other[1, 3:] = 100.0  # padding does not change the prompt
        assert torch.allclose(gen(ProducerInput(other, other, mask)), got, atol=1e-6)
        assert not torch.allclose(got[0], got[1])  # one prompt per input


def test_lopa_dropout_acts_on_the_encoding_before_each_head():
    gen = LoPAPromptGenerator(LoPAConfig(num_tokens=3, rank=2), out_dim=12, hidden_size=D).train()
    assert gen.row_dropout.p == gen.col_dropout.p == 0.1
    jitter(gen, std=0.5)
    e, mask = right_padded()
    g = torch.Generator().manual_seed(5)
    row_mask, col_mask = ((torch.rand(len(LENGTHS), D, generator=g) > 0.5).float() for _ in range(2))
    gen.row_dropout, gen.col_dropout = FixedMask(row_mask), FixedMask(col_mask)
    with torch.no_grad():
        got = gen(ProducerInput(e, e, mask))
        w = mask.float().unsqueeze(-1)
        f = (e * w).sum(1) / w.sum(1)
        u = gen.row_out(torch.tanh(gen.row_dense(f * row_mask))).view(-1, 3, 2)
        v = gen.col_out(torch.tanh(gen.col_dense(f * col_mask))).view(-1, 12, 2)
        expected = gen.shared * torch.sigmoid(u @ v.transpose(1, 2))
    assert torch.allclose(got, expected, atol=1e-6)


def test_lopa_init_and_sizes_follow_the_reference():
    m, r, d, d_e = 10, 4, 96, 80
    torch.manual_seed(0)
    gen = LoPAPromptGenerator(LoPAConfig(num_tokens=m, rank=r), out_dim=d, hidden_size=d_e)
    assert gen.row_dense.weight.shape == (d_e, d_e) and gen.col_dense.weight.shape == (d_e, d_e)
    assert gen.row_out.weight.shape == (m * r, d_e) and gen.col_out.weight.shape == (d * r, d_e)
    for layer in (gen.row_dense, gen.row_out, gen.col_dense, gen.col_out):
        assert abs(layer.weight.std().item() - 0.02) < 0.003  # N(0, initializer_range^2)
    assert not gen.row_out.bias.any() and not gen.col_out.bias.any()
    assert gen.row_dense.bias.abs().max() <= 1 / math.sqrt(d_e)  # nn.Linear's default, not reset
    assert 0.9 < gen.shared.std().item() < 1.1  # peft's random prompt init: N(0, 1)
    expected = m * d + 2 * (d_e * d_e + d_e) + d_e * m * r + m * r + d_e * d * r + d * r
    assert sum(p.numel() for p in gen.parameters()) == expected
    assert LoPAPromptGenerator.default_lrs == {"prompt": 1e-3}


def test_lopa_preset_reads_the_input_and_trains():
    model = build("tiny-llama", "lopa")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "left")
    with torch.no_grad():
        prompts = model.producer(ProducerInput(model.runner.token_embeddings(ids), None, mask.bool()))
    assert prompts.shape == (4, 10, model.runner.hidden_size)
    assert not torch.allclose(prompts[0], prompts[1])
    hidden = build("tiny-bert", "lopa", producer={"encoder": "hidden"})  # reads the site's states instead
    ids, mask, types = batch(hidden.backbone.tokenizer, TEXTS)
    hidden.eval()
    with torch.no_grad():
        assert hidden(ids, mask, types).logits.shape == (4, 2)
