"""Every method on every backbone family: independence, frozen base, save/load, learning."""

import pytest
import torch

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import AdapterError, ConfigError
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.conftest import TINY
from tests.core.helpers import BASELINES, SOFT, TEXTS, batch, build, train_steps

ALL = SOFT + BASELINES


def perturb(model, seed=1):
    """Non-trivial adapter weights (zero-initialised parts such as DePT's B become non-zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_params().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("method", ALL)
def test_example_alone_equals_example_in_batch(name, method):
    model = build(name, method).eval()
    perturb(model)
    tok = model.backbone.tokenizer
    sides = ["right", "left"] if model.backbone.kind == "decoder" else ["right"]
    for side in sides:
        ids, mask, types = batch(tok, TEXTS, side)
        with torch.no_grad():
            together = model(ids, mask, types).logits
            for i, text in enumerate(TEXTS):
                a_ids, a_mask, a_types = batch(tok, [text], side)
                alone = model(a_ids, a_mask, a_types).logits[0]
                assert torch.allclose(alone, together[i], atol=1e-5), (method, side, (alone - together[i]).abs().max())


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama", "tiny-t5"])
@pytest.mark.parametrize("method", SOFT + ["head-only"])
def test_base_weights_bit_identical_and_only_method_params_get_gradients(name, method):
    model = build(name, method)
    frozen = {n: p.detach().clone() for n, p in model.backbone.model.named_parameters() if not p.requires_grad}
    tok = model.backbone.tokenizer
    ids, mask, types = batch(tok, TEXTS)
    opt = torch.optim.AdamW(model.adapter_params().values(), lr=1e-2)
    for _ in range(2):
        out = model(ids, mask, types, labels=torch.tensor([1, 0, 1, 0]))
        out.loss.backward()
        with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
        assert with_grad and with_grad <= set(model.adapter_params())
        base = {n for n, _ in model.runner.named_parameters(prefix="runner")} - set(model.adapter_params())
        assert not with_grad & base  # the base's own weights never (LoRA's factors, prompt-lora, are the adapter's)
        opt.step()
        opt.zero_grad()
    now = dict(model.backbone.model.named_parameters())
    assert all(torch.equal(now[n], value) for n, value in frozen.items())  # every base weight, bit for bit


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("method", ALL)
def test_save_load_gives_identical_logits(tmp_path, name, method):
    model = build(name, method).eval()
    perturb(model)
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    with torch.no_grad():
        expected = model(ids, mask, types).logits
    save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])
    fresh = load_backbone(name)
    if method in ("lora", "full-finetune"):
        fresh.fingerprint = model.backbone.fingerprint  # trained weights ride in the adapter; base is the original
    loaded = load_adapter(tmp_path / "a", fresh).eval()
    with torch.no_grad():
        got = loaded(ids, mask, types).logits
    assert torch.equal(got, expected)


def test_loading_onto_another_base_fails(tmp_path):
    model = build("tiny-bert", "prompt-tuning")
    save_adapter(model, tmp_path / "a")
    with pytest.raises(AdapterError, match="made for base model 'tiny-bert'"):
        load_adapter(tmp_path / "a", load_backbone("tiny-roberta"))


# every method trains on two architectures and every architecture trains several methods (pairs rotate:
# the architecture x method product is covered by the cheaper equality tests above)
LEARNING_PAIRS = [(TINY[(i + k) % len(TINY)], method) for i, method in enumerate(SOFT) for k in (0, 3)]


@pytest.mark.parametrize("name,method", LEARNING_PAIRS)
def test_every_method_reduces_loss_on_real_sst2(name, method, sst2_slice):
    model = build(name, method)
    tok = model.backbone.tokenizer
    ids, mask, types = batch(tok, [e.text for e in sst2_slice[:16]])
    labels = torch.tensor([e.label for e in sst2_slice[:16]])
    losses = train_steps(model, ids, mask, types, labels, lr=1e-2, steps=20)
    assert sum(losses[-3:]) / 3 < losses[0] * 0.9, losses


def test_prefix_mlp_folds_to_identical_static_prefix():
    model = build("tiny-llama", "prefix-tuning").eval()
    perturb(model)
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "left")
    with torch.no_grad():
        before = model(ids, mask).logits
        n_before = model.num_trainable()
        model.fold()
        after = model(ids, mask).logits
    assert torch.allclose(before, after, atol=1e-6)
    assert model.num_trainable() < n_before


def test_any_producer_at_any_site():
    model = build("tiny-llama", "custom", producer={"kind": "attention", "num_tokens": 3}, site={"kind": "kv", "layers": [1]})
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS, "left")
    model.eval()
    assert model.boundary == 1
    seen = []
    model.runner.layers[0].register_forward_hook(lambda mod, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        logits = model(ids, mask).logits
        hook = model.producer.register_forward_hook(lambda mod, args, out: out * 3)
        scaled = model(ids, mask).logits
        hook.remove()
        alone = torch.cat([model(ids[i:i + 1], mask[i:i + 1]).logits for i in range(4)])
    assert logits.shape == (4, 2)
    assert not torch.allclose(logits, scaled, atol=1e-4)  # the attention producer's prompt is used ...
    assert torch.equal(seen[0], seen[1])  # ... from layer 1 on: layer 0 never sees it
    assert torch.allclose(logits, alone, atol=1e-5)  # each row's prompt is its own


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"producer": {"kind": "nope"}}, "method.producer.kind: unknown 'nope'"),
        ({"producer": {"kind": "static", "colour": 1}}, "unknown field"),
        ({"producer": {"kind": "router", "top_k": 9}}, "top_k must be in 1..num_prompts"),
        ({"producer": {"kind": "mlp", "init_steps": 0}}, "method.producer: init_steps must be >= 1"),
        ({"producer": {"kind": "mlp", "init": "text"}}, "method.producer: init: text needs init_text"),
        ({"site": {"kind": "sideways"}}, "method.site.kind: unknown 'sideways'; expected one of embeddings, layer, kv"),
        ({"site": {"kind": "layer", "layers": [1]}}, "method.site.layers: only for site kinds 'kv' and 'adaption'"),
        ({"site": {"kind": "kv", "layer": 1}}, "method.site.layer: only for site kind 'layer'"),
    ],
)
def test_bad_method_config_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        method_config("custom", **overrides)


def test_unsupported_combinations_fail_at_build_with_a_reason():
    with pytest.raises(ConfigError, match=r"method.site.layer: must be in 0..1 for tiny-bert, got 7"):
        build("tiny-bert", "id-spam", site={"kind": "layer", "layer": 7})
    # key/value prompts take word init from the frozen model's keys/values (tests/core/test_word_init.py)
    kv = build("tiny-bert", "p-tuning-v2", producer={"init": "vocab"})
    assert kv.producer.prompt.shape[1] == kv.site.prompt_dim(kv.runner) != kv.runner.hidden_size
    with pytest.raises(ValueError, match="verbalizer"):
        build("tiny-bert", "prompt-tuning", head={"kind": "verbalizer"})


def test_prompt_sits_next_to_text_with_left_and_right_padding():
    from softprompt.runners import Sequence, insert_prompt

    h = torch.arange(1, 5, dtype=torch.float).view(1, 4, 1).repeat(2, 1, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    p = torch.full((1, 2, 1), -1.0)
    r = insert_prompt(Sequence(h, right, right.clone()), p)
    assert r.hidden[0, :, 0].tolist() == [-1, -1, 1, 2, 3, 4] and r.mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    lft = insert_prompt(Sequence(h, left, left.clone()), p)
    assert lft.hidden[0, :, 0].tolist() == [1, 2, -1, -1, 3, 4] and lft.mask[0].tolist() == [0, 0, 1, 1, 1, 1]
    # variable-length prompts: the unused slot moves to the padding side
    short = insert_prompt(Sequence(h, right, right.clone()), p.expand(2, -1, -1), torch.tensor([[True, False], [True, True]]))
    assert short.mask[0].tolist() == [1, 1, 1, 0, 0, 0] and short.hidden[0, :3, 0].tolist() == [-1, 1, 2]


@pytest.mark.parametrize("name,method", [("tiny-bert", "id-spam"), ("tiny-llama", "p-tuning-v2"), ("tiny-t5", "dept")])
def test_a_method_is_resolved_once_for_the_backbones_layers(name, method):
    model = build(name, method)
    resolved = model.resolved
    assert resolved.num_layers == model.runner.num_layers and resolved.site is model.site
    assert resolved.config is model.method
    if method == "p-tuning-v2":
        assert model.site.layers == list(range(model.runner.num_layers))
    if method == "id-spam":
        assert model.site.boundary == model.runner.num_layers // 2
    again = SoftPromptModel(model.backbone, resolved, 2)  # a resolved method is used as it is
    assert again.site is resolved.site and again.method is resolved.config
    with pytest.raises(ConfigError, match="method: resolved for"):
        resolved.resolve(resolved.num_layers + 1)


def test_site_errors_name_the_field_before_and_after_the_layer_count_is_known():
    with pytest.raises(ConfigError, match=r"^method.site.layer: must be >= 0, got -1$"):
        method_config("id-spam", site={"layer": -1})
    with pytest.raises(ConfigError, match=r"^method.site.layers: must be distinct layers >= 0, got \[1, 1\]$"):
        method_config("p-tuning-v2", site={"layers": [1, 1]})
    late = method_config("id-spam", site={"layer": 7})  # fine until a backbone's layer count is known
    with pytest.raises(ConfigError, match=r"^method.site.layer: must be in 0..1 for tiny-bert, got 7$"):
        late.resolve(2, 128, "tiny-bert")


def test_the_trainer_fits_the_producer_once_and_passes_the_resolved_method_down(tmp_path, data_dir, monkeypatch):
    from softprompt.producers.decomposed import DecomposedConfig
    from softprompt.train.config import TrainConfig
    from softprompt.train.trainer import Trainer

    with pytest.raises(ConfigError, match=r"^method.site.layer: must be in 0..1 for tiny-bert, got 5$"):
        TrainConfig(backbone="tiny-bert", method={"name": "id-spam", "site": {"layer": 5}})  # nothing loaded yet
    fits = []
    real_fit = DecomposedConfig.fit
    monkeypatch.setattr(DecomposedConfig, "fit", lambda self, n: fits.append(n) or real_fit(self, n))
    cfg = TrainConfig(backbone="tiny-bert", task="sst2", method={"name": "dept", "producer": {"num_tokens": 4}},
                      data_dir=str(data_dir), train_limit=16, eval_limit=8, epochs=1, max_length=40,
                      output_dir=str(tmp_path), progress=False)
    model = Trainer(cfg, log=lambda *a: None).setup().unwrapped
    assert fits == [40] and model.method.producer.max_length == 40 == model.producer.max_input_tokens
    assert model.resolved is cfg.resolved_method and model.site is cfg.resolved_method.site
