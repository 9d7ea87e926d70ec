"""Dropout stays on in the frozen layers a soft prompt back-propagates through; layers below stay deterministic."""

import torch

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.core.helpers import TEXTS, batch


def model_for(method, **kw):
    torch.manual_seed(0)
    return SoftPromptModel(load_backbone("tiny-bert"), method_config(method, head={"dropout": 0.0}), 2, **kw)


def test_layers_from_the_boundary_up_train_with_dropout_and_the_rest_stays_in_eval_mode():
    model = model_for("id-spam")  # prompt enters layer 1 of 2
    model.train()
    assert model.boundary == 1
    assert [layer.training for layer in model.runner.layers] == [False, True]
    assert not model.runner.model.embeddings.training
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    state = model.frozen_state(ids, mask, types)
    assert torch.equal(state.hidden, model.frozen_state(ids, mask, types).hidden)  # cacheable: deterministic
    a, b = model(ids, mask, types, state=state).logits, model(ids, mask, types, state=state).logits
    assert not torch.allclose(a, b)  # dropout in layer 1
    model.eval()
    assert not any(layer.training for layer in model.runner.layers)
    assert torch.equal(model(ids, mask, types).logits, model(ids, mask, types).logits)


def test_prompts_at_the_embeddings_train_the_embedding_dropout_too_and_the_setting_turns_it_off():
    model = model_for("prompt-tuning").train()
    assert model.runner.model.embeddings.training and all(layer.training for layer in model.runner.layers)
    off = model_for("prompt-tuning", backbone_dropout=False).train()
    assert not off.runner.model.training
    ids, mask, types = batch(off.backbone.tokenizer, TEXTS)
    assert torch.equal(off(ids, mask, types).logits, off(ids, mask, types).logits)
