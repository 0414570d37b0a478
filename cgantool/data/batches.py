"""Real batches for training: epoch permutations derived from (seed, position), uint8 to the device.

The sampler's whole state is one integer (images drawn so far), so a resumed run draws exactly the batches
an uninterrupted run would have drawn. From a memory-mapped dataset the next batches are read by a background
thread while the step runs (same batches, same order: they are a function of the position alone).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from cgantool.data.sources import ImageDataset


PREFETCH_BATCHES = 2


class RealBatches:
    """Draws ``batch_size`` images (and labels) per call, walking shuffled epochs without replacement."""

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int, device: torch.device, position: int = 0,
                 prefetch: int | None = None):
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
        # Host memory maps are read ahead; a dataset in memory (or on the device) has nothing to wait for.
        host_mapped = dataset.mapped and self._images.device.type == "cpu"
        self.prefetch = (PREFETCH_BATCHES if host_mapped else 0) if prefetch is None else prefetch
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[int, object, Future]] = deque()  # (position, rows key, batch being read)

    def _perm_of(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
            self._epoch = epoch
        return self._perm

    def _indices_at(self, position: int, count: int) -> torch.Tensor:
        """The dataset indices of ``count`` draws from ``position`` on (called from the training thread only)."""
        n = len(self.dataset)
        out = []
        while count > 0:
            epoch, offset = divmod(position, n)
            take = min(count, n - offset)
            out.append(self._perm_of(epoch)[offset : offset + take])
            position += take
            count -= take
        return torch.cat(out)

    def _indices(self, count: int) -> torch.Tensor:
        idx = self._indices_at(self.position, count)
        self.position += count
        return idx

    def _read(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows ``idx`` of a host memory map, read in file order, returned in ``idx`` order (on the host)."""
        if self._images.device.type != "cpu" or self.device.type == "cpu":
            return self._images[idx.to(self._images.device)]
        sorted_idx, order = idx.sort()  # memory-mapped rows read in file order
        rows = torch.from_numpy(self._images.numpy()[sorted_idx.numpy()])
        return rows[order.argsort()]

    def _next_prefetched(self, rows: slice | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(host rows, all indices) of the batch at ``self.position``, read ahead by the background thread."""
        key = (rows.start, rows.stop, rows.step) if rows is not None else None
        if self._ahead and self._ahead[0][:2] != (self.position, key):  # position set from outside: start over
            self._ahead.clear()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cgantool-prefetch")
        while len(self._ahead) < 1 + self.prefetch:
            position = self._ahead[-1][0] + self.batch_size if self._ahead else self.position
            all_idx = self._indices_at(position, self.batch_size)
            idx = all_idx[rows] if rows is not None else all_idx
            self._ahead.append((position, key, self._pool.submit(lambda i=idx, a=all_idx: (self._read(i), a))))
        images, all_idx = self._ahead.popleft()[2].result()
        self.position += self.batch_size
        return images, all_idx

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, deque()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def next(self, rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Returns (uint8 images [B, 3, R, R] on the device, labels [B] or None, dataset indices [B]).

        ``rows`` (data-parallel ranks): only these rows of the batch are read; the indices stay global.
        """
        if self.prefetch > 0:
            host, all_idx = self._next_prefetched(rows)
            idx = all_idx[rows] if rows is not None else all_idx
        else:
            all_idx = self._indices(self.batch_size)
            idx = all_idx[rows] if rows is not None else all_idx
            host = self._read(idx)
        images = host if host.device == self.device else host.to(self.device, non_blocking=True)
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
