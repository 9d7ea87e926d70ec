"""Context-aware Prompt Tuning (Blau et al. 2024; peft tuners/cpt) against its equations and peft's own module.

P_i = E[c_i] + m_i * delta_i * eps_i / max(||delta_i||, eps_i), written out row by row; the projection and the
prompt compared with peft's CPTEmbedding on the same context; the trainer's loop projects after each step.
The all-methods suites (tests/core/test_methods.py, test_cached_decoding.py, serve/, interop/) take the
preset `cpt` from PRESETS like every other soft prompt.
"""

import math

import pytest
import torch

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.methods import PRESETS, method_config
from softprompt.producers import PRODUCERS
from softprompt.producers.cpt import CPTConfig, CPTPrompt, context_tokens, project, token_epsilons
from tests.core.helpers import TEXTS, batch, build

EXAMPLES = [["a gripping film", "positive"], ["dull", "negative"], ["not bad at all", "positive"]]


def peft_embedding(producer, epsilon, format_epsilon, word_embeddings):
    """peft's CPT prompt encoder on the same context (training mode: it embeds cpt_token_ids itself)."""
    from peft import CPTConfig as PeftCPTConfig
    from peft.tuners.cpt import CPTEmbedding

    cfg = PeftCPTConfig(task_type="CAUSAL_LM", cpt_token_ids=producer.token_ids.tolist(),
                        cpt_tokens_type_mask=producer.token_types.tolist(), opt_projection_epsilon=epsilon,
                        opt_projection_format_epsilon=format_epsilon)
    cfg.token_dim = producer.out_dim
    return CPTEmbedding(cfg, word_embeddings)


def test_preset_registry_and_kind():
    assert PRESETS["cpt"]["producer"]["kind"] == "cpt" and PRESETS["cpt"]["site"]["kind"] == "embeddings"
    assert method_config("cpt").producer_kind == "cpt"
    assert PRODUCERS["cpt"] is CPTPrompt and CPTPrompt.folds_to_static and CPTPrompt.peft_exportable
    assert not CPTPrompt.input_dependent and not CPTPrompt.edits_embeddings


def test_context_tokens_follow_peft_type_convention():
    tok = load_backbone("tiny-llama").tokenizer
    cfg = CPTConfig(context=EXAMPLES, input_template="input: {}", output_template="output: {}.")
    ids, types = context_tokens(cfg, tok)

    def piece(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    want_ids, want_types = [], []
    for k, (text, label) in enumerate(EXAMPLES):
        parts = ([("\n", 0)] if k else []) + [("input: ", 1), (text, 2), (" ", 0), ("output: ", 3), (label, 4), (".", 3)]
        for part, kind in parts:
            want_ids += piece(part)
            want_types += [kind + 4 * k if kind else 0] * len(piece(part))
    assert ids == want_ids and types == want_types
    text_ids, text_types = context_tokens(CPTConfig(context="a plain context"), tok)
    assert text_ids == piece("a plain context") and set(text_types) == {2}
    given = CPTConfig(context="ignored", token_ids=[5, 6, 7], type_mask=[1, 2, 4])
    assert context_tokens(given, tok) == ([5, 6, 7], [1, 2, 4])


def test_zero_delta_at_init_is_the_plain_context_embedding():
    model = build("tiny-gemma3", "cpt", producer={"context": EXAMPLES})  # Gemma scales its embeddings
    producer = model.producer
    ids, _ = context_tokens(producer.cfg, model.backbone.tokenizer)
    assert producer.token_ids.tolist() == ids and producer.num_tokens == len(ids)
    assert torch.count_nonzero(producer.delta) == 0
    with torch.no_grad():
        assert torch.equal(producer()[0], model.runner.word_embeddings(torch.tensor(ids)))
    assert [n for n, p in producer.named_parameters() if p.requires_grad] == ["delta"]


def test_prompt_is_the_context_plus_the_projected_delta_row_by_row():
    model = build("tiny-llama", "cpt", producer={"context": EXAMPLES, "epsilon": 0.3, "format_epsilon": 0.05})
    producer = model.producer
    n, d = producer.delta.shape
    g = torch.Generator().manual_seed(0)
    scales = torch.rand(n, 1, generator=g) * 0.02  # norms from well inside to well outside the balls
    with torch.no_grad():
        producer.delta.copy_(torch.randn(n, d, generator=g) * scales)
    delta, types = producer.delta.detach(), producer.token_types.tolist()
    embed = model.runner.word_embeddings.weight.detach()
    expected = torch.empty(n, d)
    inside = outside = 0
    for i in range(n):
        kind = types[i] % 4
        eps = {1: 0.05, 3: 0.05, 2: 0.3}.get(kind, 1e-10) * math.sqrt(d / 2048) if types[i] > 0 else 1e-10
        norm = math.sqrt(sum(float(x) ** 2 for x in delta[i]))
        trains = kind != 0
        row = delta[i] * (eps / max(norm, eps)) if trains else torch.zeros(d)
        expected[i] = embed[producer.token_ids[i]] + row
        if trains:
            inside, outside = inside + (norm <= eps), outside + (norm > eps)
    assert inside and outside  # both sides of the ball are exercised
    with torch.no_grad():
        assert torch.allclose(producer()[0], expected, atol=1e-6)
        assert torch.equal(producer.fold()()[0], producer()[0])


def test_projection_and_prompt_equal_peft_cpt_embedding():
    model = build("tiny-llama", "cpt", producer={"context": EXAMPLES, "epsilon": 0.3, "format_epsilon": 0.05})
    producer = model.producer
    ours_eps = token_epsilons(producer.token_types, producer.out_dim, 0.3, 0.05)
    theirs = peft_embedding(producer, 0.3, 0.05, model.runner.word_embeddings)
    assert torch.allclose(theirs.get_epsilon(), ours_eps, rtol=0, atol=0)
    assert torch.equal(theirs.embedding.weight, producer.context)  # both embed cpt_token_ids with the frozen model
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(producer.delta.shape, generator=g) * torch.rand(producer.delta.shape[0], 1, generator=g) * 0.02
    mask = torch.remainder(producer.token_types, 4) != 0
    delta[~mask] = 0  # peft's gradient mask keeps these at their zero init
    with torch.no_grad():
        producer.delta.copy_(delta)
        theirs.delta_embedding.weight.copy_(delta)
        assert torch.allclose(project(producer.delta, ours_eps), theirs.get_projection(), atol=1e-7)
    indices = torch.arange(producer.num_tokens)[None]
    weights = torch.randn(producer.delta.shape, generator=g)
    peft_prompt = theirs(indices)[0]  # peft's forward projects its delta in place, then adds it
    ours = producer()[0]
    assert torch.allclose(ours, peft_prompt, atol=1e-6)
    (peft_prompt * weights).sum().backward()
    (ours * weights).sum().backward()
    assert torch.allclose(producer.delta.grad, theirs.delta_embedding.weight.grad, atol=1e-6)  # same masked gradient
    assert torch.count_nonzero(producer.delta.grad[~mask]) == 0


def test_after_step_clamps_each_row_as_peft_and_keeps_small_rows():
    model = build("tiny-bert", "cpt", producer={"context": EXAMPLES})
    producer = model.producer
    theirs = peft_embedding(producer, 0.2, 0.1, model.runner.word_embeddings)
    g = torch.Generator().manual_seed(2)
    delta = torch.randn(producer.delta.shape, generator=g) * torch.rand(producer.delta.shape[0], 1, generator=g) * 0.05
    with torch.no_grad():
        producer.delta.copy_(delta)
        theirs.delta_embedding.weight.copy_(delta)
    producer.after_step()
    assert torch.allclose(producer.delta, theirs.get_projection(), atol=1e-7)
    eps = producer.epsilons()
    norms, before = producer.delta.norm(dim=1), delta.norm(dim=1)
    assert bool((norms <= eps * (1 + 1e-5)).all())
    small = before <= eps
    assert torch.equal(producer.delta[small], delta[small])  # inside the ball: untouched
    assert torch.allclose(norms[~small], eps[~small], rtol=1e-5)  # outside: onto the sphere


def test_num_tokens_cuts_the_context_and_errors_name_the_field():
    model = build("tiny-llama", "cpt", producer={"context": EXAMPLES, "num_tokens": 9})
    full = build("tiny-llama", "cpt", producer={"context": EXAMPLES})
    assert model.producer.num_tokens == 9 and torch.equal(model.producer.token_ids, full.producer.token_ids[:9])
    with pytest.raises(ConfigError, match="method.producer.num_tokens"):
        build("tiny-llama", "cpt", producer={"context": "ab", "num_tokens": 9})
    with pytest.raises(ConfigError, match="method.producer"):
        method_config("cpt", producer={"context": [["only an input"]]})
    with pytest.raises(ConfigError, match="input_template"):
        method_config("cpt", producer={"input_template": "no slot"})


def test_save_load_keeps_the_context_and_delta(tmp_path):
    model = build("tiny-t5", "cpt", producer={"context": EXAMPLES}).eval()
    with torch.no_grad():
        model.producer.delta.normal_(0, 0.01)
    model.producer.after_step()
    save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])
    loaded = load_adapter(tmp_path / "a", load_backbone("tiny-t5")).eval()
    for name in ("delta", "context", "token_ids", "token_types"):
        assert torch.equal(getattr(loaded.producer, name), getattr(model.producer, name))
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    with torch.no_grad():
        assert torch.allclose(loaded(ids, mask, types).logits, model(ids, mask, types).logits, atol=1e-6)


@pytest.mark.parametrize("backbone,task", [("tiny-bert", "sst2"), ("tiny-llama", "sst2-t2t")])
def test_the_training_loop_projects_after_every_step(tmp_path, data_dir, backbone, task):
    from softprompt.train.config import TrainConfig
    from softprompt.train.trainer import train

    # a learning rate far too large for the balls: without the projection the delta leaves them at once;
    # classification (a head) and text-to-text generation (the LM loss on the answer)
    method = {"name": "cpt", "producer": {"context": [["a gripping film", "positive"], ["dull", "negative"]]}}
    cfg = TrainConfig(backbone=backbone, task=task, method=method, data_dir=str(data_dir),
                      train_limit=16, eval_limit=8, epochs=1, batch_size=8, max_length=48, lr=0.5,
                      progress=False, output_dir=str(tmp_path / "run"))
    summary = train(cfg, log=lambda *a: None)
    assert 0 <= summary["test"]["scores"]["main"] <= 100
    model = load_adapter(tmp_path / "run" / "adapter", load_backbone(backbone))
    assert model.generative == (task == "sst2-t2t")
    producer = model.producer
    eps = producer.epsilons()
    norms = producer.delta.detach().norm(dim=1)
    trains = torch.remainder(producer.token_types, 4) != 0
    assert bool((norms <= eps * (1 + 1e-5)).all())
    assert torch.allclose(norms[trains], eps[trains], rtol=1e-4)  # every trained row was pushed onto its sphere
    assert torch.count_nonzero(producer.delta[~trains]) == 0  # labels and separators never move
