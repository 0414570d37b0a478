"""Generators, discriminators and heads, built by name."""

from __future__ import annotations

from torch import nn

from cgantool.nets.biggan import BigGANDiscriminator, BigGANGenerator
from cgantool.nets.heads import Contrastive2CHeads, InfoMaxHeads
from cgantool.nets.layers import DiscOutput
from cgantool.nets.sngan import SNGANDiscriminator, SNGANGenerator
from cgantool.registry import Registry

GENERATORS: Registry[type[nn.Module]] = Registry("generator architecture")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator architecture")
GENERATORS.register("sngan")(SNGANGenerator)
GENERATORS.register("biggan")(BigGANGenerator)
DISCRIMINATORS.register("sngan")(SNGANDiscriminator)
DISCRIMINATORS.register("biggan")(BigGANDiscriminator)


def build_generator(arch: str, **kw) -> nn.Module:
    return GENERATORS.get(arch)(**kw)


def build_discriminator(arch: str, **kw) -> nn.Module:
    return DISCRIMINATORS.get(arch)(**kw)


__all__ = [
    "BigGANDiscriminator", "BigGANGenerator", "Contrastive2CHeads", "DiscOutput", "InfoMaxHeads",
    "SNGANDiscriminator", "SNGANGenerator", "build_discriminator", "build_generator",
]
