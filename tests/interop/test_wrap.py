"""softprompt.wrap: a soft prompt on a user's own HF model; HF-label loss, generation, adapters, and
training with an unchanged transformers.Trainer and TRL's SFTTrainer (tiny-llama)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import softprompt
from softprompt.backbones import load_backbone
from softprompt.wrap import WrappedModel, source_from_labels

PAIRS = [("The capital of France is", " Paris."), ("Two plus two is", " four."),
         ("The sky is", " blue today."), ("Cats like to", " sleep all day.")]
TEXTS = [p + c for p, c in PAIRS]


def perturb(wrapped: WrappedModel, seed: int = 0, std: float = 0.5) -> None:
    """Prompt parameters away from their init, so the prompt visibly matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wrapped.model.producer.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)


def completion_batch(tok):
    """Right-padded prompt+completion batch; labels: the completion only (-100 on prompt and pads)."""
    tok.padding_side = "right"
    rows = [tok(p)["input_ids"] + tok(c, add_special_tokens=False)["input_ids"] for p, c in PAIRS]
    n_prompt = [len(tok(p)["input_ids"]) for p, _ in PAIRS]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for r, (row, n) in enumerate(zip(rows, n_prompt)):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
        labels[r, n: len(row)] = ids[r, n: len(row)]
    return ids, mask, labels


def base_snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_base_unchanged(model, snapshot) -> None:
    now = model.state_dict()
    assert sorted(now) == sorted(snapshot)
    changed = [k for k in snapshot if not torch.equal(now[k], snapshot[k])]
    assert not changed, f"base weights changed: {changed[:5]}"


# ------------------------------------------------------------------------------------------ loss
def test_loss_equals_hf_models_own_loss_with_the_prompt_as_inputs_embeds():
    """prompt-tuning: the wrapper's loss and logits are HF's own forward on [prompt; E(x)] with the labels."""
    bb = load_backbone("tiny-llama")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, bb.tokenizer, method="prompt-tuning", producer={"num_tokens": 4})
    perturb(wrapped)
    wrapped.eval()
    ids, mask, labels = completion_batch(bb.tokenizer)
    with torch.no_grad():
        out = wrapped(ids, mask, labels=labels)
        prompt = wrapped.model.producer(None)[0]  # (P, d) at the embeddings
        P = prompt.shape[0]
        embeds = torch.cat([prompt.expand(ids.shape[0], -1, -1), bb.model.get_input_embeddings()(ids)], 1)
        ref = bb.model(inputs_embeds=embeds, attention_mask=torch.cat([torch.ones(ids.shape[0], P, dtype=mask.dtype), mask], 1),
                       labels=torch.cat([torch.full((ids.shape[0], P), -100), labels], 1))
        plain = bb.model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(out.loss, ref.loss, atol=1e-5), (out.loss, ref.loss)
    real = mask.bool()
    assert torch.allclose(out.logits[real], ref.logits[:, P:][real], atol=1e-4)
    assert (out.logits[real] - plain[real]).abs().max() > 1e-2  # the prompt matters


def test_loss_is_hf_causal_lm_loss_on_target_tokens_only():
    """id-spam (input-dependent): loss = HF's ForCausalLMLoss on the wrapper's logits = softprompt's own
    generative loss; num_items_in_batch rescales it as HF's does; prompt tokens carry no loss."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    bb = load_backbone("tiny-llama")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, bb.tokenizer)  # default: id-spam
    perturb(wrapped)
    wrapped.eval()
    ids, mask, labels = completion_batch(bb.tokenizer)
    V = bb.model.config.vocab_size
    with torch.no_grad():
        out = wrapped(ids, mask, labels=labels)
        hf = ForCausalLMLoss(out.logits, labels, V)
        own = wrapped.model(ids, mask, labels=labels, source_mask=source_from_labels(labels, mask)).loss
        scored = int((labels[:, 1:] != -100).sum())
        scaled = wrapped(ids, mask, labels=labels, num_items_in_batch=torch.tensor(scored * 2)).loss
        hf_scaled = ForCausalLMLoss(out.logits, labels, V, num_items_in_batch=torch.tensor(scored * 2))
        # a different token on a -100 label (a pad column past every row's end) changes nothing
        wider = torch.cat([ids, torch.full((ids.shape[0], 1), 7)], 1)
        wider_mask = torch.cat([mask, torch.zeros(ids.shape[0], 1, dtype=mask.dtype)], 1)
        wider_labels = torch.cat([labels, torch.full((ids.shape[0], 1), -100)], 1)
        padded = wrapped(wider, wider_mask, labels=wider_labels).loss
    assert torch.allclose(out.loss, hf, atol=1e-6) and torch.allclose(out.loss, own, atol=1e-5), (out.loss, hf, own)
    assert torch.allclose(scaled, hf_scaled, atol=1e-6) and torch.allclose(scaled * 2, out.loss, atol=1e-6)
    assert torch.allclose(padded, out.loss, atol=1e-5)
    assert out.logits.shape == (*ids.shape, V) and torch.isfinite(out.loss)


def test_t5_loss_equals_hf_models_own_loss_and_generates():
    """Seq2seq: labels are the decoder's; the loss is HF T5's own with the prompt as inputs_embeds."""
    bb = load_backbone("tiny-t5")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, bb.tokenizer, method="prompt-tuning", producer={"num_tokens": 4})
    perturb(wrapped, std=2.0)
    wrapped.eval()
    tok = bb.tokenizer
    enc = tok([p for p, _ in PAIRS], padding=True, return_tensors="pt")
    labels = tok([c for _, c in PAIRS], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tok.pad_token_id] = -100
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        out = wrapped(ids, mask, labels=labels)
        prompt = wrapped.model.producer(None)[0].expand(ids.shape[0], -1, -1)
        ref = bb.model(inputs_embeds=torch.cat([prompt, bb.model.get_input_embeddings()(ids)], 1),
                       attention_mask=torch.cat([torch.ones(ids.shape[0], prompt.shape[1], dtype=mask.dtype), mask], 1),
                       labels=labels)
        plain = bb.model(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.allclose(out.loss, ref.loss, atol=1e-5), (out.loss, ref.loss)
    assert torch.allclose(out.logits, ref.logits, atol=1e-4)
    assert (out.logits - plain.logits).abs().max() > 1e-3  # the prompt matters
    got = wrapped.generate(ids, mask, max_new_tokens=5, eos_token_id=-1)
    assert torch.equal(got, wrapped.model.generate(ids, mask, max_new_tokens=5, eos_token_id=-1))


def test_source_is_the_tokens_before_the_first_target():
    labels = torch.tensor([[-100, -100, 5, 6], [1, 2, 3, -100], [-100, -100, -100, -100], [-100, -100, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]])  # last row left-padded
    assert source_from_labels(labels, mask).tolist() == [
        [True, True, False, False],  # prompt/completion: the prompt
        [True, False, False, False],  # language modelling: the first token (its label is never scored)
        [True, True, False, False],  # no target: all text
        [False, True, False, False],  # left padding: from the first real token
    ]

    # and an input-dependent prompt never reads the answer: changing the completion leaves the states
    # that predict it unchanged, unless the producer is told to read everything
    bb = load_backbone("tiny-llama")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, bb.tokenizer)
    perturb(wrapped)
    wrapped.eval()
    ids, mask, labels = completion_batch(bb.tokenizer)
    first = (labels != -100).long().argmax(1) - 1  # the column that predicts each row's first target
    other = ids.clone()
    other[labels != -100] = 42
    rows = torch.arange(ids.shape[0])
    with torch.no_grad():
        a = wrapped(ids, mask, labels=labels).logits[rows, first]
        b = wrapped(other, mask, labels=labels).logits[rows, first]
        a_all = wrapped(ids, mask, labels=labels, source_mask=mask.bool()).logits[rows, first]
        b_all = wrapped(other, mask, labels=labels, source_mask=mask.bool()).logits[rows, first]
    assert torch.allclose(a, b, atol=1e-6)
    assert (a_all - b_all).abs().max() > 1e-3


# ------------------------------------------------------------------------------------- generation
def test_generate_delegates_and_only_the_prompt_trains():
    bb = load_backbone("tiny-llama")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, bb.tokenizer, method="prompt-tuning", producer={"num_tokens": 4})
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable == ["model.producer.prompt"]
    assert all(not p.requires_grad for p in bb.model.parameters()) and not bb.model.training
    perturb(wrapped)
    bb.tokenizer.padding_side = "right"
    enc = bb.tokenizer([p for p, _ in PAIRS], padding=True, return_tensors="pt")
    wrapped.train()
    got = wrapped.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=8, eos_token_id=-1)
    assert wrapped.training  # restored after generating in eval mode
    ref = wrapped.model.eval().generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=8, eos_token_id=-1)
    assert got.shape == (len(PAIRS), 8) and torch.equal(got, ref)
    with pytest.raises(ValueError, match=r"unsupported option\(s\) \['min_new_tokens'\].*max_new_tokens"):
        wrapped.generate(enc["input_ids"], enc["attention_mask"], min_new_tokens=3)


def test_refuses_what_is_not_a_soft_prompt_on_an_lm():
    from transformers import AutoModel

    bb = load_backbone("tiny-llama")
    with pytest.raises(ValueError, match="not a soft prompt on a frozen base"):
        softprompt.wrap(bb.model, bb.tokenizer, method="lora")
    enc = load_backbone("tiny-bert")
    with pytest.raises(ValueError, match="is an encoder; generation needs a causal LM"):
        softprompt.wrap(enc.model, enc.tokenizer)
    bare = AutoModel.from_config(bb.model.config)  # LlamaModel: no LM head
    with pytest.raises(ValueError, match="has no LM head; load the model with AutoModelForCausalLM"):
        softprompt.wrap(bare, bb.tokenizer)


# --------------------------------------------------------------------------------------- adapters
def test_save_and_from_pretrained_load_the_named_base(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = load_backbone("tiny-llama")
    tiny.model.save_pretrained(tmp_path / "base")
    tiny.tokenizer.save_pretrained(tmp_path / "base")
    user = AutoModelForCausalLM.from_pretrained(tmp_path / "base")  # the user's own model, by path
    tok = AutoTokenizer.from_pretrained(tmp_path / "base")
    torch.manual_seed(0)
    wrapped = softprompt.wrap(user, tok, producer={"num_tokens": 3})
    perturb(wrapped)
    wrapped.save_pretrained(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter.json", "adapter.safetensors"]
    meta = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert meta["base_model"] == str(tmp_path / "base") and meta["generative"] and meta["base_family"] == "llama"
    assert meta["method"]["name"] == "id-spam"

    back = softprompt.wrap.from_pretrained(tmp_path / "adapter")  # loads the base from the recorded path
    assert isinstance(back, WrappedModel) and back.hf_model is not user
    ids, mask, labels = completion_batch(tok)
    for m in (wrapped, back):
        m.eval()
    with torch.no_grad():
        assert torch.equal(wrapped(ids, mask, labels=labels).logits, back(ids, mask, labels=labels).logits)
    assert torch.equal(wrapped.generate(ids[:1], mask[:1], max_new_tokens=6, eos_token_id=-1),
                       back.generate(ids[:1], mask[:1], max_new_tokens=6, eos_token_id=-1))

    # a model with no name or path cannot be named by an adapter
    unnamed = AutoModelForCausalLM.from_config(tiny.model.config.__class__.from_dict(
        {**tiny.model.config.to_dict(), "_name_or_path": ""}))
    unnamed.config._name_or_path = ""
    with pytest.raises(ValueError, match="no name or path"):
        softprompt.wrap(unnamed, tok).save_pretrained(tmp_path / "nameless")


# ---------------------------------------------------------------------------------------- trainers
def _eval_loss(wrapped, ids, mask, labels) -> float:
    was = wrapped.training
    wrapped.eval()
    with torch.no_grad():
        loss = WrappedModel.forward(wrapped, ids, mask, labels=labels).loss.item()
    wrapped.train(was)
    return loss


def test_transformers_trainer_trains_the_prompt_only(tmp_path):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    bb = load_backbone("tiny-llama")
    tok = bb.tokenizer
    tok.padding_side = "right"
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, tok)
    prompt0 = {n: p.detach().clone() for n, p in wrapped.model.producer.named_parameters()}
    base0 = base_snapshot(bb.model)
    features = [{"input_ids": tok(t)["input_ids"]} for t in TEXTS]
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    full = collator(features)
    loss0 = _eval_loss(wrapped, full["input_ids"], full["attention_mask"], full["labels"])

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8, learning_rate=3e-2,
                             lr_scheduler_type="constant", use_cpu=True, report_to="none", save_strategy="no",
                             logging_steps=1, disable_tqdm=True, seed=0, dataloader_pin_memory=False)
    trainer = Trainer(model=wrapped, args=args, train_dataset=features, data_collator=collator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = trainer.train()
    assert result.global_step == 8
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 8 and all(torch.isfinite(torch.tensor(logged)))

    loss1 = _eval_loss(wrapped, full["input_ids"], full["attention_mask"], full["labels"])
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    changed = {n for n, p in wrapped.model.producer.named_parameters() if not torch.equal(p, prompt0[n])}
    # language-modelling labels: the producer reads one token, so its attention query/key get no gradient
    assert changed == set(prompt0) - {"wq.weight", "wk.weight"}, sorted(changed)
    assert_base_unchanged(bb.model, base0)


def test_trl_sft_trainer_trains_the_prompt_only(tmp_path):
    trl = pytest.importorskip("trl", reason="trl is an optional dependency (pip install 'softprompt[trl]')")
    from datasets import Dataset

    bb = load_backbone("tiny-llama")
    tok = bb.tokenizer
    torch.manual_seed(0)
    wrapped = softprompt.wrap(bb.model, tok)
    prompt0 = {n: p.detach().clone() for n, p in wrapped.model.producer.named_parameters()}
    base0 = base_snapshot(bb.model)
    data = Dataset.from_dict({"prompt": [p for p, _ in PAIRS], "completion": [c for _, c in PAIRS]})
    ids, mask, labels = completion_batch(tok)
    loss0 = _eval_loss(wrapped, ids, mask, labels)

    args = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8, learning_rate=3e-2,
                         lr_scheduler_type="constant", use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                         logging_steps=1, disable_tqdm=True, seed=0, dataloader_pin_memory=False, max_length=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.SFTTrainer(model=wrapped, args=args, train_dataset=data, processing_class=tok)
        assert trainer.completion_only_loss  # prompt/completion data: the loss is on the completion only
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
        result = trainer.train()
    assert result.global_step == 8
    assert wrapped.is_gradient_checkpointing  # SFTConfig turns it on; the wrapper passes it to the layer loop
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 8 and all(torch.isfinite(torch.tensor(logged)))

    loss1 = _eval_loss(wrapped, ids, mask, labels)
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    assert all(not torch.equal(p, prompt0[n]) for n, p in wrapped.model.producer.named_parameters()
               if p.requires_grad)
    assert_base_unchanged(bb.model, base0)

    # TRL scores our hidden states with its fused LM head (model.forward is patched); its loss on a
    # batch of its own collator is the wrapper's loss, the producer reading the prompt only
    assert "forward" in vars(wrapped)
    assert batch["labels"][0, 0] == -100 and (batch["labels"] != -100).any()
    perturb(wrapped, seed=1, std=2.0)  # a prompt that moves the outputs more than 8 small steps did
    wrapped.eval()
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        fused = wrapped(**batch, fused_lm_head=True)
        ours = WrappedModel.forward(wrapped, ids, mask, labels=labels)
        reads_all = WrappedModel.forward(wrapped, ids, mask, labels=labels, source_mask=mask.bool())
    scored = labels[:, 1:] != -100

    def token_log_probs(out):
        lp = out.logits[:, :-1].log_softmax(-1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
        return lp[scored]

    assert torch.equal(fused.label_mask, scored)
    assert torch.allclose(fused.loss, ours.loss, atol=1e-5), (fused.loss, ours.loss)
    assert (fused.log_probs[scored] - token_log_probs(ours)).abs().max() < 1e-5
    assert (fused.log_probs[scored] - token_log_probs(reads_all)).abs().max() > 1e-3
