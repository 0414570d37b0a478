"""Exponential moving average of the generator (parameters and floating-point buffers such as BN stats)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    ema = copy.deepcopy(G).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, G: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · G; decay 0 copies. Integer buffers (BN counters) are copied."""
    ema_params = list(ema.parameters())
    g_params = list(G.parameters())
    if decay == 0.0:
        torch._foreach_copy_(ema_params, g_params)
    else:
        torch._foreach_lerp_(ema_params, g_params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), G.buffers()):
        if b.is_floating_point() and decay > 0.0:
            b_ema.lerp_(b, 1.0 - decay)
        else:
            b_ema.copy_(b)
