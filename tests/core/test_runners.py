"""Runner parity: with no prompt, softprompt's layer-by-layer run equals the model's own forward."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.runners import Sequence, runner_for
from softprompt.runners.loop import run_layers
from tests.conftest import TINY
from tests.core.helpers import TEXTS, batch


def run_plain(bb, ids, mask, types=None):
    r = runner_for(bb.model, bb.kind)
    seq = Sequence(r.token_embeddings(ids), mask.bool(), mask.bool(), types)
    seq = seq.with_hidden(r.embed(seq))
    return r.finish(run_layers(r, [], seq, seq.hidden, 0, r.num_layers).hidden)


def reference(bb, ids, mask, types=None):
    m = bb.model
    if bb.kind == "decoder":
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return m(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True).hidden_states[-1]
    if bb.kind == "encoder-decoder":
        return m.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    kwargs = {"token_type_ids": types} if types is not None else {}
    return m(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state


DECODERS = ["tiny-gpt2", "tiny-llama", "tiny-gemma3"]


@pytest.mark.parametrize("name,side", [(n, "right") for n in TINY] + [(n, "left") for n in DECODERS])
def test_runner_matches_model_forward(name, side):
    bb = load_backbone(name)
    ids, mask, types = batch(bb.tokenizer, TEXTS, side)
    with torch.no_grad():
        ours, ref = run_plain(bb, ids, mask, types), reference(bb, ids, mask, types)
    real = mask.bool()
    assert ours.shape == ref.shape
    assert torch.allclose(ours[real], ref[real], atol=1e-5), (ours[real] - ref[real]).abs().max()


def test_pair_inputs_use_token_types_like_the_model():
    bb = load_backbone("tiny-bert")
    ids, mask, types = batch(bb.tokenizer, TEXTS[:2], "right", pairs=TEXTS[2:])
    assert types is not None and int(types.max()) == 1
    with torch.no_grad():
        ours, ref = run_plain(bb, ids, mask, types), reference(bb, ids, mask, types)
    assert torch.allclose(ours[mask.bool()], ref[mask.bool()], atol=1e-5)
