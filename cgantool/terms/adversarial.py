"""Adversarial losses by name: ``loss.adversarial = "hinge" | "nonsaturating" | "dual_contrastive"``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cgantool import losses
from cgantool.registry import Registry


@dataclass(frozen=True)
class Adversarial:
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real_logits, fake_logits) → D loss
    g: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]  # (real_logits, fake_logits) → G loss
    needs_real_in_g: bool = False  # the G loss also compares with D(real)


ADVERSARIAL: Registry[Adversarial] = Registry("adversarial loss")
ADVERSARIAL.register("hinge")(Adversarial(losses.hinge_loss_d, lambda real, fake: losses.hinge_loss_g(fake)))
ADVERSARIAL.register("nonsaturating")(
    Adversarial(losses.nonsaturating_loss_d, lambda real, fake: losses.nonsaturating_loss_g(fake))
)
# DualContrast replaces the adversarial loss: D and G both compare every real with every fake.
ADVERSARIAL.register("dual_contrastive")(
    Adversarial(losses.dual_contrastive_loss_d, losses.dual_contrastive_loss_g, needs_real_in_g=True)
)
