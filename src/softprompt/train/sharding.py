"""The frozen base sharded across processes with accelerate's FSDP2 (`TrainConfig.fsdp`).

Each transformer layer of the base becomes its own `fully_shard` group (accelerate's
`transformer_based_wrap` with the runner's layer class): its weights are split across the
processes and gathered for that layer's forward (and its recomputation under gradient
checkpointing) only. Everything outside the layers stays whole on every process, as FSDP2
`ignored_params`: the prompt, its producer and the heads (trainable, fp32, one copy per process,
their gradients averaged across processes here, as DDP would) and the base's embeddings, final
norm and LM head, and position tables inside a layer such as T5's relative attention bias (read
directly by softprompt's layer loop and decoder, outside a module's forward). Every process runs the same selection scoring, so the layers' gathers stay in step.

On CPU accelerate does not shard (`AcceleratorState` turns a plugin into FSDP only for
accelerator devices; MULTI_CPU stays DDP): `make_accelerator` then marks the state FSDP itself so
that `Accelerator.prepare` runs accelerate's own `fsdp2_prepare_model` on gloo.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin


def fsdp_plugin() -> FullyShardedDataParallelPlugin:
    """FSDP2, one group per transformer layer (the classes are named by `plan_sharding` once the model exists)."""
    return FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                          reshard_after_forward=True, state_dict_type="FULL_STATE_DICT")


def set_cpu_fsdp(accelerator: Accelerator, plugin: FullyShardedDataParallelPlugin | None) -> None:
    """Multi-process CPU (gloo): accelerate leaves a plugin unused (DDP); ask for its FSDP2 path anyway
    (plugin None: back to DDP). Set on PartialState too: every `AcceleratorState()` copies its fields."""
    state = accelerator.state
    if state.distributed_type not in (DistributedType.MULTI_CPU, DistributedType.FSDP):
        return
    kind = DistributedType.FSDP if plugin is not None else DistributedType.MULTI_CPU
    PartialState().distributed_type = state.distributed_type = kind
    state.fsdp_plugin = plugin


def plan_sharding(accelerator: Accelerator, model) -> dict[str, int]:
    """Before `prepare`: shard the runner's layers, keep every other parameter whole (on this process's
    device). Returns parameter counts, sharded and kept whole."""
    plugin = accelerator.state.fsdp_plugin
    model.backbone.fingerprint()  # computed (and cached) from the whole weights: saved adapters record it
    layers = list(model.runner.layers)
    plugin.transformer_cls_names_to_wrap = sorted({type(layer).__name__ for layer in layers})
    # position tables inside a layer (T5's relative attention bias) are read outside the layer's forward
    tables = [m for layer in layers for m in layer.modules() if isinstance(m, torch.nn.Embedding)]
    in_layers = {id(p) for layer in layers for p in layer.parameters()} - {id(p) for m in tables for p in m.parameters()}
    whole = [m for m in model.modules()
             if any(True for _ in m.parameters(recurse=False)) and not any(id(p) in in_layers for p in m.parameters())]
    for module in whole:
        module.to(accelerator.device)
    in_layer_modules = {id(m) for layer in layers for m in layer.modules()}
    for module in model.modules():  # buffers outside the layers (rotary tables): fully_shard leaves them
        if id(module) not in in_layer_modules:
            for name, buffer in module.named_buffers(recurse=False):
                setattr(module, name, buffer.to(accelerator.device))
    plugin.ignored_modules = whole
    kept = {id(p) for m in whole for p in m.parameters()}
    loose = [n for n, p in model.named_parameters() if id(p) not in kept and id(p) not in in_layers]
    if loose:  # a parameter neither in a layer nor in a module of its own: FSDP would shard it at the root
        raise RuntimeError(f"fsdp: parameters outside the base's layers in mixed modules: {loose[:3]}")
    return {"sharded": sum(p.numel() for layer in layers for p in layer.parameters() if id(p) in in_layers),
            "whole": sum(p.numel() for p in model.parameters() if id(p) in kept)}


def is_fsdp(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def average_trainable_grads(accelerator: Accelerator, params) -> None:
    """FSDP2 does not reduce ignored parameters: average the replicated trainable gradients across processes."""
    if accelerator.num_processes == 1:
        return
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(accelerator.num_processes)
