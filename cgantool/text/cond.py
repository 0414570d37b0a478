"""``TextCond``: what a text-conditional G and D receive in place of class labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextCond:
    """Encoded captions for a batch: sentence [B, D], words [B, T, D], mask [B, T] (True = a real word).

    Behaves like a label tensor where the engine needs one: ``len``, slicing / indexing along the batch,
    ``.to(device)``.
    """

    sentence: torch.Tensor
    words: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.sentence.shape[0])

    def __getitem__(self, index) -> TextCond:
        return TextCond(self.sentence[index], self.words[index], self.mask[index])

    @property
    def device(self) -> torch.device:
        return self.sentence.device

    def to(self, device, dtype: torch.dtype | None = None) -> TextCond:
        dtype = dtype or torch.float32
        return TextCond(self.sentence.to(device, dtype), self.words.to(device, dtype), self.mask.to(device))

    def repeat(self, times: int) -> TextCond:
        """Every caption ``times`` times in a row-major cycle: [a, b, a, b, ...]."""
        return TextCond(self.sentence.repeat(times, 1), self.words.repeat(times, 1, 1), self.mask.repeat(times, 1))

    @staticmethod
    def cat(parts: list[TextCond]) -> TextCond:
        width = max(p.words.shape[1] for p in parts)
        words = [torch.nn.functional.pad(p.words, (0, 0, 0, width - p.words.shape[1])) for p in parts]
        masks = [torch.nn.functional.pad(p.mask, (0, width - p.mask.shape[1])) for p in parts]
        return TextCond(torch.cat([p.sentence for p in parts]), torch.cat(words), torch.cat(masks))

    @staticmethod
    def lerp(a: TextCond, b: TextCond, t: float) -> TextCond:
        """Sentence features mixed linearly; words are not mixable position by position (see the generator's
        ``mix`` argument, which mixes the word *contexts*)."""
        return TextCond((1 - t) * a.sentence + t * b.sentence, a.words, a.mask)
