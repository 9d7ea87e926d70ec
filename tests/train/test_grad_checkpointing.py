"""gradient_checkpointing (TrainConfig key): recomputing each layer in the backward pass changes neither
the loss nor the prompt gradients, for key/value prefixes, a prompt inserted at layer m and a gated
attention term (its context is set again inside the recomputation)."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import get_task, load_split
from softprompt.train.batches import collate
from softprompt.train.text_batches import encode_generation


def loss_and_grads(model, batch, checkpointing: bool):
    model.gradient_checkpointing = checkpointing
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # dropout stays on in the layers gradients flow through: same masks both times
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], source_mask=batch["source_mask"])
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.detach().clone() for n, p in model.adapter_params().items()}


def deeper(bb):
    """tiny-llama with a third layer: a prompt at layer 1 then has a checkpointed layer (all but the last are)."""
    import copy

    layers = bb.model.model.layers
    layers.append(copy.deepcopy(layers[-1]))
    layers[-1].self_attn.layer_idx = len(layers) - 1
    bb.model.config.num_hidden_layers = len(layers)
    if getattr(bb.model.config, "layer_types", None):
        bb.model.config.layer_types = [*bb.model.config.layer_types, bb.model.config.layer_types[-1]]
    return bb


@pytest.mark.parametrize("method", [{"name": "p-tuning-v2"}, {"name": "prefix-tuning"},
                                    {"name": "id-spam", "site": {"kind": "layer", "layer": 1}},
                                    {"name": "adaption-prompt"}],
                         ids=["kv-static", "kv-mlp", "layer-m", "gated-attention"])
def test_checkpointing_keeps_loss_and_prompt_gradients(data_dir, method):
    torch.manual_seed(0)
    bb = deeper(load_backbone("tiny-llama"))
    model = SoftPromptModel(bb, method_config(method), 0, generative=True)
    with torch.no_grad():  # off the initialisation (a zero-initialised output would zero the gradients upstream)
        for p in model.adapter_params().values():
            p.add_(torch.randn_like(p) * 0.05)
    model.train()
    task = get_task("e2e")
    enc = encode_generation(bb.tokenizer, task, load_split(task, "train", data_dir, limit=4, seed=0), 64, "decoder")
    batch = collate(enc, [0, 1, 2, 3], bb.tokenizer.pad_token_id, "left")
    calls = []
    hook = torch.utils.checkpoint.checkpoint
    import softprompt.runners.loop as loop

    def counting(*args, **kwargs):
        calls.append(args[1])
        return hook(*args, **kwargs)

    loop.checkpoint, saved = counting, loop.checkpoint
    try:
        loss_plain, grads_plain = loss_and_grads(model, batch, False)
        assert not calls
        loss_ckpt, grads_ckpt = loss_and_grads(model, batch, True)
    finally:
        loop.checkpoint = saved
    # every trainable layer but the last (used as soon as backward starts: nothing to save) was checkpointed
    assert calls == list(range(model.boundary, model.runner.num_layers - 1)) and calls
    assert abs(float(loss_plain) - float(loss_ckpt)) < 1e-5
    assert grads_plain.keys() == grads_ckpt.keys() and grads_plain
    assert sum(bool(g.abs().sum() > 0) for g in grads_plain.values()) >= len(grads_plain) / 2  # (id-spam: wq, wk get none here)
    for name, g in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-6)
