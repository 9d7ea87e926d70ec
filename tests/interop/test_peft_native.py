"""peft interop for the methods peft has under their own type: `cartridge` exports as peft's CARTRIDGE and
`mpt` as MULTITASK_PROMPT_TUNING (one task), peft runs them with softprompt's outputs (hidden states, LM
logits, greedy tokens), and both import back as themselves.

CARTRIDGE: prompt_embeddings (P, L*2*kv_dim) is the whole cache, the frozen sink rows first (peft splits
them off into CartridgeEncoder.frozen_embedding by num_frozen_tokens). MULTITASK_PROMPT_TUNING:
prompt_embeddings = P* (P, d), prefix_task_cols = U (1, P, r), prefix_task_rows = V (1, r, d); peft's
forward and generate need task_ids (zeros: the one task). peft's FEATURE_EXTRACTION model passes no
task_ids to the MPT encoder, so mpt on encoders stays folded PROMPT_TUNING. On T5, peft's Seq2Seq forward
for MPT (num_transformer_submodules=1) passes only inputs_embeds and kwargs on, dropping decoder_input_ids:
the comparison gives `labels` instead (T5 starts its decoder from them); generate is unaffected.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors import safe_open

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.interop.peft import PEFT_CONFIG, PEFT_WEIGHTS, PeftInteropError, export_layout, export_peft, import_peft
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from tests.interop.test_peft import ATOL, assert_same_outputs, encode, fresh_peft, peft_outputs
from tests.interop.test_peft_generate import assert_same_and_prompt_matters, base, peft_model

TASK_TYPE = {"encoder": "FEATURE_EXTRACTION", "decoder": "CAUSAL_LM", "encoder-decoder": "SEQ_2_SEQ_LM"}


class OneTask:
    """A peft MULTITASK_PROMPT_TUNING model that passes task_ids=zeros (its one task) to forward and generate."""

    def __init__(self, pm):
        self.pm = pm

    @staticmethod
    def _task_ids(kw):
        return torch.zeros(kw["input_ids"].shape[0], dtype=torch.long)

    def __call__(self, **kw):
        if "decoder_input_ids" in kw:  # peft's Seq2Seq forward drops decoder_input_ids for MPT with one submodule;
            kw["labels"] = kw.pop("decoder_input_ids")  # T5 makes [start] from labels (the encoder is compared)
        return self.pm(**kw, task_ids=self._task_ids(kw))

    def generate(self, **kw):
        return self.pm.generate(**kw, task_ids=self._task_ids(kw))

    def __getattr__(self, name):
        return getattr(self.pm, name)


def build(backbone, method: str, producer: dict, seed: int = 0, generative: bool = False, std: float = 0.5):
    torch.manual_seed(seed)
    model = SoftPromptModel(backbone, method_config(method, producer=producer), 0 if generative else 2,
                            generative=generative)
    with torch.no_grad():  # away from the init (the cartridge's sink too), so a dropped or misplaced row shows
        for t in [*model.producer.parameters(), *model.producer.buffers(), *model.head.parameters()]:
            t.normal_(0, std)
    return model.eval()


def read_weights(directory) -> dict[str, torch.Tensor]:
    with safe_open(str(directory / PEFT_WEIGHTS), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def assert_saves_and_loads(model, directory):
    """An imported model is an ordinary softprompt adapter: saved and loaded, the same logits."""
    save_adapter(model, directory)
    again = load_adapter(directory).eval()
    ids, mask, types = encode(model.backbone.tokenizer)
    with torch.no_grad():
        assert torch.equal(again(ids, mask, types).logits, model(ids, mask, types).logits)


# ------------------------------------------------------------------------------------ cartridge
@pytest.mark.parametrize("name,frozen", [("tiny-llama", 2), ("tiny-llama", 0), ("tiny-bert", 1)])
def test_cartridge_exports_as_peft_cartridge_and_back(tmp_path, name, frozen):
    model = build(load_backbone(name), "cartridge", {"num_tokens": 5, "frozen_tokens": frozen})
    producer = model.producer
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert (cfg["peft_type"], cfg["task_type"]) == ("CARTRIDGE", TASK_TYPE[model.backbone.kind])
    assert (cfg["num_virtual_tokens"], cfg["num_frozen_tokens"], cfg["num_transformer_submodules"]) == (5, frozen, 1)
    heads, head_dim = model.runner.prefix_shape()
    assert (cfg["num_layers"], cfg["num_attention_heads"], cfg["token_dim"]) == (
        model.runner.num_layers, heads, heads * head_dim)
    weights = read_weights(tmp_path / "peft")
    assert list(weights) == ["prompt_embeddings"]  # what peft saves: the whole cache, sink rows first
    assert torch.equal(weights["prompt_embeddings"], torch.cat([producer.sink, producer.prompt]))

    pm = fresh_peft(name, tmp_path / "peft")
    encoder = pm.prompt_encoder["default"]
    if frozen:
        assert torch.equal(encoder.frozen_embedding, producer.sink) and not encoder.frozen_embedding.requires_grad
    else:
        assert encoder.frozen_embedding is None
    assert torch.equal(encoder.trainable_embedding, producer.prompt)
    ids, mask, types = encode(model.backbone.tokenizer)
    ref_hidden, logits = assert_same_outputs(pm, model, ids, mask, types)
    with torch.no_grad():
        assert torch.allclose(model.head(ref_hidden, mask.bool()), logits, atol=ATOL)
    plain, _ = peft_outputs(pm.get_base_model(), model.backbone.kind, ids, mask)
    assert (plain - ref_hidden)[mask.bool()].abs().max() > 1e-2  # the cache matters

    back = import_peft(tmp_path / "peft")
    assert back.method.name == "cartridge" and back.method.producer_kind == "cartridge"
    assert back.producer.cfg.frozen_tokens == frozen and back.producer.cfg.init == "random"
    assert torch.equal(back.producer.sink, producer.sink) and torch.equal(back.producer.prompt, producer.prompt)
    assert back.adapter_meta["imported_from"]["peft_type"] == "CARTRIDGE"
    with torch.no_grad():
        assert torch.equal(back(ids, mask, types).logits, logits)


def test_cartridge_generates_the_same_tokens_in_peft(tmp_path):
    model = build(base("tiny-llama"), "cartridge", {"num_tokens": 4}, generative=True, std=1.0)
    export_peft(model, tmp_path / "peft")
    assert json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())["peft_type"] == "CARTRIDGE"
    assert_same_and_prompt_matters(peft_model("tiny-llama", tmp_path / "peft"), model, "decoder")


def test_cartridge_made_by_peft_imports(tmp_path):
    from peft import CartridgeConfig, get_peft_model

    torch.manual_seed(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_backbone("tiny-llama").model,
                            CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=6, num_frozen_tokens=2))
        pm.save_pretrained(str(tmp_path / "native"))
    pm.eval()
    bb = load_backbone("tiny-llama")
    model = import_peft(tmp_path / "native", bb, num_labels=3)
    assert model.method.name == "cartridge" and model.producer.cfg.frozen_tokens == 2
    assert torch.equal(model.producer.sink, pm.prompt_encoder["default"].frozen_embedding)
    assert_same_outputs(pm, model, *encode(bb.tokenizer))
    assert_saves_and_loads(model, tmp_path / "adapter")


def test_cartridge_on_t5_is_refused(tmp_path):
    model = SoftPromptModel(load_backbone("tiny-t5"), method_config("cartridge", producer={"num_tokens": 4}), 2)
    with pytest.raises(PeftInteropError, match="decoder"):
        export_peft(model, tmp_path / "peft")


# ------------------------------------------------------------------------------------ mpt
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5"])
def test_mpt_exports_as_peft_multitask_prompt_tuning_and_back(tmp_path, name):
    model = build(load_backbone(name), "mpt", {"num_tokens": 5, "rank": 2})
    producer = model.producer
    d = model.runner.embedding_size
    assert export_layout(model).peft_type == "MULTITASK_PROMPT_TUNING"
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert (cfg["peft_type"], cfg["task_type"]) == ("MULTITASK_PROMPT_TUNING", TASK_TYPE[model.backbone.kind])
    assert (cfg["num_tasks"], cfg["num_ranks"], cfg["num_virtual_tokens"], cfg["token_dim"]) == (1, 2, 5, d)
    assert cfg["num_transformer_submodules"] == 1
    weights = read_weights(tmp_path / "peft")
    assert sorted(weights) == ["prefix_task_cols", "prefix_task_rows", "prompt_embeddings"]
    assert torch.equal(weights["prompt_embeddings"], producer.shared)  # P*, not the product (as peft saves it)
    assert weights["prefix_task_cols"].shape == (1, 5, 2) and torch.equal(weights["prefix_task_cols"][0], producer.cols)
    assert weights["prefix_task_rows"].shape == (1, 2, d) and torch.equal(weights["prefix_task_rows"][0], producer.rows)

    pm = fresh_peft(name, tmp_path / "peft")
    zeros = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(pm.get_prompt(1, task_ids=zeros)[0], producer()[0], atol=1e-6)
    ids, mask, types = encode(model.backbone.tokenizer)
    ref_hidden, logits = assert_same_outputs(OneTask(pm), model, ids, mask, types)
    with torch.no_grad():
        assert torch.allclose(model.head(ref_hidden, mask.bool()), logits, atol=ATOL)
    with pytest.raises(ValueError, match="task_ids"), warnings.catch_warnings():  # peft's MPT needs its task
        warnings.simplefilter("ignore")
        kw = {"labels": ids[:, :1]} if model.backbone.kind == "encoder-decoder" else {}
        pm(input_ids=ids, attention_mask=mask, **kw)

    back = import_peft(tmp_path / "peft")
    assert back.method.name == "mpt" and back.producer.cfg.rank == 2 and back.producer.cfg.shared_from is None
    for p in ("shared", "cols", "rows"):
        assert torch.equal(getattr(back.producer, p), getattr(producer, p))
    with torch.no_grad():
        assert torch.equal(back(ids, mask, types).logits, logits)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5"])
def test_mpt_generates_the_same_tokens_in_peft(tmp_path, name):
    model = build(base(name), "mpt", {"num_tokens": 4, "rank": 2}, generative=True, std=1.0)
    with torch.no_grad():  # P* o UV of N(0, 1) factors is small; scale P* so the prompt changes the tokens
        model.producer.shared.mul_(4)
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert (cfg["peft_type"], cfg["task_type"]) == ("MULTITASK_PROMPT_TUNING", TASK_TYPE[model.backbone.kind])
    assert_same_and_prompt_matters(OneTask(peft_model(name, tmp_path / "peft")), model, model.backbone.kind)


def test_mpt_on_an_encoder_exports_folded_prompt_tuning(tmp_path):
    """peft's FEATURE_EXTRACTION model calls the MPT encoder without task_ids (ValueError), so encoders fold."""
    from peft import MultitaskPromptTuningConfig, get_peft_model

    with pytest.raises(ValueError, match="task_ids"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = get_peft_model(load_backbone("tiny-bert").model,
                                MultitaskPromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=3))
        native(input_ids=torch.tensor([[101, 102]]), task_ids=torch.zeros(1, dtype=torch.long))

    model = build(load_backbone("tiny-bert"), "mpt", {"num_tokens": 5, "rank": 2})
    export_peft(model, tmp_path / "peft")
    cfg = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert (cfg["peft_type"], cfg["task_type"]) == ("PROMPT_TUNING", "FEATURE_EXTRACTION")
    with torch.no_grad():
        assert torch.equal(read_weights(tmp_path / "peft")["prompt_embeddings"], model.producer()[0])
    ids, mask, types = encode(model.backbone.tokenizer)
    assert_same_outputs(fresh_peft("tiny-bert", tmp_path / "peft"), model, ids, mask, types)


def test_mpt_made_by_peft_imports_and_many_tasks_are_refused(tmp_path):
    from peft import MultitaskPromptTuningConfig, get_peft_model

    bb = load_backbone("tiny-llama")
    torch.manual_seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_backbone("tiny-llama").model, MultitaskPromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=6, num_ranks=3, num_tasks=1))
        with torch.no_grad():  # peft's U, V start at N(0, 0.02^2): make the task matrix matter
            pm.prompt_encoder["default"].prefix_task_cols.normal_(0, 1)
            pm.prompt_encoder["default"].prefix_task_rows.normal_(0, 1)
        pm.save_pretrained(str(tmp_path / "native"))
    pm.eval()
    model = import_peft(tmp_path / "native", bb, num_labels=3)
    assert model.method.name == "mpt" and model.producer.cfg.rank == 3
    assert_same_outputs(OneTask(pm), model, *encode(bb.tokenizer))
    assert_saves_and_loads(model, tmp_path / "adapter")

    cfg = json.loads((tmp_path / "native" / PEFT_CONFIG).read_text())
    (tmp_path / "native" / PEFT_CONFIG).write_text(json.dumps({**cfg, "num_tasks": 2}))
    with pytest.raises(PeftInteropError, match="num_tasks=2"):
        import_peft(tmp_path / "native", bb)
