"""Gated MLPs that keep two activations for backward instead of three.

A gated MLP (Llama, Qwen, Mistral, Gemma, OLMo, Granite, ...) computes
`down_proj(act_fn(gate_proj(x)) * up_proj(x))`. Autograd keeps `gate`, `act(gate)` and `up` for
the backward pass: three (tokens x intermediate) tensors per layer, most of a frozen decoder's
training memory. `act(gate)` is cheap to recompute from `gate`, so the lean forward keeps `gate`
and `up` only and recomputes the activation in backward: the same outputs and gradients, bit for
bit, for one elementwise activation more per layer.

Modules are found by what they expose (`gate_proj`, `up_proj`, `down_proj`, `act_fn`) and adopted
only when their `act_fn` is one of those activations and the lean forward reproduces the module's own
forward exactly on a probe input, so an MLP with any other arithmetic keeps its own forward.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

PARTS = ("gate_proj", "up_proj", "down_proj", "act_fn")


# activations whose derivative is one aten op (the one autograd itself calls): name -> (forward, backward)
DERIVATIVES = {
    "silu": (F.silu, lambda grad, x: torch.ops.aten.silu_backward(grad, x)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda grad, x: torch.ops.aten.gelu_backward(grad, x, approximate="tanh")),
    "gelu": (F.gelu, lambda grad, x: torch.ops.aten.gelu_backward(grad, x)),
}


class _GatedActivation(torch.autograd.Function):
    """act(gate) * up, saving gate and up; act(gate) is recomputed in backward."""

    @staticmethod
    def forward(ctx, gate, up, name):
        ctx.name = name
        ctx.save_for_backward(gate, up)
        return DERIVATIVES[name][0](gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        act, act_backward = DERIVATIVES[ctx.name]
        grad_up = grad * act(gate) if ctx.needs_input_grad[1] else None
        grad_gate = act_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        return grad_gate, grad_up, None


def _lean_forward(self, x: torch.Tensor) -> torch.Tensor:
    gate, up = self.gate_proj(x), self.up_proj(x)
    if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
        return self.down_proj(_GatedActivation.apply(gate, up, self._lean_activation))
    return self.down_proj(self.act_fn(gate) * up)


@torch.no_grad()
def _activation_of(module: nn.Module) -> str | None:
    """The name in DERIVATIVES that `module` computes (act_fn and the whole MLP checked on a probe), or None."""
    weight = module.gate_proj.weight
    if weight.device.type == "meta":
        return None
    probe = torch.randn(1, 3, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(weight)
    try:
        gate = module.gate_proj(probe)
        name = next((n for n, (f, _) in DERIVATIVES.items() if torch.equal(module.act_fn(gate), f(gate))), None)
        if name is None:
            return None
        module._lean_activation = name
        if torch.equal(module.forward(probe), _lean_forward(module, probe)):
            return name
        del module._lean_activation
        return None
    except Exception:  # an MLP that takes more than hidden states: not this pattern
        return None


def adopt_lean_mlps(root: nn.Module) -> int:
    """Give every gated MLP under `root` the lean forward (see the module docstring); returns how many."""
    adopted = 0
    for module in root.modules():
        if getattr(module.forward, "__func__", None) is _lean_forward:
            adopted += 1
        elif all(hasattr(module, p) for p in PARTS) and isinstance(module.gate_proj, nn.Module) \
                and "forward" not in vars(module) and _activation_of(module):  # a hooked forward (accelerate) stays
            module.forward = types.MethodType(_lean_forward, module)
            adopted += 1
    return adopted
