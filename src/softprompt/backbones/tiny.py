"""Tiny random models for unit tests: built in code, seeded, no files, no downloads.

Tokenizer: a byte-level BPE with no merges (every UTF-8 byte is one token, so any text round
trips exactly), family special tokens first, wrapped in PreTrainedTokenizerFast with the family's
post-processing:

    bert          [CLS] A [SEP] (B [SEP])        token_type_ids 0 / 1, pad [PAD]=0
    roberta/mpnet <s> A </s> (</s> B </s>)       pad <pad>=1 (position ids start at pad+1)
    gpt2          <|endoftext|> A (B)            bos = eos = <|endoftext|>, pad <pad>, right padding
    llama         <s> A (<s> B)                  pad <pad>, left padding (as LlamaTokenizer)
    gemma3        <bos> A (<bos> B)              pad <pad>=0, left padding (as GemmaTokenizer)
    t5            A </s> (B </s>)                pad <pad>=0 = decoder start, sentinels <extra_id_0..3>

Weights: the model is created from its config inside torch.random.fork_rng with a fixed seed,
so every load (in any process, same torch version) gives the same weights, and the global RNG
is left untouched.
"""

from __future__ import annotations

import torch

TINY_SEED = 1234
HIDDEN = 64
LAYERS = 2
HEADS = 4
INTERMEDIATE = 128
MAX_POSITIONS = 512

# family -> (special tokens in id order, role -> token, post-processor kind, padding side)
_SPECIALS: dict[str, dict] = {
    "bert": {
        "tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        "roles": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"},
        "padding_side": "right",
    },
    "roberta": {
        "tokens": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        "roles": {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"},
        "padding_side": "right",
    },
    "gpt2": {
        "tokens": ["<|endoftext|>", "<pad>"],
        "roles": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                  "pad_token": "<pad>"},
        "padding_side": "right",
    },
    "llama": {
        "tokens": ["<unk>", "<s>", "</s>", "<pad>"],
        "roles": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"},
        "padding_side": "left",
    },
    "gemma3": {
        "tokens": ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
        "roles": {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>",
                  "mask_token": "<mask>"},
        "padding_side": "left",
    },
    "t5": {
        "tokens": ["<pad>", "</s>", "<unk>"],
        "roles": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
        "extra": [f"<extra_id_{i}>" for i in range(4)],
        "padding_side": "right",
    },
}
_SPECIALS["mpnet"] = _SPECIALS["roberta"]

TINY_FAMILIES = ("bert", "roberta", "mpnet", "gpt2", "llama", "gemma3", "t5")

# The architecture matrix (softprompt.runners.TESTED): model_type -> (tokenizer style, config overrides).
# Sizes come from COMMON_SIZES, named as each config class names them (attribute_map does the rest).
COMMON_SIZES = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                    intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_POSITIONS)
_GQA = dict(num_key_value_heads=2, head_dim=HIDDEN // HEADS)
_MOE = dict(num_local_experts=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "llama": ("llama", _GQA),
    "mistral": ("llama", {**_GQA, "sliding_window": 8}),
    "mixtral": ("llama", {**_GQA, **_MOE, "router_jitter_noise": 0.1}),
    "qwen2": ("llama", _GQA),
    "qwen3": ("llama", _GQA),
    "qwen3_moe": ("llama", {**_GQA, **_MOE, "decoder_sparse_step": 1}),
    "gemma": ("gemma3", _GQA),
    "gemma2": ("gemma3", {**_GQA, "sliding_window": 8, "final_logit_softcapping": 5.0,
                          "attn_logit_softcapping": 20.0, "query_pre_attn_scalar": HIDDEN // HEADS}),
    "gemma3_text": ("gemma3", {**_GQA, "sliding_window": 8, "query_pre_attn_scalar": HIDDEN // HEADS,
                               "layer_types": ["sliding_attention", "full_attention"]}),
    "phi": ("llama", {"partial_rotary_factor": 0.5}),
    "phi3": ("llama", {**_GQA, "partial_rotary_factor": 0.5}),
    "olmo2": ("llama", _GQA),
    "granite": ("llama", {**_GQA, "embedding_multiplier": 2.0, "logits_scaling": 4.0,
                          "residual_multiplier": 0.5, "attention_multiplier": 0.2}),
    "gpt2": ("gpt2", {}),
    "gpt_neox": ("gpt2", {"rotary_pct": 0.5}),
    "opt": ("gpt2", {"ffn_dim": INTERMEDIATE, "word_embed_proj_dim": HIDDEN}),
    "falcon": ("gpt2", {"num_kv_heads": 1, "ffn_hidden_size": INTERMEDIATE}),
    "bloom": ("gpt2", {}),
    "bert": ("bert", {"type_vocab_size": 2}),
    "roberta": ("roberta", {"type_vocab_size": 1}),
    "xlm-roberta": ("roberta", {"type_vocab_size": 1}),
    "mpnet": ("roberta", {"relative_attention_num_buckets": 32}),
    "electra": ("bert", {"embedding_size": 32, "type_vocab_size": 2}),
    "deberta-v2": ("bert", {"type_vocab_size": 0, "relative_attention": True, "position_buckets": 32,
                            "max_relative_positions": 64, "pos_att_type": ["p2c", "c2p"], "share_att_key": True,
                            "norm_rel_ebd": "layer_norm", "position_biased_input": False}),
    "modernbert": ("bert", {"global_attn_every_n_layers": 2, "local_attention": 8,
                            "layer_types": ["full_attention", "sliding_attention"]}),
    "t5": ("t5", {}),
    "mt5": ("t5", {}),
    "bart": ("roberta", {"d_model": HIDDEN, "encoder_layers": LAYERS, "decoder_layers": LAYERS,
                         "encoder_attention_heads": HEADS, "decoder_attention_heads": HEADS,
                         "encoder_ffn_dim": INTERMEDIATE, "decoder_ffn_dim": INTERMEDIATE}),
}


def build_tokenizer(family: str):
    """A byte-level, merge-free BPE tokenizer with the family's special tokens and templates."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    info = _SPECIALS[family]
    specials: list[str] = list(info["tokens"])
    extra: list[str] = list(info.get("extra", []))
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_order):
        vocab[char] = len(vocab)
    for tok in extra:
        vocab[tok] = len(vocab)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=info["roles"].get("unk_token")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials + extra)
    roles = info["roles"]
    ids = {t: vocab[t] for t in specials}

    if family == "bert":
        single, pair = "[CLS] $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"
        used = ["[CLS]", "[SEP]"]
    elif family in ("roberta", "mpnet"):
        single, pair = "<s> $A </s>", "<s> $A </s> </s> $B </s>"
        used = ["<s>", "</s>"]
    elif family == "t5":
        single, pair = "$A </s>", "$A </s> $B </s>"
        used = ["</s>"]
    else:  # decoders: bos + text, no eos
        bos = roles["bos_token"]
        single, pair = f"{bos} $A", f"{bos} $A {bos} $B"
        used = [bos]
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, ids[t]) for t in used]
    )

    input_names = ["input_ids", "token_type_ids", "attention_mask"] if family == "bert" else ["input_ids", "attention_mask"]
    kwargs = dict(roles)
    if extra:
        kwargs["additional_special_tokens"] = extra
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=MAX_POSITIONS,
        padding_side=info["padding_side"],
        model_input_names=input_names,
        clean_up_tokenization_spaces=False,
        **kwargs,
    )
    fast.name_or_path = f"tiny-{family}"
    return fast


def _byte_order(char: str) -> int:
    """Order the byte-level alphabet by the byte each character stands for (GPT-2's mapping)."""
    return _BYTE_OF_CHAR[char]


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_BYTE_OF_CHAR = {c: b for b, c in _bytes_to_unicode().items()}


def build_config(family: str, tokenizer):
    """The family's tiny config, sized to `tokenizer` and carrying its special-token ids."""
    from transformers import (BertConfig, Gemma3TextConfig, GPT2Config, LlamaConfig, MPNetConfig,
                              RobertaConfig, T5Config)

    vocab = len(tokenizer)
    pad, bos, eos = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    common_enc = dict(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=INTERMEDIATE, pad_token_id=pad)
    if family == "bert":
        return BertConfig(**common_enc, max_position_embeddings=MAX_POSITIONS, type_vocab_size=2)
    if family == "roberta":
        # RoBERTa positions start at pad_token_id + 1, hence 512 + 2 position slots
        return RobertaConfig(**common_enc, max_position_embeddings=MAX_POSITIONS + pad + 1, type_vocab_size=1,
                             bos_token_id=bos, eos_token_id=eos)
    if family == "mpnet":
        return MPNetConfig(**common_enc, max_position_embeddings=MAX_POSITIONS + pad + 1,
                           bos_token_id=bos, eos_token_id=eos, relative_attention_num_buckets=32)
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=MAX_POSITIONS, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                          n_inner=INTERMEDIATE, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    if family == "llama":
        return LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                           num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2,
                           head_dim=HIDDEN // HEADS, max_position_embeddings=MAX_POSITIONS,
                           bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False)
    if family == "gemma3":
        return Gemma3TextConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2,
                                head_dim=HIDDEN // HEADS, query_pre_attn_scalar=HIDDEN // HEADS,
                                max_position_embeddings=MAX_POSITIONS, sliding_window=32,
                                layer_types=["sliding_attention", "full_attention"],
                                bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    if family == "t5":
        return T5Config(vocab_size=vocab, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=INTERMEDIATE,
                        num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128,
                        feed_forward_proj="relu", tie_word_embeddings=True,
                        pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad)
    raise ValueError(f"no tiny config for family {family!r}")


def architecture_config(model_type: str, tokenizer):
    """A tiny config of any architecture in ARCHITECTURES, from transformers' own config class (no hub)."""
    from transformers import AutoConfig

    _, overrides = ARCHITECTURES[model_type]
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    if model_type == "t5":
        return build_config("t5", tokenizer)
    if model_type == "mt5":  # T5's sizes in mT5's own config class (gated-GELU feed-forward)
        keys = ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                "relative_attention_num_buckets", "relative_attention_max_distance", "decoder_start_token_id")
        t5 = build_config("t5", tokenizer)
        return AutoConfig.for_model("mt5", vocab_size=len(tokenizer), **{k: getattr(t5, k) for k in keys},
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if model_type == "modernbert":  # its config carries the [CLS]/[SEP] ids (defaults are out of this vocabulary)
        ids.update(cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)
    if model_type == "bart":
        ids["decoder_start_token_id"] = tokenizer.eos_token_id
    sizes = {k: v for k, v in COMMON_SIZES.items() if k not in overrides}
    if model_type == "bart":
        sizes = {"max_position_embeddings": MAX_POSITIONS}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **sizes, **ids)
    for key, value in overrides.items():  # set one by one: some are properties computed from others
        try:
            setattr(config, key, value)
        except AttributeError:
            pass
    return config


def build_tiny(family: str, attn_implementation: str | None = None, seed: int = TINY_SEED):
    """(model, tokenizer) for a tiny random model of `family` (or of a matrix architecture), identical on every call."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if family in TINY_FAMILIES:
        tokenizer = build_tokenizer(family)
        config = build_config(family, tokenizer)
    else:
        tokenizer = build_tokenizer(ARCHITECTURES[family][0])
        config = architecture_config(family, tokenizer)
    config._name_or_path = f"tiny-{family}"
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    from softprompt.backbones.kinds import kind_of_config

    auto = {"encoder": AutoModel, "decoder": AutoModelForCausalLM,
            "encoder-decoder": AutoModelForSeq2SeqLM}[kind_of_config(config)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, **kwargs)
    if getattr(model, "generation_config", None) is not None:
        gen = model.generation_config
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            setattr(gen, key, getattr(config, key, None))
        if getattr(config, "decoder_start_token_id", None) is not None:
            gen.decoder_start_token_id = config.decoder_start_token_id
    return model, tokenizer
