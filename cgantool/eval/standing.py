"""Standing statistics (``eval --standing-stats K``): re-estimate a batch-norm generator's running statistics
before it is scored, as BigGAN's ``--accumulate_stats`` and StudioGAN's ``-std_stat`` do (POSTECH-CVLab/
PyTorch-StudioGAN, src/utils/misc.py ``apply_standing_statistics``: G in train mode, the BN buffers reset (momentum
None: a cumulative average), K generated batches without gradients, then eval). StudioGAN draws each batch's size
at random in [1, standing_max_batch]; here every batch has ``--batch-size`` images (deterministic).

The checkpoint's generator is never touched: the statistics are re-estimated on a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

STANDING_SEED_OFFSET = 0x5EED  # the latents of the standing batches: a stream apart from every scored fake's


def batch_norms(G: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def with_standing_statistics(G: nn.Module, batches: int, batch_size: int, seed: int, device: torch.device | str,
                             cond_for: Callable[[range], torch.Tensor | None]) -> tuple[nn.Module, int]:
    """A copy of G whose batch-norm running mean/var are the cumulative average over ``batches`` batches of
    ``batch_size`` generated images (latents of ``seed + STANDING_SEED_OFFSET``, conditions ``cond_for(indices)``),
    in eval mode; and how many batch-norm layers it re-estimated (0: G has none and is returned as it is)."""
    from cgantool.sampling import latents

    if not batch_norms(G):
        return G, 0
    G2 = copy.deepcopy(G)
    norms = batch_norms(G2)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over every batch seen
    G2.train()
    for b in range(batches):
        idx = range(b * batch_size, (b + 1) * batch_size)
        cond = cond_for(idx)
        G2(latents(seed + STANDING_SEED_OFFSET, idx, G2.z_dim).to(device),
           cond.to(device) if cond is not None else None)
    G2.eval()
    return G2, len(norms)
