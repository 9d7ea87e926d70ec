"""Tiny in-code backbones: shape, determinism, size, tokenizers, templates, config consistency."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from softprompt.backbones import load_backbone, weights_fingerprint
TINY_NAMES = ["tiny-bert", "tiny-roberta", "tiny-mpnet", "tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"]

TEXT = "Héllo wörld, naïve café 🙂 tab\tand  two spaces"
FAMILY = {n: n.removeprefix("tiny-").replace("gemma3", "gemma3_text") for n in TINY_NAMES}  # config.model_type


@pytest.fixture(scope="module")
def tiny():
    return {name: load_backbone(name) for name in TINY_NAMES}


@pytest.mark.parametrize("name", TINY_NAMES)
def test_loads_frozen_with_family_and_kind(tiny, name):
    bb = tiny[name]
    assert bb.name == name
    assert bb.family == FAMILY[name]
    assert bb.kind == {"t5": "encoder-decoder", "gpt2": "decoder", "llama": "decoder", "gemma3_text": "decoder"}.get(
        bb.family, "encoder"
    )
    assert not bb.model.training
    assert all(not p.requires_grad for p in bb.model.parameters())
    assert bb.dtype == torch.float32
    assert bb.source.startswith(f"builtin:{name}")
    assert bb.hidden_size == 64


@pytest.mark.parametrize("name", TINY_NAMES)
def test_parameter_count_is_small(tiny, name):
    n = tiny[name].num_parameters()
    print(f"{name}: {n:,} parameters")
    assert 50_000 < n <= 1_500_000


@pytest.mark.parametrize("name", TINY_NAMES)
def test_second_load_is_fast_and_deterministic(tiny, name):
    started = time.perf_counter()
    again = load_backbone(name)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"
    assert again.fingerprint() == tiny[name].fingerprint()
    assert weights_fingerprint(again.model, full=True) == weights_fingerprint(tiny[name].model, full=True)
    # building a model must not disturb the caller's RNG stream
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_backbone(name)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_models_differ_from_each_other(tiny):
    prints = {tiny[n].fingerprint() for n in TINY_NAMES}
    assert len(prints) == len(TINY_NAMES)


def test_weights_identical_in_a_fresh_process(tiny):
    code = (
        "import json; from softprompt.backbones import load_backbone, weights_fingerprint\n"
        f"names = {TINY_NAMES!r}\n"
        "print(json.dumps({n: weights_fingerprint(load_backbone(n).model, full=True) for n in names}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other == {n: weights_fingerprint(tiny[n].model, full=True) for n in TINY_NAMES}


@pytest.mark.parametrize("name", TINY_NAMES)
def test_config_matches_tokenizer(tiny, name):
    bb = tiny[name]
    tok, cfg = bb.tokenizer, bb.model.config
    assert cfg.vocab_size == len(tok)
    assert bb.model.get_input_embeddings().weight.shape[0] == len(tok)
    assert tok.pad_token is not None and cfg.pad_token_id == tok.pad_token_id
    assert tok.model_max_length == 512
    if bb.kind == "decoder":
        assert tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id), "decoders get a dedicated pad token"
        assert bb.model.generation_config.pad_token_id == tok.pad_token_id


@pytest.mark.parametrize("name", TINY_NAMES)
def test_tokenizer_round_trip(tiny, name):
    tok = tiny[name].tokenizer
    ids = tok(TEXT)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == TEXT
    plain = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(plain) == len(TEXT.encode("utf-8"))  # byte-level, no merges: one token per byte
    assert not set(plain) & set(tok.all_special_ids)
    # special tokens are single tokens, never split into bytes
    for special in tok.all_special_tokens:
        assert tok(special, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(special)]


def _tokens(tok, *texts):
    return tok.convert_ids_to_tokens(tok(*texts)["input_ids"])


def test_bert_template_and_token_types(tiny):
    tok = tiny["tiny-bert"].tokenizer
    assert _tokens(tok, "ab") == ["[CLS]", "a", "b", "[SEP]"]
    enc = tok("ab", "cd")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert (tok.pad_token, tok.pad_token_id, tok.mask_token, tok.unk_token) == ("[PAD]", 0, "[MASK]", "[UNK]")
    assert tiny["tiny-bert"].model.config.type_vocab_size == 2


@pytest.mark.parametrize("name", ["tiny-roberta", "tiny-mpnet"])
def test_roberta_style_template(tiny, name):
    tok = tiny[name].tokenizer
    assert _tokens(tok, "ab") == ["<s>", "a", "b", "</s>"]
    enc = tok("ab", "cd")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["<s>", "a", "b", "</s>", "</s>", "c", "d", "</s>"]
    assert "token_type_ids" not in enc
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    # positions start after the padding index, so 512 tokens need 514 position slots
    assert tiny[name].model.config.max_position_embeddings == 514


@pytest.mark.parametrize("name,bos", [("tiny-gpt2", "<|endoftext|>"), ("tiny-llama", "<s>"), ("tiny-gemma3", "<bos>")])
def test_decoder_template_bos_no_eos(tiny, name, bos):
    tok = tiny[name].tokenizer
    assert tok.bos_token == bos
    assert _tokens(tok, "ab") == [bos, "a", "b"]
    assert _tokens(tok, "ab", "cd") == [bos, "a", "b", bos, "c", "d"]
    assert "token_type_ids" not in tok("ab")


def test_decoder_padding_sides_follow_the_real_tokenizers(tiny):
    assert tiny["tiny-gpt2"].tokenizer.padding_side == "right"
    assert tiny["tiny-llama"].tokenizer.padding_side == "left"
    assert tiny["tiny-gemma3"].tokenizer.padding_side == "left"


def test_t5_template_and_decoder_start(tiny):
    bb = tiny["tiny-t5"]
    tok, cfg = bb.tokenizer, bb.model.config
    assert _tokens(tok, "ab") == ["a", "b", "</s>"]
    assert _tokens(tok, "ab", "cd") == ["a", "b", "</s>", "c", "d", "</s>"]
    assert tok.pad_token_id == 0 == cfg.decoder_start_token_id
    assert cfg.eos_token_id == tok.eos_token_id == 1
    assert tok.convert_tokens_to_ids("<extra_id_0>") != tok.unk_token_id


def test_llama_uses_grouped_query_attention(tiny):
    model = tiny["tiny-llama"].model
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 16)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.out_features == 64 and attn.k_proj.out_features == 32 and attn.v_proj.out_features == 32


def test_gemma3_has_sliding_and_full_layers_and_scaled_embeddings(tiny):
    bb = tiny["tiny-gemma3"]
    cfg = bb.model.config
    assert cfg.layer_types == ["sliding_attention", "full_attention"]
    assert cfg.sliding_window == 32
    assert bb.embedding_scale == pytest.approx(64**0.5)
    assert tiny["tiny-llama"].embedding_scale == 1.0


def test_mpnet_falls_back_to_eager_attention(tiny):
    assert tiny["tiny-mpnet"].model.config._attn_implementation == "eager"
    assert tiny["tiny-bert"].model.config._attn_implementation == "sdpa"


def _batch(tok):
    return tok(["a short one", "a noticeably longer second example text"], padding=True, return_tensors="pt")


@pytest.mark.parametrize("name", TINY_NAMES)
def test_forward_shapes_and_inputs_embeds_equivalence(tiny, name):
    bb = tiny[name]
    enc = _batch(bb.tokenizer)
    batch, length = enc["input_ids"].shape
    embeds = bb.model.get_input_embeddings()(enc["input_ids"])
    with torch.no_grad():
        if bb.kind == "encoder-decoder":
            dec = torch.full((batch, 3), bb.model.config.decoder_start_token_id)
            out = bb.model(**enc, decoder_input_ids=dec)
            assert out.logits.shape == (batch, 3, len(bb.tokenizer))
            assert out.encoder_last_hidden_state.shape == (batch, length, 64)
            via_embeds = bb.model(inputs_embeds=embeds, attention_mask=enc["attention_mask"], decoder_input_ids=dec)
            torch.testing.assert_close(via_embeds.logits, out.logits)
        elif bb.kind == "decoder":
            out = bb.model(**enc)
            assert out.logits.shape == (batch, length, len(bb.tokenizer))
            via_embeds = bb.model(inputs_embeds=embeds, attention_mask=enc["attention_mask"])
            torch.testing.assert_close(via_embeds.logits, out.logits)
        else:
            out = bb.model(**enc)
            assert out.last_hidden_state.shape == (batch, length, 64)
            via_embeds = bb.model(inputs_embeds=embeds, attention_mask=enc["attention_mask"],
                                  **({"token_type_ids": enc["token_type_ids"]} if "token_type_ids" in enc else {}))
            # RoBERTa/MPNet number positions from input_ids skipping pads, but from inputs_embeds
            # sequentially: with right padding only the padded positions differ
            keep = enc["attention_mask"].bool()
            torch.testing.assert_close(via_embeds.last_hidden_state[keep], out.last_hidden_state[keep])
    assert torch.isfinite(out[0]).all()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-t5"])
def test_generate_runs(tiny, name):
    bb = tiny[name]
    enc = bb.tokenizer(["hello", "hi there"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = bb.model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] >= 4


def test_dtype_and_device_arguments():
    bb = load_backbone("tiny-llama", dtype=torch.bfloat16, device="cpu")
    assert bb.dtype == torch.bfloat16 and bb.device.type == "cpu"
    assert bb.fingerprint() != load_backbone("tiny-llama").fingerprint()
    eager = load_backbone("tiny-llama", attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    assert eager.fingerprint() == load_backbone("tiny-llama").fingerprint()


@pytest.mark.parametrize("name", ["tiny-roberta", "tiny-gemma3", "tiny-t5"])
def test_saved_folder_loads_by_path_with_same_weights(tiny, name, tmp_path):
    bb = tiny[name]
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    again = load_backbone(str(tmp_path))
    assert again.family == bb.family and again.kind == bb.kind
    assert again.source == str(tmp_path.resolve())
    assert weights_fingerprint(again.model, full=True) == weights_fingerprint(bb.model, full=True)
    assert again.tokenizer(TEXT)["input_ids"] == bb.tokenizer(TEXT)["input_ids"]
    assert again.tokenizer.padding_side == bb.tokenizer.padding_side


def test_decoder_without_pad_token_gets_eos_and_keeps_padding_side(tmp_path):
    bb = load_backbone("tiny-gpt2")
    tok = bb.tokenizer
    tok.pad_token = None
    bb.model.config.pad_token_id = None
    bb.model.generation_config.pad_token_id = None
    bb.model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = load_backbone(str(tmp_path))
    assert again.tokenizer.pad_token == again.tokenizer.eos_token == "<|endoftext|>"
    assert again.model.config.pad_token_id == again.tokenizer.eos_token_id
    assert again.model.generation_config.pad_token_id == again.tokenizer.eos_token_id
    assert again.tokenizer.padding_side == "right"
