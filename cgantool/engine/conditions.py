"""What a run conditions on — class labels, captions or nothing — behind one object, so the trainer, the sample
grid and the checkpoint never ask which it is.

Every draw is made for the global batch (all ranks draw the same, engine/dist.py); ``real`` gets this rank's rows.
"""

from __future__ import annotations

from typing import Any

import torch


class Conditions:
    """No condition: an unconditional model."""

    kind = "none"
    fakes_from_reals = False  # the fakes of a step take the real batch's conditions (XMC-GAN: its captions)
    flips_need_check = False  # a horizontal flip could contradict the condition (captions naming left/right)

    def real(self, labels: torch.Tensor | None, idx: torch.Tensor, reals: Any, noise: torch.Generator, dist: bool):
        """The condition of the real images ``idx`` of the global batch (their labels, one caption each, or None)."""
        return None

    def fake(self, n: int, real_c: Any, noise: torch.Generator, device: torch.device):
        """The conditions of the global batch's ``n`` fakes."""
        return real_c if self.fakes_from_reals else None

    def grid(self, num_images: int) -> tuple[int, Any, list[str]]:
        """(columns, the 8 x columns grid's conditions, captions of the columns) of the fixed sample grid."""
        return 8, None, []


class ClassConditions(Conditions):
    """Class labels: reals keep theirs, fakes draw uniformly; the grid shows one class per column (up to 20)."""

    kind = "class"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def real(self, labels, idx, reals, noise, dist):
        return reals.labels_of(idx) if dist else labels  # (with ranks, the global batch's labels)

    def fake(self, n, real_c, noise, device):
        return torch.randint(self.num_classes, (n,), device=device, generator=noise)

    def grid(self, num_images):
        from cgantool.sampling import default_labels

        columns = min(self.num_classes, 20)
        return columns, default_labels(8 * columns, columns), []


class TextConditions(Conditions):
    """Captions (a ``TextBank`` of the dataset's caption features): each real image draws one of its captions, the
    fakes are made from the same captions; the grid shows the first caption of one image per column."""

    kind = "text"
    fakes_from_reals = True
    flips_need_check = True

    def __init__(self, bank):
        self.bank = bank

    def real(self, labels, idx, reals, noise, dist):
        return self.bank.sample(idx, noise)

    def grid(self, num_images):
        rows = self.bank.caption_rows(torch.arange(min(8, num_images)))
        return len(rows), self.bank.rows(rows.repeat(8)), [self.bank.texts[r] for r in rows.tolist()]


def conditions_for(num_classes: int, text_bank=None) -> Conditions:
    """The conditions of a model with ``num_classes`` classes (0: none) or, with ``text_bank``, captions."""
    if text_bank is not None:
        return TextConditions(text_bank)
    return ClassConditions(num_classes) if num_classes else Conditions()
