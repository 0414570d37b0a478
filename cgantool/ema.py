"""Exponential moving average of the generator (parameters and floating-point buffers such as BN stats).

Spectral normalisation's power-iteration vectors ``u``, ``v`` are not averaged: an average of unit vectors is
neither unit nor aligned with the averaged weight, so ``sigma = u^T W v`` would be underestimated (measured on a
ContraGAN BigGAN G: 0.005-0.99 of the true sigma, layers scaled up 2x-200x). They are refreshed instead, by one
power iteration on the averaged weight per update (as training does for the raw weight), and converged when an
EMA generator is loaded (:func:`refresh_spectral_norm`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    ema = copy.deepcopy(G).eval()
    ema.requires_grad_(False)
    return ema


def _spectral_norms(module: nn.Module):
    """(parametrisation, original weight) of every spectral-normalised weight in ``module``."""
    for m in module.modules():
        plist = getattr(m, "parametrizations", None)
        if plist is None:
            continue
        for name in list(plist.keys()):
            for p in plist[name]:
                if hasattr(p, "_u") and hasattr(p, "_v") and hasattr(p, "dim"):
                    yield p, plist[name].original


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module, iterations: int = 1) -> None:
    """``iterations`` power iterations of every spectral norm in ``module`` on its current weight (in place)."""
    for p, weight in _spectral_norms(module):
        mat = weight.movedim(p.dim, 0).flatten(1) if weight.ndim > 1 else weight.view(1, -1)
        u, v = p._u, p._v
        for _ in range(iterations):
            v = F.normalize(mat.t().mv(u), dim=0, eps=p.eps)
            u = F.normalize(mat.mv(v), dim=0, eps=p.eps)
        p._u.copy_(u)
        p._v.copy_(v)


def _is_sn_vector(name: str) -> bool:
    return name.endswith("._u") or name.endswith("._v")


@torch.no_grad()
def update_ema(ema: nn.Module, G: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · G; decay 0 copies. Integer buffers (BN counters) are copied; spectral
    norm's u, v get one power iteration on the averaged weight (copied with everything else when decay is 0)."""
    ema_params = list(ema.parameters())
    g_params = list(G.parameters())
    if decay == 0.0:
        torch._foreach_copy_(ema_params, g_params)
    else:
        torch._foreach_lerp_(ema_params, g_params, 1.0 - decay)
    for (name, b_ema), b in zip(ema.named_buffers(), G.buffers()):
        if decay > 0.0 and _is_sn_vector(name):
            continue  # refreshed below, on the averaged weight
        if b.is_floating_point() and decay > 0.0:
            b_ema.lerp_(b, 1.0 - decay)
        else:
            b_ema.copy_(b)
    if decay > 0.0:
        refresh_spectral_norm(ema)
