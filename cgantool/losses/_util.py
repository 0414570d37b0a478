"""Shared helpers: losses are computed in float32 (float64 stays float64), even under autocast."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def fp32(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``fn`` with autocast off and low-precision float tensor arguments upcast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        def up(x):
            if torch.is_tensor(x) and x.is_floating_point() and x.dtype in (torch.float16, torch.bfloat16):
                return x.float()
            return x

        args = tuple(up(a) for a in args)
        kwargs = {k: up(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def flat_logits(x: torch.Tensor) -> torch.Tensor:
    """Logits [B] or [B, 1] → [B]."""
    return x.reshape(x.shape[0])
