"""LM heads: multi-token verbalizer scores, zero-shot, and generate() with prompts."""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.core.helpers import TEXTS, batch, build


def test_multi_token_verbalizer_sums_token_log_probs():
    bb = load_backbone("tiny-llama")
    words = ["no", "maybe"]  # byte-level tokenizer: several tokens per word
    model = SoftPromptModel(bb, method_config("zero-shot"), 2, False, words).eval()
    assert model.head.multi_token
    ids, mask, _ = batch(bb.tokenizer, TEXTS, "left")
    with torch.no_grad():
        got = model(ids, mask).logits
        for i, text in enumerate(TEXTS):
            x = bb.tokenizer(text)["input_ids"]
            for j, w in enumerate(words):
                wid = bb.tokenizer(" " + w, add_special_tokens=False)["input_ids"]
                full = torch.tensor([x + wid])
                logp = bb.model(input_ids=full).logits.log_softmax(-1)[0]
                expected = sum(logp[len(x) - 1 + k, wid[k]] for k in range(len(wid)))
                assert torch.allclose(got[i, j], expected, atol=1e-5), (i, j)


def test_zero_shot_command_scores_a_task(data_dir):
    from softprompt.train.inference import evaluate_zero_shot

    res = evaluate_zero_shot("tiny-llama", "sst2", "validation", data_dir, limit=12)
    assert res["examples"] == 12 and 0 <= res["scores"]["accuracy"] <= 100


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_generate_without_prompt_matches_hf_greedy(name):
    model = build(name, "head-only").eval()
    tok = model.backbone.tokenizer
    ids, mask, _ = batch(tok, TEXTS[:2], "left")
    ours = model.generate(ids, mask, max_new_tokens=5, eos_token_id=-1)
    ref = model.backbone.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                                        pad_token_id=tok.pad_token_id, eos_token_id=None)[:, ids.shape[1]:]
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("name,method", [("tiny-llama", "prompt-tuning"), ("tiny-gpt2", "id-spam"), ("tiny-t5", "prefix-tuning"),
                                         ("tiny-llama", "p-tuning-v2")])
def test_generate_with_prompts(name, method):
    model = build(name, method).eval()
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:2], "left" if name != "tiny-t5" else "right")
    out = model.generate(ids, mask, max_new_tokens=4, eos_token_id=-1)
    assert out.shape == (2, 4)
    assert torch.equal(out, model.generate(ids, mask, max_new_tokens=4, eos_token_id=-1))
    if name != "tiny-t5":  # greedy: the first token is the argmax after the prompt and the text
        with torch.no_grad():
            logits = model.lane(ids, mask).logits
            plain = build(name, "head-only").eval().lane(ids, mask).logits
        assert torch.equal(out[:, 0], logits.argmax(-1))
        assert not torch.allclose(logits, plain, atol=1e-4)  # the prompt is in the decoding


def test_generate_refuses_encoders():
    model = build("tiny-bert", "prompt-tuning")
    ids, mask, _ = batch(model.backbone.tokenizer, TEXTS[:1])
    with pytest.raises(ValueError, match="decoder or an encoder-decoder"):
        model.generate(ids, mask)


def test_zero_shot_calibration_removes_the_content_free_prior(data_dir):
    """The reported accuracy is the argmax of the calibrated scores, which are the raw scores minus one
    per-label constant (the content-free prompt's scores, Zhao et al. 2021)."""
    import numpy as np

    from softprompt.tasks import get_task, load_split_with_report
    from softprompt.train import zero_shot as zs
    from softprompt.train.inference import evaluate_zero_shot

    bb, task = load_backbone("tiny-llama"), get_task("sst2")
    examples, _ = load_split_with_report(task, "validation", data_dir, 12, 0)
    enc = zs.encode_prompts(task, bb.tokenizer, examples, 256)
    model = zs.zero_shot_model(bb, task)
    raw_logits = zs.zero_shot_logits(model, task, enc, 256, 16, False)
    cal_logits = zs.zero_shot_logits(model, task, enc, 256, 16, True)
    shift = raw_logits - cal_logits
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-5)  # one constant per label
    assert np.abs(shift[0]).min() > 0
    raw = evaluate_zero_shot("tiny-llama", "sst2", "validation", data_dir, limit=12, calibrate=False, backbone=bb)
    cal = evaluate_zero_shot("tiny-llama", "sst2", "validation", data_dir, limit=12, calibrate=True, backbone=bb)
    labels = enc.labels.astype(int)
    assert raw["scores"]["accuracy"] == pytest.approx(100 * np.mean(raw_logits.argmax(-1) == labels))
    assert cal["scores"]["accuracy"] == pytest.approx(100 * np.mean(cal_logits.argmax(-1) == labels))
    assert cal["examples"] == raw["examples"] == 12


def test_lora_adapter_names_the_untrained_base(tmp_path):
    from softprompt.adapter import load_adapter, save_adapter
    from softprompt.backbones import load_backbone

    model = build("tiny-bert", "lora")
    with torch.no_grad():
        for p in model.adapter_params().values():
            p.add_(0.1)  # LoRA B starts at zero: make the update non-trivial
    save_adapter(model, tmp_path / "a")
    loaded = load_adapter(tmp_path / "a", load_backbone("tiny-bert"))  # a fresh, untouched base is accepted
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(ids, mask, types).logits, model.eval()(ids, mask, types).logits)


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning-v2"])
def test_t5_label_scores_are_the_decoders_log_probs(method):
    """T5 label words are scored by the decoder reading the prompted encoder, not by the LM head on encoder states."""
    torch.manual_seed(0)
    bb = load_backbone("tiny-t5")
    model = SoftPromptModel(bb, method_config(method, head={"kind": "verbalizer"}), 2, label_words=["no", "yes"]).eval()
    with torch.no_grad():
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    tok = model.backbone.tokenizer
    ids, mask, _ = batch(tok, TEXTS[:2], "right")
    with torch.no_grad():
        scores = model(ids, mask).logits
        encoded, enc_mask, prefixes = model.encode(ids, mask)
        for j, word in enumerate(["no", "yes"]):
            wid = tok(word, add_special_tokens=False)["input_ids"]
            start = model.backbone.model.config.decoder_start_token_id
            dec = torch.tensor([[start] + wid[:-1]] * 2)
            encoded, enc_mask, prefixes = model.encode(ids, mask)  # a fresh decoder cache per word
            logp = model.decoder_logits(encoded, enc_mask, dec, past_key_values=prefixes).log_softmax(-1)
            expected = sum(logp[:, k, wid[k]] for k in range(len(wid)))
            assert torch.allclose(scores[:, j], expected, atol=1e-5)
