"""Real batches for training: epoch permutations derived from (seed, position), uint8 to the device.

The sampler's whole state is one integer (images drawn so far), so a resumed run draws exactly the batches
an uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch

from cgantool.data.sources import ImageDataset


class RealBatches:
    """Draws ``batch_size`` images (and labels) per call, walking shuffled epochs without replacement."""

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int, device: torch.device, position: int = 0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.position = position  # images drawn so far
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.int64)
        n_bytes = dataset.images.numel()
        # Small datasets live on the device as uint8; big ones stay memory-mapped on the host.
        on_device = device.type == "cpu" or n_bytes <= 2 * 1024**3
        self._images = dataset.images.to(device) if on_device and device.type != "cpu" else dataset.images
        self._labels = dataset.labels.to(device) if dataset.labels is not None else None

    def _indices(self, count: int) -> torch.Tensor:
        n = len(self.dataset)
        out = []
        while count > 0:
            epoch, offset = divmod(self.position, n)
            if epoch != self._epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(n, generator=g)
                self._epoch = epoch
            take = min(count, n - offset)
            out.append(self._perm[offset : offset + take])
            self.position += take
            count -= take
        return torch.cat(out)

    def next(self, rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Returns (uint8 images [B, 3, R, R] on the device, labels [B] or None, dataset indices [B]).

        ``rows`` (data-parallel ranks): only these rows of the batch are read; the indices stay global.
        """
        all_idx = self._indices(self.batch_size)
        idx = all_idx[rows] if rows is not None else all_idx
        if self._images.device == self.device:
            images = self._images[idx.to(self.device)]
        else:
            sorted_idx, order = idx.sort()  # memory-mapped rows read in file order
            rows = torch.from_numpy(self._images.numpy()[sorted_idx.numpy()])
            images = rows[order.argsort()].to(self.device, non_blocking=True)
        labels = self._labels[idx.to(self._labels.device)] if self._labels is not None else None
        return images, labels, all_idx

    def labels_of(self, idx: torch.Tensor) -> torch.Tensor | None:
        return self._labels[idx.to(self._labels.device)] if self._labels is not None else None


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images_u8.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], rounded exactly as saving a PNG would."""
    return images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
