"""Data-parallel training on torch.distributed (``torchrun --nproc-per-node N -m cgantool train ...``).

Semantics (documented in README "Multi-GPU"):
- ``train.batch_size`` is the **global** batch; each of the W ranks trains on batch_size / W images.
  Every random draw of a step (real indices, z, fake labels, captions, flips, DiffAugment) is made for the
  global batch with the shared seed and sliced, so W ranks compute what one process with the whole batch
  computes (exactly, with ``train.sync_bn``; BatchNorm otherwise sees the per-rank batch).
- ``train.gather`` (default true): D outputs, conditions and images are all-gathered before the losses, so
  contrastive losses see the global batch as negatives; the gather keeps the gradient of the local slice
  (the other slices are constants), every rank computes the same global loss, and the gradients are
  **summed** across ranks — the exact single-process gradient. ``false``: per-rank losses (XMC-GAN's
  official "negatives are the per-device batch"), gradients averaged.
- Gradients are all-reduced explicitly (one flat bucket per dtype) rather than through the
  ``DistributedDataParallel`` wrapper: a GAN step runs D several times per backward (real, fake) and
  freezes D in the G step, which the DDP reducer does not support without unused-parameter searches.
- ``train.sync_bn``: BatchNorm statistics over the global batch (an all-reduce of per-channel sums with
  autograd), on any backend — torch's SyncBatchNorm only runs on GPUs.
- Rank 0 alone logs, shows progress, writes grids and checkpoints; every rank resumes from the same file.
"""

from __future__ import annotations

import gc
import os
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, total: int) -> slice:
        per = total // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def from_env() -> DistInfo:
    """The process's place in a torchrun launch (WORLD_SIZE / RANK / LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        # torch.distributed.nn.functional evaluates ``group=group.WORLD`` defaults when first imported, and
        # torch imports it lazily (building an optimizer pulls in FSDP -> _shard -> distributed.nn). Imported
        # after init, those defaults would hold the process group until interpreter exit; see ``shutdown``.
        import torch.distributed.nn  # noqa: F401
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)


def shutdown() -> None:
    """Destroy the process group and free it while the interpreter is still whole.

    Gloo's worker threads live as long as the group object. Left to interpreter exit, a worker that drops the
    last reference to a finished collective's tensor takes the GIL during finalization and the process aborts
    ("terminate called without an active exception", seen on ~1 in 8 two-rank CPU test runs under load).
    Nothing keeps the group past this call (``init`` imports torch.distributed.nn early so its defaults
    bind no group; our BatchNorm all-reduce takes none), so the collection frees it and joins the threads.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_true(info: DistInfo, flag: torch.Tensor | bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (Ctrl-C, a NaN): all ranks stop at the same step."""
    t = torch.as_tensor(flag, device=device).to(torch.int32).reshape(1)
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_many(values: tuple, info: DistInfo) -> tuple:
    """Every tensor in ``values`` (tensors, TextConds, DiscOutputs or None) concatenated over the ranks along
    dim 0 ([b, ...] -> [W b, ...]); only the local slice carries gradient (the other slices are constants).
    The tensors travel packed, one all_gather per dtype: a loss call waits on one collective, not one per field."""
    from dataclasses import fields, is_dataclass, replace

    if not info.enabled:
        return values
    tensors: dict[int, torch.Tensor] = {}  # by id: a tensor passed twice travels once

    def collect(v):
        if v is None:
            return
        if torch.is_tensor(v):
            tensors[id(v)] = v
        elif is_dataclass(v):
            for f in fields(v):
                collect(getattr(v, f.name))
        else:
            raise TypeError(f"cannot gather {type(v).__name__}")

    for v in values:
        collect(v)
    gathered: dict[int, torch.Tensor] = {}
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors.values():
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        parts = [torch.empty_like(flat) for _ in range(info.world)]
        dist.all_gather(parts, flat)
        offset = 0
        for t in group:
            n = t.numel()
            rows = [p[offset : offset + n].view_as(t) for p in parts]
            rows[info.rank] = t  # the local slice keeps its gradient
            gathered[id(t)] = torch.cat(rows)
            offset += n

    def rebuild(v):
        if v is None:
            return None
        if torch.is_tensor(v):
            return gathered[id(v)]
        return replace(v, **{f.name: rebuild(getattr(v, f.name)) for f in fields(v)})

    return tuple(rebuild(v) for v in values)


@torch.no_grad()
def all_reduce_grads(params: list[nn.Parameter], info: DistInfo, average: bool) -> None:
    """Sum (or average) the gradients of ``params`` across ranks, one flat buffer per dtype."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        if average:
            flat /= info.world
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


@torch.no_grad()
def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Rank 0's parameters and buffers on every rank (a fresh run starts identical everywhere)."""
    if info.enabled:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with gradient: the backward of a sum is the sum of the incoming gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-reduce (sum) on the default group.

    Ours rather than ``torch.distributed.nn.functional.all_reduce``: that one is deprecated, and importing it
    after ``init_process_group`` binds the default group into its signature for the rest of the process,
    which keeps Gloo's threads alive into interpreter exit (see ``shutdown``)."""
    return _AllReduceSum.apply(x)


def _sync_bn_forward(self: nn.BatchNorm2d, x: torch.Tensor, *_ignored) -> torch.Tensor:
    """BatchNorm2d whose training statistics cover every rank's batch (differentiable all-reduce)."""
    if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return nn.BatchNorm2d.forward(self, x)
    C = x.shape[1]
    xf = x.float()
    count = torch.tensor([x.numel() / C], device=x.device, dtype=torch.float32)
    stats = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count])
    stats = all_reduce_sum(stats)
    n = stats[-1]
    mean = stats[:C] / n
    var = (stats[C : 2 * C] / n - mean * mean).clamp_min(0)
    if self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), m)
            self.running_var.lerp_((var * n / (n - 1)).detach(), m)
    y = (xf - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
    if self.affine:
        y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
    return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> int:
    """Make every BatchNorm2d in ``module`` synchronise its statistics across ranks; returns how many."""
    count = 0
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.forward = types.MethodType(_sync_bn_forward, m)
            count += 1
    return count


def slice_rows(x, info: DistInfo):
    """The local rows of a global-batch tensor / TextCond (None stays None)."""
    if x is None or not info.enabled:
        return x
    return x[info.local_slice(len(x))]

