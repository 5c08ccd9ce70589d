"""Multi-process training under `torchrun`: process group, device, batch sharding, reductions.

One process trains as it always did. Under torchrun (WORLD_SIZE > 1) every process loads the same
data and sees the same global batches; each takes its contiguous slice of every batch, and
DistributedDataParallel averages the gradients, so the step equals the one-process step on the whole
batch up to floating-point reduction order. NCCL joins GPUs, gloo joins CPU processes.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgekit.errors import InputError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start(device: str = "auto") -> Runtime:
    """Join the torchrun process group when there is one, and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this machine has no CUDA GPU; use --device cpu")
    if use_cuda:
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(target)
    else:
        target = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return current(target)


def current(device: torch.device | None = None) -> Runtime:
    device = device or torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return Runtime(device, dist.get_rank(), dist.get_world_size())
    return Runtime(device)


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap(module: torch.nn.Module, runtime: Runtime, shard_units: list[torch.nn.Module] | None = None) -> torch.nn.Module:
    """DistributedDataParallel around `module` when several processes train; the module itself otherwise.
    With `shard_units` (a model's layers) the parameters, gradients and optimizer state are sharded over the
    processes instead (FSDP: each unit's shards are gathered only while it runs), for a student that does not
    fit one device; the module is sharded in place and returned."""
    if runtime.world == 1:
        return module
    if shard_units is not None:
        from torch.distributed.fsdp import fully_shard

        for unit in shard_units:
            fully_shard(unit)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def no_sync(model: torch.nn.Module, skip: bool):
    """Skip the gradient all-reduce on accumulation steps that do not end in an optimizer step."""
    return model.no_sync() if skip and hasattr(model, "no_sync") else nullcontext()


def shard(tensors: tuple[torch.Tensor, ...], runtime: Runtime) -> tuple[torch.Tensor, ...]:
    """This process's contiguous slice of a global batch, on its device."""
    if runtime.world == 1:
        return tuple(t.to(runtime.device) for t in tensors)
    return tuple(torch.tensor_split(t, runtime.world)[runtime.rank].to(runtime.device) for t in tensors)


def mean_over_processes(values: dict[str, float], runtime: Runtime) -> dict[str, float]:
    if runtime.world == 1 or not values:
        return values
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                          device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.all_reduce(packed)
    return {k: float(v) / runtime.world for k, v in zip(keys, packed.tolist())}


def autocast(runtime: Runtime, precision: str):
    """bf16 autocast for the forward passes where asked; fp32 otherwise."""
    if precision != "bf16":
        return nullcontext()
    if runtime.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("--precision bf16: this GPU has no bf16 support; use --precision fp32")
    return torch.autocast(device_type=runtime.device.type, dtype=torch.bfloat16)


def full_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The whole model's and optimizer's state on the CPU, keyed by parameter names, gathered from the shards
    under FSDP (every process must call it; the first process receives the tensors)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options), get_optimizer_state_dict(module, optimizer, options=options)


def load_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore what `full_state` saved, scattering it to the shards under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=dist.is_available() and dist.is_initialized())
    set_optimizer_state_dict(module, optimizer, state, options=options)
