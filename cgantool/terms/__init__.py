"""Loss terms: the adversarial loss and the contrastive terms a preset combines.

A preset picks one adversarial loss (``loss.adversarial``) and any contrastive terms, each switched on by a
positive ``loss.<name>.weight``. A term may own heads that sit on the discriminator (trained with D) and
returns *unweighted* losses (a tensor, or a dict of named parts); the engine weighs, sums, back-propagates and
logs them under ``term.key`` (parts as ``{key}_{part}``).

Adding a method = a loss function in ``cgantool.losses``, a config section in ``config.LossConfig``, a term
class registered here, and a preset TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from cgantool.registry import Registry


@dataclass
class BuildContext:
    """What a term may need to build its heads and check compatibility."""

    feature_dims: dict[str, int]  # the D backbone's feature sizes: {"h": C, "local": C_l}
    num_classes: int  # 0 = unconditional
    resolution: int
    data_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """One step's conditioning: real labels (or captions, ``TextCond``) and those the fakes were generated for
    (None = unconditional), plus the images (as D saw them, before augmentation)."""

    real_c: Any
    fake_c: Any
    real_img: torch.Tensor | None = None
    fake_img: torch.Tensor | None = None


class Term:
    """Base class of a contrastive term (see the module docstring)."""

    name: ClassVar[str]  # config section under loss.
    key: ClassVar[str]  # short name in logs
    needs_real_in_g: ClassVar[bool] = False
    carries_class: ClassVar[bool] = False  # True: D gets no projection term, this term conditions it

    def __init__(self, cfg: Any, ctx: BuildContext):
        self.cfg = cfg
        self.weight = float(cfg.weight)

    def build_heads(self) -> nn.Module | None:
        return None

    def d_loss(self, heads: nn.Module | None, real, fake, batch: Batch) -> torch.Tensor | None:
        return None

    def g_loss(self, heads: nn.Module | None, fake, real, batch: Batch) -> torch.Tensor | None:
        return None


TERMS: Registry[type[Term]] = Registry("loss term")


def enabled_terms(loss_cfg: Any, ctx: BuildContext) -> list[Term]:
    """Instantiate every registered term whose config section has weight > 0."""
    terms = []
    for name in TERMS.names():
        section = getattr(loss_cfg, name)
        if section.weight > 0:
            terms.append(TERMS.get(name)(section, ctx))
    return terms


# Every term module registers itself on import (after TERMS exists).
from cgantool.terms import cond_2c, infomax, xmc  # noqa: E402,F401
