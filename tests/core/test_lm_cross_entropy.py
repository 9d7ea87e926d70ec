"""The chunked LM-head cross-entropy equals the plain one (loss and gradients) and keeps a chunk of logits."""

import torch
import torch.nn.functional as F
from torch import nn

from softprompt import heads
from softprompt.heads import lm_cross_entropy


def test_chunked_loss_and_gradients_equal_the_plain_ones(monkeypatch):
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    plain = F.cross_entropy(head(hidden), targets)
    g_plain = torch.autograd.grad(plain, [hidden, head.weight])
    monkeypatch.setattr(heads, "LOGIT_CHUNK_ELEMENTS", 50 * 8)  # 8 rows a chunk: 5 chunks
    chunked = lm_cross_entropy(head, hidden, targets)
    g_chunked = torch.autograd.grad(chunked, [hidden, head.weight])
    assert torch.allclose(chunked, plain, atol=1e-6)
    for a, b in zip(g_chunked, g_plain):
        assert torch.allclose(a, b, atol=1e-6)


def test_only_a_chunk_of_logits_is_kept_for_backward(monkeypatch):
    """Saved tensors of the chunked loss: no (N, V) logits, unlike the plain loss."""
    head = nn.Linear(16, 1000, bias=False)
    hidden = torch.randn(64, 16, requires_grad=True)
    targets = torch.randint(0, 1000, (64,))
    monkeypatch.setattr(heads, "LOGIT_CHUNK_ELEMENTS", 1000 * 8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        lm_cross_entropy(head, hidden, targets)
    assert max(saved) < 64 * 1000
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        F.cross_entropy(head(hidden), targets)
    assert max(saved) >= 64 * 1000


def test_a_frozen_head_takes_the_fused_path_with_the_plain_loss_and_gradient(monkeypatch):
    """Fused chunks (gradient formed in the forward pass) equal F.cross_entropy, bias included, and keep no logits."""
    torch.manual_seed(0)
    head = nn.Linear(16, 1000).requires_grad_(False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 1000, (37,))
    plain = F.cross_entropy(head(hidden), targets)
    (g_plain,) = torch.autograd.grad(plain * 3, [hidden])
    monkeypatch.setattr(heads, "LOGIT_CHUNK_ELEMENTS", 1000 * 8)  # 8 rows a chunk: 5 chunks
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        fused = lm_cross_entropy(head, hidden, targets)
    assert fused.grad_fn.next_functions[0][0].name() == "_FrozenLinearCrossEntropyBackward"
    assert saved == [(37, 16)]  # the hidden states' gradient only, no logits
    (g_fused,) = torch.autograd.grad(fused * 3, [hidden])
    assert torch.allclose(fused, plain, atol=1e-6)
    assert torch.allclose(g_fused, g_plain, atol=1e-6)
