"""The reference (real) set of an evaluation: which images of the dataset FID & co. compare against, and their
cached features.

The reference is a seeded random subset of the whole split, never its first N images (folder datasets are stored
class by class: the first N of a 1000-class folder span a handful of classes). Labelled data is subsampled class
by class: each class gets ``N * n_c / total`` images, rounded by largest remainder so the counts add up to N
exactly (ties go to the lower class index), each class's share drawn at random with ``reference_seed``. With N at
least the number of classes every class gets at least one image (taken from the class most over its quota). With
``num_real="all"`` (or N at least the split's size) the reference is the whole split.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgantool.errors import warn
from cgantool.files import atomic_write

SELECTION_VERSION = 2  # the cache key's "v": 1 was the first-N reference, never reused


def reference_size(num_real: int | str | None, num_samples: int, total: int) -> int:
    """How many real images: ``num_real`` ("all", a count, or None = as many as the fakes; 0 fakes = "all")."""
    if num_real == "all" or (num_real is None and num_samples <= 0):
        return total
    return min(int(num_real if num_real is not None else num_samples), total)


def select_reference(labels: np.ndarray | None, total: int, n: int, seed: int) -> tuple[np.ndarray, str]:
    """Sorted indices of the reference subset of a split of ``total`` images, and its selection rule:
    ``"all"``, ``"stratified"`` (labelled: each class in proportion, largest remainder) or ``"random"``."""
    if n >= total:
        return np.arange(total), "all"
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(total, size=n, replace=False)), "random"
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / total
    take = np.floor(quota).astype(np.int64)
    remainder = quota - take
    order = sorted(range(len(classes)), key=lambda k: (-remainder[k], k))  # largest remainder first
    for k in order[: n - int(take.sum())]:
        take[k] += 1
    if n >= len(classes):  # every class present in the split is in the reference (a tiny class's quota may be < 1)
        for k in np.flatnonzero(take == 0):
            donor = int(np.argmax(np.where(take > 1, take - quota, -np.inf)))  # the class most over its quota
            take[donor] -= 1
            take[k] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False)
              for c, t in zip(classes, take) if t > 0]
    return np.sort(np.concatenate(chosen)), "stratified"


def describe(indices: np.ndarray, rule: str, labels: np.ndarray | None, seed: int) -> dict[str, Any]:
    """The reference set as ``eval --json`` records it."""
    return {"num_real": int(len(indices)), "reference_seed": int(seed), "reference_selection": rule,
            "reference_classes": int(len(np.unique(np.asarray(labels)[indices]))) if labels is not None else None}


def _cache_path(kind: str, key: dict[str, Any]) -> Path:
    from cgantool.data import cache_dir

    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "stats" / f"{kind}-{digest}.npz"


def _batched(fn, images: torch.Tensor, batch_size: int, progress=None) -> np.ndarray:
    out = []
    for i in range(0, images.shape[0], batch_size):
        out.append(fn(images[i : i + batch_size]))
        if progress is not None:
            progress.advance(len(out[-1]))
    return torch.cat(out).numpy()


def real_features(dataset, extractor, opts, labels_too: bool = False) -> dict[str, np.ndarray]:
    """Features (and labels) of the reference subset of ``dataset`` (:func:`select_reference` with
    ``opts.num_real`` and ``opts.reference_seed``), cached on disk; ``"index"`` holds the chosen images' indices
    and ``"reference"`` (not cached) what :func:`describe` says of them."""
    labels = dataset.labels.numpy() if dataset.labels is not None else None
    n = reference_size(opts.num_real, opts.num_samples, len(dataset))
    index, rule = select_reference(labels, len(dataset), n, opts.reference_seed)
    key = {"source": dataset.source, "resolution": dataset.resolution, "num_images": len(dataset), "n": n,
           "selection": rule, "reference_seed": opts.reference_seed if rule != "all" else None,
           "extractor": extractor.name, "probs": "is" in opts.metrics, "v": SELECTION_VERSION}
    path = _cache_path("real", key)
    out = None
    if path.exists():
        try:
            with np.load(path) as f:
                cached = dict(f)
            if (cached["features"].ndim == 2 and np.isfinite(cached["features"]).all()
                    and np.array_equal(cached["index"], index)):
                out = cached
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass
        if out is None:
            warn(f"recomputing the reference features: the cached copy {path} is damaged")
    if out is None:
        stored = dataset.images
        picked = stored[torch.as_tensor(index)] if torch.is_tensor(stored) else stored[index]
        images = torch.as_tensor(np.asarray(picked))
        from cgantool.eval.progress import EvalProgress

        with EvalProgress(f"features of {len(images):,} reference images (cached for later evals)", len(images)) as p:
            out = {"features": _batched(extractor.features, images, opts.batch_size, p), "index": index}
        if labels is not None:
            out["labels"] = labels[index]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # (a file object: np.savez would add .npz to a path)
                np.savez(f, **out)

        atomic_write(path, write)
    return {**out, "reference": describe(index, rule, labels, opts.reference_seed)}
