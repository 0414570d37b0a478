"""Generators, discriminators and heads, built by name (``build_generator("sngan", resolution=32, ...)``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from cgantool.nets.biggan import BigGANDiscriminator, BigGANGenerator
from cgantool.nets.heads import Contrastive2CHeads, InfoMaxHeads
from cgantool.nets.layers import DiscOutput
from cgantool.nets.sngan import SNGANDiscriminator, SNGANGenerator
from cgantool.nets.xmcgan import XMCDiscriminator, XMCGenerator
from cgantool.registry import Registry

GENERATORS: Registry[type[nn.Module]] = Registry("generator architecture")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator architecture")
GENERATORS.register("sngan")(SNGANGenerator)
GENERATORS.register("biggan")(BigGANGenerator)
DISCRIMINATORS.register("sngan")(SNGANDiscriminator)
DISCRIMINATORS.register("biggan")(BigGANDiscriminator)
GENERATORS.register("xmcgan")(XMCGenerator)
DISCRIMINATORS.register("xmcgan")(XMCDiscriminator)


def build_generator(arch: str, **kw: Any) -> nn.Module:
    """The generator registered as ``arch``, built with ``kw``; unknown ``arch`` → ConfigError with the names."""
    return GENERATORS.get(arch)(**kw)


def build_discriminator(arch: str, **kw: Any) -> nn.Module:
    """The discriminator registered as ``arch``, built with ``kw``; unknown ``arch`` → ConfigError with the names."""
    return DISCRIMINATORS.get(arch)(**kw)


def arch_names() -> list[str]:
    """The architectures ``model.arch`` may name (registration order): those with a generator and a discriminator."""
    return [name for name, _ in GENERATORS.items() if name in DISCRIMINATORS]


def supported_resolutions(arch: str) -> tuple[int, ...]:
    """Image sizes the backbone ``arch`` has a layout for."""
    return tuple(GENERATORS.get(arch).resolutions)


__all__ = [
    "DISCRIMINATORS", "GENERATORS", "BigGANDiscriminator", "BigGANGenerator", "Contrastive2CHeads", "DiscOutput",
    "InfoMaxHeads", "SNGANDiscriminator", "SNGANGenerator", "XMCDiscriminator", "XMCGenerator", "arch_names",
    "build_discriminator", "build_generator", "supported_resolutions",
]
