"""Evaluate a generator (or a folder of images) against a dataset: FID, KID, IS, PR/DC, per-class FID.

Images go generator → uint8 (exactly what a PNG would hold) → feature extractor, in memory. Real features of a
dataset are computed once and cached under cgantool's cache dir, keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgantool import __version__
from cgantool.errors import CgantoolError, DataError, warn
from cgantool.eval import metrics as M

METRICS = ("fid", "kid", "is", "prdc")


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = ("fid", "kid")
    num_samples: int = 10000
    batch_size: int = 100
    seed: int = 0
    mode: str = "clean"  # clean | legacy_tensorflow | legacy_pytorch (clean-fid's resize conventions)
    feature_extractor: str = ""  # "" = Inception; else "module:function"
    inception_weights: str | None = None
    unverified_inception: bool = False  # load Inception weights whose sha256 is not clean-fid's (explicit consent)
    per_class: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Extractor:
    """uint8 [B, 3, H, W] → features [B, F]; ``probs`` (for IS) when the extractor has class outputs.

    Every output is checked (a tensor [B, F] of finite floats, F the same on every call) so that a broken
    extractor stops with one error naming it and what it returned, never a NaN score or a traceback.
    """

    def __init__(self, opts: EvalOptions):
        self.opts = opts
        self.dim: int | None = None
        self.user = bool(opts.feature_extractor)
        if opts.feature_extractor:
            from cgantool.eval.inception import load_feature_extractor

            self.fn = load_feature_extractor(opts.feature_extractor)
            self.name = opts.feature_extractor
        else:
            from cgantool.eval.inception import InceptionFeatures, resolve_inception_weights, unverified_allowed

            path = resolve_inception_weights(opts.inception_weights)
            self.fn = InceptionFeatures(path, mode=opts.mode, device=opts.device,
                                        unverified=unverified_allowed(opts.unverified_inception))
            self.name = self.fn.name  # names the weights' sha256 when they are not clean-fid's

    def _call(self, fn: Callable[[torch.Tensor], Any], images_u8: torch.Tensor, what: str) -> Any:
        """``fn(images)``; a user extractor's exception becomes a CgantoolError naming it."""
        if not self.user:
            return fn(images_u8.to(self.opts.device))
        try:
            return fn(images_u8.to(self.opts.device))
        except Exception as e:  # noqa: BLE001 - the user's code: any failure is reported in one line
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise CgantoolError(f"feature extractor '{self.name}' failed computing {what} for {len(images_u8)} "
                                f"images ({type(e).__name__}{': ' + first if first else ''})", hint=_FX_HINT) from None

    def _checked(self, out: Any, n: int, what: str) -> torch.Tensor:
        """``out`` as a float tensor [n, F], or a CgantoolError saying what the extractor returned instead."""
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        if not torch.is_tensor(out):
            raise CgantoolError(f"feature extractor '{self.name}' returned {type(out).__name__} as {what}, "
                                f"not a tensor [{n}, D]", hint=_FX_HINT)
        shape = tuple(out.shape)
        if out.ndim != 2 or shape[0] != n or shape[1] < 1:
            raise CgantoolError(f"feature extractor '{self.name}' returned {what} of shape {list(shape)} for {n} "
                                f"images; expected [{n}, D]", hint=_FX_HINT)
        if not out.is_floating_point():
            raise CgantoolError(f"feature extractor '{self.name}' returned {what} of dtype {out.dtype}; expected "
                                "floating point", hint=_FX_HINT)
        bad = int((~torch.isfinite(out)).sum())
        if bad:
            raise CgantoolError(f"feature extractor '{self.name}' returned {bad} NaN/inf values among {what} "
                                f"{list(shape)} for {n} images", hint=_FX_HINT)
        return out

    def _checked_features(self, out: Any, n: int) -> torch.Tensor:
        feats = self._checked(out, n, "features").float().cpu()
        if self.dim is None:
            self.dim = feats.shape[1]
        elif feats.shape[1] != self.dim:
            raise CgantoolError(f"feature extractor '{self.name}' returned {feats.shape[1]} features per image "
                                f"after {self.dim} on an earlier batch", hint=_FX_HINT)
        return feats

    @torch.no_grad()
    def features(self, images_u8: torch.Tensor) -> torch.Tensor:
        return self._checked_features(self._call(self.fn, images_u8, "features"), len(images_u8))

    @torch.no_grad()
    def probs(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C] for the Inception Score: the extractor's ``probs`` (or softmax of ``logits``)."""
        n = len(images_u8)
        if hasattr(self.fn, "probs"):
            return self._checked(self._call(self.fn.probs, images_u8, "probs"), n, "probs").double().cpu()
        if hasattr(self.fn, "logits"):
            logits = self._checked(self._call(self.fn.logits, images_u8, "logits"), n, "logits")
            return torch.softmax(logits.double(), dim=1).cpu()
        raise CgantoolError(f"the Inception Score needs class probabilities, which '{self.name}' does not provide",
                            hint="drop --is, or use the Inception extractor (no --feature-extractor)")

    @torch.no_grad()
    def features_and_probs(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both at once: one Inception pass when the network gives features and logits together."""
        if hasattr(self.fn, "features_and_logits"):
            feats, logits = self._call(self.fn.features_and_logits, images_u8, "features and logits")
            n = len(images_u8)
            return (self._checked_features(feats, n),
                    torch.softmax(self._checked(logits, n, "logits").double(), dim=1).cpu())
        return self.features(images_u8), self.probs(images_u8)


_FX_HINT = ("a --feature-extractor module:function must return a callable mapping uint8 images [N, 3, H, W] to "
            "finite float features [N, D] (and, for --is, probs/logits [N, C])")


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int) -> np.ndarray:
    return torch.cat([fn(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]).numpy()


def _cache_path(kind: str, key: dict[str, Any]) -> Path:
    from cgantool.data import cache_dir

    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "stats" / f"{kind}-{digest}.npz"


def real_features(dataset, extractor: Extractor, opts: EvalOptions, labels_too: bool = False) -> dict[str, np.ndarray]:
    """Features of the first ``num_samples`` images of the dataset (all if fewer), cached on disk."""
    n = min(opts.num_samples, len(dataset))
    key = {"source": dataset.source, "resolution": dataset.resolution, "num_images": len(dataset), "n": n,
           "extractor": extractor.name, "probs": "is" in opts.metrics, "v": 1}
    path = _cache_path("real", key)
    if path.exists():
        try:
            with np.load(path) as f:
                cached = dict(f)
            if cached["features"].ndim == 2 and np.isfinite(cached["features"]).all():
                return cached
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass
        warn(f"recomputing the reference features: the cached copy {path} is damaged")
    images = dataset.images[:n]
    out = {"features": _batched(extractor.features, torch.as_tensor(np.asarray(images)), opts.batch_size)}
    if dataset.labels is not None:
        out["labels"] = dataset.labels[:n].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def compute_metrics(real: np.ndarray, fake: np.ndarray, wanted: tuple[str, ...], fake_probs: np.ndarray | None,
                    seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    if real.shape[1] != fake.shape[1]:  # e.g. reference features cached from an earlier version of a user extractor
        raise CgantoolError(f"the reference features have {real.shape[1]} dimensions and the generated ones "
                            f"{fake.shape[1]}", hint="clear the stats in cgantool's cache dir, or fix the extractor")
    if "fid" in wanted:
        out["fid"] = float(M.frechet_distance(*M.feature_stats(real), *M.feature_stats(fake)))
    if "kid" in wanted:
        mean, std = M.kernel_inception_distance(real, fake, seed=seed)
        out["kid"], out["kid_std"] = float(mean), float(std)
    if "is" in wanted and fake_probs is not None:
        mean, std = M.inception_score(fake_probs, splits=min(10, len(fake_probs)))
        out["is"], out["is_std"] = float(mean), float(std)
    if "prdc" in wanted:
        out.update({k: float(v) for k, v in M.prdc(real, fake).items()})
    return out


def caption_of(dataset, i: int) -> str:
    """The caption fake i of a text-to-image evaluation is generated from: image i mod N, its captions in turn."""
    caps = dataset.captions[i % len(dataset)]
    return caps[(i // len(dataset) + i) % len(caps)]


def evaluate_generator(G, num_classes: int, dataset, opts: EvalOptions, extractor: Extractor | None = None,
                       text_encoder=None) -> dict[str, Any]:
    """Metrics of generator G against ``dataset``; class-balanced fake labels for conditional G; for a
    text-to-image G (``text_encoder`` given) fake i is generated from :func:`caption_of` (dataset, i)."""
    from cgantool.sampling import default_labels, generate, latents

    start = time.perf_counter()
    extractor = extractor or Extractor(opts)
    real = real_features(dataset, extractor, opts)
    n = opts.num_samples
    labels = default_labels(n, num_classes)
    feats, probs, kept = [], [], []
    use_probe = _shapes_classes(dataset, num_classes)
    if text_encoder is not None:
        if dataset.captions is None:
            raise DataError(f"a text-to-image model is evaluated on captioned data; '{dataset.source}' has none",
                            hint="evaluate on the training data (drop --data) or a captions .jsonl / coco: source")
        use_probe = _shapes_captions(dataset)
        if use_probe:  # single-object shapes: every caption names the image's (colour, shape) = its class
            labels = dataset.labels[torch.arange(n) % len(dataset)]
    for i in range(0, n, opts.batch_size):  # generate and extract in chunks: bounded memory for any N
        idx = range(i, min(i + opts.batch_size, n))
        if text_encoder is not None:
            cond = text_encoder.encode([caption_of(dataset, j) for j in idx]).to("cpu")
        else:
            cond = labels[i : idx.stop] if labels is not None else None
        images = generate(G, latents(opts.seed, idx, G.z_dim), cond, batch_size=opts.batch_size, device=opts.device)
        if "is" in opts.metrics:
            f, pr = extractor.features_and_probs(images)
            feats.append(f.numpy())
            probs.append(pr.numpy())
        else:
            feats.append(extractor.features(images).numpy())
        if use_probe:
            kept.append(images)
    fake = np.concatenate(feats)
    result = compute_metrics(real["features"], fake, opts.metrics, np.concatenate(probs) if probs else None, opts.seed)
    if use_probe:
        from cgantool.eval.probe import attribute_accuracy, load_probe, real_ceiling

        probe = load_probe(dataset.resolution)
        result.update(attribute_accuracy(torch.cat(kept), labels, probe))
        result["attribute_accuracy_real"] = real_ceiling(probe, dataset.resolution)
    if opts.per_class and num_classes:
        if "labels" not in real:
            raise DataError("per-class FID needs a labelled dataset", hint="evaluate against the labelled training data")
        per = {}
        names = dataset.class_names
        for c in range(num_classes):
            r = real["features"][real["labels"] == c]
            f = fake[labels.numpy() == c]
            if len(r) >= 2 and len(f) >= 2:
                per[names[c] if c < len(names) else str(c)] = float(M.frechet_distance(*M.feature_stats(r), *M.feature_stats(f)))
        result["fid_per_class"] = per
        result["fid_intra_class_mean"] = float(np.mean(list(per.values()))) if per else float("nan")
    return {"metrics": result, "num_real": int(len(real["features"])), "num_fake": int(n), "extractor": extractor.name,
            "mode": opts.mode, "seed": opts.seed, "seconds": round(time.perf_counter() - start, 2),
            "cgantool_version": __version__}


def _shapes_classes(dataset, num_classes: int) -> bool:
    """The attribute probe applies to class-conditional models of the built-in shapes data."""
    from cgantool.data.shapes import class_names

    return dataset.source == "shapes" and num_classes > 0 and dataset.class_names == class_names()


def _shapes_captions(dataset) -> bool:
    """The attribute probe reads text-to-image fakes of single-object shapes (captions name one object)."""
    from cgantool.data.shapes import class_names

    return (dataset.source == "shapes" and dataset.class_names == class_names() and dataset.labels is not None
            and all(len(caps) and caps[0].count(" and ") == 0 for caps in dataset.captions[:100]))


def load_folder_images(folder: Path, resolution: int | None = None) -> torch.Tensor:
    """All images of a folder as uint8 [N, 3, R, R] (R = the first image's size unless given)."""
    from PIL import Image

    from cgantool.data.sources import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}", hint="pass an existing folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"no images found in {folder}", hint="put PNG/JPEG files there")
    out = []
    for f in files:
        with Image.open(f) as img:
            img = img.convert("RGB")
            if resolution is None:
                resolution = img.size[0]
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
            out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(out)


def evaluate_folders(real_dir: Path, fake_dir: Path, opts: EvalOptions) -> dict[str, Any]:
    start = time.perf_counter()
    extractor = Extractor(opts)
    real_imgs = load_folder_images(real_dir)
    fake_imgs = load_folder_images(fake_dir, resolution=real_imgs.shape[-1])
    real = _batched(extractor.features, real_imgs, opts.batch_size)
    fake = _batched(extractor.features, fake_imgs, opts.batch_size)
    probs = _batched(extractor.probs, fake_imgs, opts.batch_size) if "is" in opts.metrics else None
    result = compute_metrics(real, fake, opts.metrics, probs, opts.seed)
    return {"metrics": result, "num_real": len(real), "num_fake": len(fake), "extractor": extractor.name,
            "mode": opts.mode, "seed": opts.seed, "seconds": round(time.perf_counter() - start, 2),
            "cgantool_version": __version__}


class TrainEvaluator:
    """Metrics during training (``eval.every``): built once, so a missing extractor fails before step 1."""

    def __init__(self, cfg, dataset, device: torch.device):
        unknown = [m for m in cfg.eval.metrics if m not in METRICS]
        if unknown:
            from cgantool.errors import ConfigError

            raise ConfigError(f"unknown metric '{unknown[0]}' in eval.metrics", hint=f"valid: {', '.join(METRICS)}")
        self.opts = EvalOptions(metrics=tuple(cfg.eval.metrics), num_samples=cfg.eval.num_samples,
                                feature_extractor=cfg.eval.feature_extractor, seed=cfg.train.seed, device=device)
        self.dataset = dataset
        self.extractor = Extractor(self.opts)

    text_encoder = None  # set by train() for text-to-image runs

    def __call__(self, G, num_classes: int) -> dict[str, float]:
        result = evaluate_generator(G, num_classes, self.dataset, self.opts, self.extractor, self.text_encoder)
        return {k: v for k, v in result["metrics"].items() if isinstance(v, float)}
