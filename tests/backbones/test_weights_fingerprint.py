"""weights_fingerprint: formats, stability, sensitivity to a one-ulp change, independence of layout."""

from __future__ import annotations

import re
import time

import pytest
import torch

from softprompt.backbones import load_backbone, weights_fingerprint
from softprompt.backbones.fingerprint import QUICK_SAMPLES


def _bump_one_ulp(param: torch.Tensor, index: int) -> None:
    flat = param.data.view(-1)
    flat[index] = torch.nextafter(flat[index], torch.tensor(float("inf"), dtype=flat.dtype))


def test_formats_differ_and_are_hex():
    model = load_backbone("tiny-bert").model
    quick, full = weights_fingerprint(model), weights_fingerprint(model, full=True)
    assert re.fullmatch(r"[0-9a-f]{32}", quick)
    assert re.fullmatch(r"[0-9a-f]{64}", full)
    assert not full.startswith(quick)


def test_stable_across_loads_and_cached_on_backbone():
    a, b = load_backbone("tiny-gpt2"), load_backbone("tiny-gpt2")
    assert a.fingerprint() == b.fingerprint() == weights_fingerprint(b.model)
    assert weights_fingerprint(a.model, full=True) == weights_fingerprint(b.model, full=True)
    assert a.fingerprint() is a.fingerprint()  # computed once


def test_one_ulp_change_changes_full_digest():
    model = load_backbone("tiny-llama").model
    before_full = weights_fingerprint(model, full=True)
    before_quick = weights_fingerprint(model)
    param = model.model.layers[1].mlp.up_proj.weight  # 64 x 128 = 8192 elements, > QUICK_SAMPLES
    assert param.numel() > QUICK_SAMPLES
    _bump_one_ulp(param, 2)  # an index the strided quick sample skips
    assert weights_fingerprint(model, full=True) != before_full
    assert weights_fingerprint(model) == before_quick  # quick is a sample: documented blind spot
    _bump_one_ulp(param, 0)  # the first element is always sampled
    assert weights_fingerprint(model) != before_quick


def test_small_tensors_are_hashed_whole_in_quick_mode():
    model = load_backbone("tiny-bert").model
    before = weights_fingerprint(model)
    norm = model.encoder.layer[0].output.LayerNorm.weight  # 64 elements
    _bump_one_ulp(norm, 37)
    assert weights_fingerprint(model) != before


def test_dtype_and_names_matter_but_memory_layout_does_not():
    model = load_backbone("tiny-t5").model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert weights_fingerprint(state, full=True) == weights_fingerprint(model, full=True)
    assert weights_fingerprint(state) == weights_fingerprint(model)
    # a non-contiguous tensor with the same values hashes the same
    key = "shared.weight"
    state[key] = state[key].t().contiguous().t()
    assert not state[key].is_contiguous()
    assert weights_fingerprint(state, full=True) == weights_fingerprint(model, full=True)
    renamed = dict(state)
    renamed["renamed." + key] = renamed.pop(key)
    assert weights_fingerprint(renamed) != weights_fingerprint(state)
    halved = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    assert weights_fingerprint(halved) != weights_fingerprint(state)
    assert weights_fingerprint(halved, full=True) != weights_fingerprint(state, full=True)


@pytest.mark.slow
def test_quick_mode_is_fast_on_a_110m_model(mpnet):
    n = mpnet.num_parameters()
    assert n > 100_000_000
    started = time.perf_counter()
    digest = weights_fingerprint(mpnet.model)
    quick_s = time.perf_counter() - started
    started = time.perf_counter()
    weights_fingerprint(mpnet.model, full=True)
    full_s = time.perf_counter() - started
    print(f"\n[backbones] mpnet-base ({n / 1e6:.0f}M params): quick fingerprint {quick_s * 1000:.0f} ms, "
          f"full {full_s * 1000:.0f} ms")
    assert quick_s < 0.5
    assert digest == mpnet.fingerprint()
