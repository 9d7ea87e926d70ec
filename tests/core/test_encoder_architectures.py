"""Encoders and encoder-decoders beyond the hand-made tiny models: ELECTRA, DeBERTa-v2, ModernBERT, XLM-R, mT5, BART.

Each is a tiny random model from transformers' own config class (`tiny-<model_type>`), driven by
the runner found by structure: parity with HF's own forward, prompts at every site, and for the
families whose attention takes no cache (DeBERTa, ModernBERT), key/value prefixes that act as
tokens placed right before the text.
"""

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.runners import Sequence, runner_class, runner_for
from softprompt.runners.base import PrefixCache
from softprompt.runners.loop import run_layers
from tests.core.helpers import TEXTS, batch, build, train_steps

RUNNERS = {"electra": "BertRunner", "deberta-v2": "DebertaV2Runner", "modernbert": "ModernBertRunner",
           "xlm-roberta": "RobertaRunner", "mt5": "T5Runner", "bart": "BartRunner"}
# HF's BART encoder counts positions by index, so its own forward shifts left-padded rows; the others
# count from each row's first token (XLM-R), use relative positions (DeBERTa, ModernBERT, mT5) or take
# position ids (ELECTRA).
SIDES = {name: ("right",) if name == "bart" else ("right", "left") for name in RUNNERS}
SITES = {"embeddings": "prompt-tuning", "layer": "id-spam", "kv": "prefix-tuning"}


def ours(bb, ids, mask, types):
    r = runner_for(bb.model, bb.kind)
    seq = Sequence(r.token_embeddings(ids), mask.bool(), mask.bool(), types)
    seq = seq.with_hidden(r.embed(seq))
    return r.finish(run_layers(r, [], seq, seq.hidden, 0, r.num_layers).hidden)


def hf(bb, ids, mask, types):
    if bb.kind == "encoder-decoder":
        return bb.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    kwargs = {"token_type_ids": types} if types is not None else {}
    if bb.family == "electra":  # absolute positions: counted from each row's first token, as ours
        kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
    return bb.model(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state


@pytest.mark.parametrize("name,side", [(n, s) for n in RUNNERS for s in SIDES[n]])
def test_runner_found_by_structure_matches_hf_forward(name, side):
    bb = load_backbone(f"tiny-{name}")
    assert runner_class(bb.model, bb.kind).__name__ == RUNNERS[name]
    assert bb.model.config.model_type == name
    ids, mask, types = batch(bb.tokenizer, TEXTS, side)
    with torch.no_grad():
        got, ref = ours(bb, ids, mask, types), hf(bb, ids, mask, types)
    real = mask.bool()
    assert (got[real] - ref[real]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", RUNNERS)
@pytest.mark.parametrize("site", SITES)
def test_every_site_trains_its_prompt(name, site):
    model = build(f"tiny-{name}", SITES[site])
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS, "right")
    labels = torch.tensor([1, 0, 1, 0])
    model(ids, mask, types, labels=labels).loss.backward()
    grads = [p.grad for p in model.producer.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()
    losses = train_steps(model, ids, mask, types, labels, lr=1e-2, steps=4)
    assert losses[-1] < losses[0]


def test_electra_prompts_have_the_width_of_where_they_enter():
    """ELECTRA-small projects its narrow embeddings up (embeddings_project): input-embedding prompts are
    embedding-wide, hidden-state prompts hidden-wide; producers read the width they see."""
    runner = runner_for(load_backbone("tiny-electra").model, "encoder")
    assert (runner.embedding_size, runner.hidden_size, runner.head_dim) == (32, 64, 16)
    tuned = build("tiny-electra", "prompt-tuning")  # vocabulary init: embedding vectors
    assert tuned.producer.out_dim == 32
    for method, reads in (("id-spam", 32), ("lpt", 64), ("smop", 32), ("dept", 32)):  # token embeddings or states
        model = build("tiny-electra", method)
        assert model.producer.hidden_size == reads
        assert model.producer.out_dim == (64 if model.site.boundary else 32)


class _Recorder:
    """A cache that keeps the keys/values a layer hands it and adds nothing."""

    def update(self, key, value, layer_idx, *args, **kwargs):
        self.kv = key, value
        return key, value

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


@pytest.mark.parametrize("name", ["deberta-v2", "modernbert"])
def test_transcribed_attention_with_prefixes_acts_as_tokens_before_the_text(name):
    """These layers take no cache, so the runner transcribes their attention. An empty prefix gives HF's
    own layer; a prefix of the keys/values the layer makes for P tokens placed before the text gives the
    text what the layer gives it with those tokens really there (prefix j at position j, text after)."""
    runner = runner_for(load_backbone(f"tiny-{name}").model, "encoder")
    heads, head_dim = runner.prefix_shape()
    g = torch.Generator().manual_seed(0)
    n, length, p = 2, 9, 3
    text = torch.randn(n, length, runner.hidden_size, generator=g)
    words = torch.randn(n, p, runner.hidden_size, generator=g)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[1, 6:] = False  # right padding
    full_mask = torch.cat([torch.ones(n, p, dtype=torch.bool), mask], 1)
    full = Sequence(torch.cat([words, text], 1), full_mask, full_mask)
    plain = Sequence(text, mask, mask)
    shifted = Sequence(text, mask, mask, position_offset=p)
    with torch.no_grad():
        for i in range(runner.num_layers):
            empty = text.new_zeros(n, heads, 0, head_dim)
            hf_layer = runner.layer(i, text, runner.context(plain, 0), None)
            transcribed = runner.layer(i, text, runner.context(plain, 0), PrefixCache({i: (empty, empty)}, 0))
            assert (transcribed - hf_layer)[mask].abs().max() <= 1e-5
            recorder = _Recorder()
            reference = runner.layer(i, full.hidden, runner.context(full, 0), recorder)[:, p:]
            keys, values = (x[:, :, :p] for x in recorder.kv)
            prefixed = runner.layer(i, text, runner.context(shifted, p), PrefixCache({i: (keys, values)}, p))
            assert (prefixed - reference)[mask].abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["deberta-v2", "modernbert", "mt5"])
def test_key_value_prefixes_with_left_padding_give_each_row_what_it_gets_alone(name):
    model = build(f"tiny-{name}", "prefix-tuning").eval()
    tok = model.backbone.tokenizer
    with torch.no_grad():
        for p in model.producer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        ids, mask, types = batch(tok, TEXTS, "left")
        together = model(ids, mask, types).logits
        for i, text in enumerate(TEXTS):
            alone = model(*batch(tok, [text], "left")).logits[0]
            assert (alone - together[i]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["bart", "mt5"])
def test_generation_starts_from_the_decoder_start_token_and_steps_match_full_passes(name):
    bb_model = build(f"tiny-{name}", "head-only").eval()
    tok, hf_model = bb_model.backbone.tokenizer, bb_model.backbone.model
    ids, mask, _ = batch(tok, TEXTS[:2], "right")
    start = hf_model.config.decoder_start_token_id
    assert start == (tok.eos_token_id if name == "bart" else tok.pad_token_id)
    with torch.no_grad():
        first = bb_model.lane(ids, mask).logits
        dec = torch.full((2, 1), start)
        ref = hf_model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits[:, -1]
    assert (first - ref).abs().max() <= 1e-5
    steps = [5, 17, 42]
    for method in ("prompt-tuning", "prefix-tuning"):
        model = build(f"tiny-{name}", method).eval()
        with torch.no_grad():
            for p in model.producer.parameters():
                p.add_(torch.randn_like(p) * 0.3)
            lane = model.lane(ids, mask)
            cached = [lane.logits]
            for t in steps:
                lane.step(torch.tensor([t, t]))
                cached.append(lane.logits)
            encoded, enc_mask, prefixes = model.encode(ids, mask)
            dec = torch.tensor([[start] + steps] * 2)
            full = model.decoder_logits(encoded, enc_mask, dec, past_key_values=prefixes)
            assert (torch.stack(cached, 1) - full).abs().max() <= 1e-4
            assert (prefixes is not None) == (method == "prefix-tuning")  # key/value sites prefix the decoder
            out = model.generate_text(ids, mask, max_new_tokens=4, eos_token_id=-1)
        assert [len(t) for t in out.tokens] == [4, 4]


def test_electra_prompt_exports_to_peft_at_the_embedding_width(tmp_path):
    """peft's prompt tuning concatenates its prompt with the input embeddings: token_dim is their width."""
    from softprompt.interop.peft import export_peft
    from tests.interop.test_peft import assert_same_outputs, build as build_for_peft, encode, fresh_peft

    model = build_for_peft("tiny-electra", "prompt-tuning")
    export_peft(model, tmp_path / "peft")
    ids, mask, types = encode(model.backbone.tokenizer)
    peft_model = fresh_peft("tiny-electra", tmp_path / "peft")
    assert peft_model.peft_config["default"].token_dim == 32
    assert_same_outputs(peft_model, model, ids, mask, types)
