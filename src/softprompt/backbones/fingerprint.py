"""Weights fingerprints: a stable digest of a model's state_dict, independent of device.

* quick (default): blake2b-128 -> 32 hex chars. Hashes every tensor's name, shape and dtype plus
  a strided sample (about 4096 elements, first and last always included) of its bytes.
  Catches a different model, a different dtype, a resized/retrained layer; it is NOT meant to
  catch a single changed element (use full for that).
* full: sha256 -> 64 hex chars. Hashes name, shape, dtype and every byte of every tensor.

The two formats differ in length, so a quick digest can never be mistaken for a full one.
Tensors are visited in sorted name order; tied weights appear under each of their names.
"""

from __future__ import annotations

import hashlib

import torch

QUICK_SAMPLES = 4096


def _header(name: str, tensor: torch.Tensor) -> bytes:
    return f"{name}|{tuple(tensor.shape)}|{str(tensor.dtype).removeprefix('torch.')}\n".encode()


def _as_bytes(tensor: torch.Tensor):
    """A CPU byte view (numpy buffer, no copy for contiguous CPU tensors)."""
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy()


def _sample(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().reshape(-1)
    n = flat.numel()
    if n <= QUICK_SAMPLES:
        return flat
    step = (n // QUICK_SAMPLES) | 1  # odd, so rows of even length are not always hit in one column
    return torch.cat([flat[::step], flat[-1:]])


def _state(model) -> list[tuple[str, torch.Tensor]]:
    if isinstance(model, torch.nn.Module):
        state = model.state_dict(keep_vars=False)
    else:  # a plain mapping name -> tensor
        state = dict(model)
    return sorted((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))


@torch.no_grad()
def weights_fingerprint(model, full: bool = False) -> str:
    """Digest of the model's weights (see module doc): 32 hex chars quick, 64 hex chars full."""
    if full:
        digest = hashlib.sha256()
        for name, tensor in _state(model):
            digest.update(_header(name, tensor))
            digest.update(_as_bytes(tensor))
        return digest.hexdigest()
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in _state(model):
        digest.update(_header(name, tensor))
        digest.update(_as_bytes(_sample(tensor)))
    return digest.hexdigest()
