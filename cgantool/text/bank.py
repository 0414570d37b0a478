"""The text features of a dataset, computed once: every distinct caption encoded one time, kept on the
training device (words in fp16), and cached on disk keyed by the captions and the encoder's fingerprint.
A training step only gathers rows (one random caption per image). Banks over 2 GB (COCO with BERT: ~10 GB)
stay in host memory and only the rows of a batch travel to the device."""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load_file, save_file

from cgantool.files import atomic_write
from cgantool.text.cond import TextCond
from cgantool.text.encoders import TextEncoder


class TextBank:
    def __init__(self, captions: list[list[str]], encoder: TextEncoder, device: torch.device, cache: bool = True):
        unique: dict[str, int] = {}
        ids, counts = [], []
        for caps in captions:
            for c in caps:
                ids.append(unique.setdefault(c, len(unique)))
            counts.append(len(caps))
        texts = list(unique)
        self.device = device
        self.ids = torch.tensor(ids, dtype=torch.int64, device=device)  # caption row of each (image, caption)
        self.counts = torch.tensor(counts, dtype=torch.int64, device=device)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), self.counts.cumsum(0)[:-1]])
        feats = self._load_or_encode(texts, encoder, cache)
        big = feats["words"].numel() * 2 > 2 * 1024**3
        self.store = torch.device("cpu") if big else device
        self.sentence = feats["sentence"].to(self.store, torch.float32)
        self.words = feats["words"].to(self.store, torch.float16)
        self.lengths = feats["lengths"].to(self.store)
        self.texts = texts

    @staticmethod
    def _load_or_encode(texts: list[str], encoder: TextEncoder, cache: bool) -> dict[str, torch.Tensor]:
        from cgantool.data import cache_dir

        key = hashlib.sha256(("\x1f".join(texts) + "|" + encoder.fingerprint()).encode()).hexdigest()[:16]
        path = cache_dir() / "text" / f"features-{key}.safetensors"
        if cache and path.exists():
            return load_file(str(path))
        cond = encoder.encode(texts)
        feats = {"sentence": cond.sentence.float().cpu().contiguous(), "words": cond.words.half().cpu().contiguous(),
                 "lengths": cond.mask.sum(1).cpu().contiguous()}
        if cache:
            atomic_write(path, lambda tmp: save_file(feats, str(tmp)))
        return feats

    def rows(self, rows: torch.Tensor) -> TextCond:
        rows = rows.to(self.store)
        lengths = self.lengths[rows].to(self.device)
        T = int(self.words.shape[1])
        mask = torch.arange(T, device=self.device)[None] < lengths[:, None]
        return TextCond(sentence=self.sentence[rows].to(self.device), words=self.words[rows].to(self.device).float(),
                        mask=mask)

    def sample(self, image_idx: torch.Tensor, generator: torch.Generator) -> TextCond:
        """One caption per image, drawn uniformly from its captions with ``generator`` (on the device)."""
        image_idx = image_idx.to(self.device)
        counts = self.counts[image_idx]
        pick = (torch.rand(len(image_idx), device=self.device, generator=generator) * counts).long().clamp(max=counts - 1)
        return self.rows(self.ids[self.offsets[image_idx] + pick])

    def caption_rows(self, image_idx: torch.Tensor, which: int = 0) -> torch.Tensor:
        image_idx = image_idx.to(self.device)
        return self.ids[self.offsets[image_idx] + torch.minimum(torch.full_like(image_idx, which), self.counts[image_idx] - 1)]
