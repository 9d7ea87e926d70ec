"""Hostile adapter files are refused with a clear message, and nothing in them is executed."""

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from softprompt.adapter import load_adapter, save_adapter
from softprompt.backbones import load_backbone
from softprompt.errors import AdapterError
from tests.core.helpers import build


class Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def adapter(tmp_path):
    model = build("tiny-bert", "id-spam")
    return save_adapter(model, tmp_path / "a", task="sst2", label_names=["negative", "positive"])


def load(path):
    return load_adapter(path, load_backbone("tiny-bert"))


def test_pickle_disguised_as_adapter_is_refused_without_running(adapter, tmp_path):
    marker = tmp_path / "pwned"
    (adapter / "adapter.safetensors").write_bytes(pickle.dumps(Boom(str(marker))))
    with pytest.raises(AdapterError, match="not a safetensors file"):
        load(adapter)
    assert not marker.exists()


def test_torch_save_zip_is_refused(adapter):
    torch.save({"x": torch.zeros(2)}, adapter / "adapter.safetensors")
    with pytest.raises(AdapterError, match="not a safetensors file"):
        load(adapter)


def test_huge_declared_header_is_refused(adapter):
    (adapter / "adapter.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(AdapterError, match="declared header"):
        load(adapter)


def test_wrong_shape_is_refused(adapter):
    tensors = load_file(str(adapter / "adapter.safetensors"))
    tensors["head.out.weight"] = torch.zeros(3, 7)
    save_file(tensors, str(adapter / "adapter.safetensors"))
    with pytest.raises(AdapterError, match=r"head.out.weight has shape \(3, 7\)"):
        load(adapter)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_refused(adapter, value):
    tensors = load_file(str(adapter / "adapter.safetensors"))
    name = next(k for k in tensors if k.startswith("producer."))
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(adapter / "adapter.safetensors"))
    with pytest.raises(AdapterError, match="NaN or infinite"):
        load(adapter)


def test_extra_or_missing_tensors_are_refused(adapter):
    tensors = load_file(str(adapter / "adapter.safetensors"))
    tensors["producer.smuggled"] = torch.zeros(1)
    save_file(tensors, str(adapter / "adapter.safetensors"))
    with pytest.raises(AdapterError, match="unexpected \\['producer.smuggled'\\]"):
        load(adapter)


def test_config_naming_another_base_is_refused(adapter):
    meta = json.loads((adapter / "adapter.json").read_text())
    meta["base_model"], meta["base_fingerprint"] = "gemma3-270m", "0" * 32
    (adapter / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match="made for base model 'gemma3-270m'"):
        load(adapter)


@pytest.mark.parametrize(
    "content,message",
    [("{not json", "not valid JSON"), ('{"format": "other"}', "'format' must be"),
     ('{"format": "softprompt-adapter"}', "missing field 'method'")],
)
def test_malformed_metadata_is_refused(adapter, content, message):
    (adapter / "adapter.json").write_text(content)
    with pytest.raises(AdapterError, match=message):
        load(adapter)


def test_bad_method_in_metadata_names_the_field(adapter):
    meta = json.loads((adapter / "adapter.json").read_text())
    meta["method"]["producer"]["kind"] = "shellcode"
    (adapter / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match="field 'method'.*unknown 'shellcode'"):
        load(adapter)
