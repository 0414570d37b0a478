"""Augmentations that run on the training device: random horizontal flips and DiffAugment.

DiffAugment (Zhao et al., NeurIPS 2020) policies ``color``, ``translation``, ``cutout`` are differentiable, so
they are applied to real and fake images alike, in both D and G steps. Every random draw comes from the
generator passed in, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgantool.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


def random_hflip(x: torch.Tensor, generator: torch.Generator, rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """Flip each image of ``x`` [B, C, H, W] left-right with probability 1/2.

    ``rows``/``total`` (data-parallel ranks): x holds rows ``rows`` of a ``total``-image batch; the draws are
    made for the whole batch and sliced, so every rank consumes the same random stream.
    """
    flip = _draw(torch.rand, x, generator, rows, total, 1, 1, 1) < 0.5
    return torch.where(flip, x.flip(-1), x)


def _draw(fn, x: torch.Tensor, g: torch.Generator, rows: slice | None, total: int | None, *shape: int, **kw) -> torch.Tensor:
    n = total if total is not None else x.shape[0]
    out = fn(*kw.pop("args", ()), (n, *shape), device=x.device, generator=g, **kw)
    return out[rows] if rows is not None else out


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in POLICIES:
            raise ConfigError(f"unknown DiffAugment policy '{name}' in train.diffaug", hint=f"valid: {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: list[str], generator: torch.Generator, rows: slice | None = None,
                 total: int | None = None) -> torch.Tensor:
    """Apply DiffAugment ``policy`` to ``x`` [B, C, H, W] in [-1, 1] (``rows``/``total``: see random_hflip)."""
    for name in policy:
        x = _AUGMENTS[name](x, generator, rows, total)
    return x


def _rand(x: torch.Tensor, g: torch.Generator, rows, total, *shape: int) -> torch.Tensor:
    return _draw(torch.rand, x, g, rows, total, *shape, dtype=x.dtype)


def _randint(x: torch.Tensor, g: torch.Generator, rows, total, low: int, high: int) -> torch.Tensor:
    return _draw(torch.randint, x, g, rows, total, 1, 1, args=(low, high))


def _color(x: torch.Tensor, g: torch.Generator, rows=None, total=None) -> torch.Tensor:
    x = x + (_rand(x, g, rows, total, 1, 1, 1) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, g, rows, total, 1, 1, 1) * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, g, rows, total, 1, 1, 1) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, g: torch.Generator, rows=None, total=None, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = _randint(x, g, rows, total, -sh, sh + 1)
    ty = _randint(x, g, rows, total, -sw, sw + 1)
    gi, gj = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gi = torch.clamp(gi.unsqueeze(0) + tx + 1, 0, h + 1)
    gj = torch.clamp(gj.unsqueeze(0) + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # zero border, as in DiffAugment
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[bi, gi, gj].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, g: torch.Generator, rows=None, total=None, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = _randint(x, g, rows, total, 0, h + (1 - ch % 2))
    oy = _randint(x, g, rows, total, 0, w + (1 - cw % 2))
    gi, gj = torch.meshgrid(torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij")
    gi = torch.clamp(gi.unsqueeze(0) + ox - ch // 2, 0, h - 1)
    gj = torch.clamp(gj.unsqueeze(0) + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, device=x.device, dtype=x.dtype)
    mask[torch.arange(b, device=x.device).view(b, 1, 1), gi, gj] = 0
    return x * mask.unsqueeze(1)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}
