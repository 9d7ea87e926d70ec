"""One mixed forward pass == each row alone through its adapter's model(...), for every method."""

from __future__ import annotations

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.runners import runner_for
from softprompt.serve.mixed import Group, mixed_logits
from tests.serve.helpers import METHODS, TEXTS, make_model

FAMILIES = ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-roberta", "tiny-mpnet", "tiny-gemma3", "tiny-t5"]


def alone(model, tok, text, pair=None):
    enc = tok(text, pair, return_tensors="pt")
    with torch.no_grad():
        return model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")).logits[0]


def run_mixed(backbone, models, rows, side):
    """rows: [(model index, text, pair)] -> logits per row, from one mixed pass."""
    tok = backbone.tokenizer
    tok.padding_side = side
    # tokenise one by one (a pair-less row must not get an empty second segment), then pad
    encs = [tok(t, p) for _, t, p in rows]
    width = max(len(e["input_ids"]) for e in encs)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if "token_type_ids" in encs[0] else None
    for r, e in enumerate(encs):
        n = len(e["input_ids"])
        sl = slice(width - n, width) if side == "left" else slice(0, n)
        ids[r, sl] = torch.tensor(e["input_ids"])
        mask[r, sl] = 1
        if types is not None:
            types[r, sl] = torch.tensor(e["token_type_ids"])
    groups = [Group(m, torch.tensor([r for r, row in enumerate(rows) if row[0] == i])) for i, m in enumerate(models)]
    groups = [g for g in groups if len(g.rows)]
    out = [None] * len(rows)
    for g, logits in zip(groups, mixed_logits(runner_for(backbone.model, backbone.kind), groups, ids, mask, types)):
        for r, row in zip(g.rows.tolist(), logits):
            out[r] = row
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_every_method_in_one_mixed_batch_equals_alone(name):
    backbone = load_backbone(name)
    models = []
    for i, m in enumerate(METHODS):
        try:
            models.append(make_model(backbone, m, seed=i, num_labels=2 + i % 3))
        except ConfigError as err:  # a site that cannot run on this architecture says so in one line (MPNet: adaption)
            assert str(err).startswith("method.site.kind:") and "cannot run on" in str(err), err
    pair = "and the second segment" if backbone.family == "bert" else None
    rows = [(i % len(models), TEXTS[i % len(TEXTS)], pair if i == 4 else None) for i in range(2 * len(models))]
    sides = ["right", "left"] if backbone.kind == "decoder" else ["right"]
    for side in sides:
        got = run_mixed(backbone, models, rows, side)
        for (mi, text, p), logits in zip(rows, got):
            ref = alone(models[mi], backbone.tokenizer, text, p)
            assert logits.shape == ref.shape
            diff = (logits - ref).abs().max().item()
            assert diff <= 1e-5, (name, side, METHODS[mi], diff)


def test_unfolded_reparameterised_producers_and_subset_kv_layers(tiny_bert):
    """Prefix MLP / P-tuning encoder run unfolded; kv prefixes on one layer only; two different P."""
    models = [
        make_model(tiny_bert, "prefix-tuning", seed=1, fold=False),
        make_model(tiny_bert, "p-tuning", seed=2, fold=False),
    ]
    torch.manual_seed(3)
    m = SoftPromptModel(tiny_bert, method_config("p-tuning-v2", site={"layers": [1]}, producer={"num_tokens": 3}), 2)
    models.append(m.eval())
    rows = [(i % 3, TEXTS[i], None) for i in range(6)]
    got = run_mixed(tiny_bert, models, rows, "right")
    for (mi, text, _), logits in zip(rows, got):
        assert torch.allclose(logits, alone(models[mi], tiny_bert.tokenizer, text), atol=1e-5)


def test_verbalizer_and_regression_heads(tiny_gpt2, tiny_bert):
    zs = make_model(tiny_gpt2, "zero-shot", num_labels=2, label_words=["bad", "good"])  # multi-token words
    pt = make_model(tiny_gpt2, "prompt-tuning", seed=4, num_labels=2, label_words=["no", "yes"])
    rows = [(0, TEXTS[0], None), (1, TEXTS[1], None), (0, TEXTS[2], None)]
    for (mi, text, _), logits in zip(rows, run_mixed(tiny_gpt2, [zs, pt], rows, "right")):
        assert torch.allclose(logits, alone([zs, pt][mi], tiny_gpt2.tokenizer, text), atol=1e-5)
    reg = make_model(tiny_bert, "lpt", seed=5, num_labels=1, is_regression=True)
    cls = make_model(tiny_bert, "smop", seed=6)
    rows = [(0, TEXTS[3], None), (1, TEXTS[4], None)]
    got = run_mixed(tiny_bert, [reg, cls], rows, "right")
    assert got[0].shape == ()
    assert torch.allclose(got[0], alone(reg, tiny_bert.tokenizer, TEXTS[3]), atol=1e-5)


def test_backbone_training_methods_are_refused(tiny_bert):
    torch.manual_seed(0)
    lora = SoftPromptModel(load_backbone("tiny-bert"), method_config("lora"), 2).eval()
    enc = tiny_bert.tokenizer(["x"], return_tensors="pt")
    with pytest.raises(ValueError, match="trains the backbone"):
        mixed_logits(runner_for(lora.backbone.model), [Group(lora, torch.tensor([0]))],
                     enc["input_ids"], enc["attention_mask"])
