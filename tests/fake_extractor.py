"""A small deterministic feature extractor for offline tests (``--feature-extractor tests.fake_extractor:build``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TinyExtractor:
    """uint8 [B, 3, H, W] → 64-d features: 8x8 average pooling, then a fixed random projection (seed 0)."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(3 * 8 * 8, 64, generator=g, dtype=torch.float64) / 8
        self.head = torch.randn(64, 10, generator=g, dtype=torch.float64)

    def __call__(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images_u8.double() / 255, 8).flatten(1)  # [B, 192]
        return x @ self.proj

    def probs(self, images_u8: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(images_u8) @ self.head, dim=1)


def build() -> TinyExtractor:
    return TinyExtractor()
