"""Shared helpers: losses are computed in float32 (float64 stays float64), even under autocast."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(x):
    """float16/bfloat16 tensors → float32; anything else (float32, float64, int labels, floats) unchanged."""
    if torch.is_tensor(x) and x.dtype in _LOW_PRECISION:
        return x.float()
    return x


def fp32(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``fn`` with autocast off and low-precision float tensor arguments upcast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_upcast(a) for a in args)
        kwargs = {k: _upcast(v) for k, v in kwargs.items()}
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        device = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def flat_logits(x: torch.Tensor) -> torch.Tensor:
    """Logits [B] or [B, 1] → [B]."""
    return x.reshape(x.shape[0])
