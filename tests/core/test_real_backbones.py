"""Every soft-prompt method trains on the packaged real backbones (minilm-l6, smollm2-135m)."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.core.helpers import SOFT, batch, train_steps, with_run_settings


@pytest.fixture(scope="module", params=["minilm-l6", "smollm2-135m"])
def real_backbone(request):
    return load_backbone(request.param)


@pytest.mark.slow
@pytest.mark.parametrize("method", SOFT)
def test_method_trains_on_packaged_backbone(real_backbone, method, sst2_slice):
    torch.manual_seed(0)
    before = real_backbone.fingerprint()
    model = SoftPromptModel(real_backbone, method_config(method, **with_run_settings(method, {})), 2)
    examples = sst2_slice[:4]
    tok = real_backbone.tokenizer
    texts = [tok.decode(tok(e.text, add_special_tokens=False)["input_ids"][:20]) for e in examples]  # short: keep CI fast
    ids, mask, types = batch(tok, texts, tok.padding_side)
    labels = torch.tensor([e.label for e in examples])

    def eval_loss() -> float:  # deterministic: training runs with the backbone's dropout on
        model.eval()
        with torch.no_grad():
            return model(ids, mask, types, labels=labels).loss.item()

    start = eval_loss()
    losses = train_steps(model, ids, mask, types, labels, lr=3e-4, steps=4)
    assert eval_loss() < start, (start, losses)
    assert real_backbone.fingerprint() == before
