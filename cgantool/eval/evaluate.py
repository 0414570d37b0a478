"""Evaluate a checkpoint, a generator or a folder of images against a dataset with the registered metrics
(:mod:`cgantool.eval.registry`: FID, KID, IS, PR/DC, per-class FID, the shapes attribute probe, plugins).

Images go generator → uint8 (exactly what a PNG would hold) → feature extractor, in memory. Real features of a
dataset are computed once and cached under cgantool's cache dir, keyed by everything that changes them.
:func:`evaluate_checkpoint` is what ``cgantool eval`` calls, and what a notebook imports.
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
from cgantool.files import atomic_write
from cgantool.eval.registry import Metric, MetricInputs, check_metrics, planned, run_metrics


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = ("fid", "kid")  # names in cgantool.eval.registry.METRICS
    num_samples: int = 10000
    batch_size: int = 100
    seed: int = 0
    mode: str = "clean"  # clean | legacy_tensorflow | legacy_pytorch (clean-fid's resize conventions)
    feature_extractor: str = ""  # "" = Inception; else "module:function"
    inception_weights: str | None = None
    unverified_inception: bool = False  # load Inception weights whose sha256 is not clean-fid's (explicit consent)
    per_class: bool = False  # adds "fid_per_class" to the metrics
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def selected(self, where: str = "metrics") -> tuple[str, ...]:
        """The metric names asked for, each registered (a ConfigError naming ``where`` otherwise)."""
        return check_metrics((*self.metrics, *(("fid_per_class",) if self.per_class else ())), where)


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
            from cgantool.eval.inception import InceptionFeatures
            from cgantool.eval.weights import resolve_inception_weights, unverified_allowed

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
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # (a file object: np.savez would add .npz to a path)
            np.savez(f, **out)

    atomic_write(path, write)
    return out


def compute_metrics(real: np.ndarray, fake: np.ndarray, wanted: tuple[str, ...], fake_probs: np.ndarray | None,
                    seed: int) -> dict[str, float]:
    """The ``wanted`` metrics that need only features (and ``fake_probs``), e.g. FID, KID, IS, PR/DC."""
    inputs = MetricInputs(seed=seed, real=real, fake=fake, fake_probs=fake_probs)
    return _run(planned(wanted, inputs), inputs)


def _run(todo: list[Metric], inputs: MetricInputs) -> dict[str, Any]:
    real, fake = inputs.real, inputs.fake
    if real.shape[1] != fake.shape[1]:  # e.g. reference features cached from an earlier version of a user extractor
        raise CgantoolError(f"the reference features have {real.shape[1]} dimensions and the generated ones "
                            f"{fake.shape[1]}", hint="clear the stats in cgantool's cache dir, or fix the extractor")
    return run_metrics(todo, inputs)


def _needs(todo: list[Metric]) -> set[str]:
    return set().union(*(m.needs for m in todo))


def _result(metrics: dict[str, Any], num_real: int, num_fake: int, extractor: Extractor, opts: EvalOptions,
            start: float, **extra: Any) -> dict[str, Any]:
    """The result of every evaluation, as ``eval --json`` writes it."""
    return {"metrics": metrics, "num_real": int(num_real), "num_fake": int(num_fake), "extractor": extractor.name,
            "mode": opts.mode, "seed": opts.seed, "seconds": round(time.perf_counter() - start, 2),
            "cgantool_version": __version__, **extra}


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
    text = text_encoder is not None
    if text and dataset.captions is None:
        raise DataError(f"a text-to-image model is evaluated on captioned data; '{dataset.source}' has none",
                        hint="evaluate on the training data (drop --data) or a captions .jsonl / coco: source")
    inputs = MetricInputs(seed=opts.seed, dataset=dataset, num_classes=num_classes, text=text,
                          class_names=dataset.class_names or ())
    todo = planned(opts.selected(), inputs)
    needs = _needs(todo)
    extractor = extractor or Extractor(opts)
    real = real_features(dataset, extractor, opts)
    n = opts.num_samples
    labels = default_labels(n, num_classes)
    if text:  # fake i shows caption i mod N: the class (if any) of image i mod N
        labels = dataset.labels[torch.arange(n) % len(dataset)] if dataset.labels is not None else None
    feats, probs, kept = [], [], []
    for i in range(0, n, opts.batch_size):  # generate and extract in chunks: bounded memory for any N
        idx = range(i, min(i + opts.batch_size, n))
        if text:
            cond = text_encoder.encode([caption_of(dataset, j) for j in idx]).to("cpu")
        else:
            cond = labels[i : idx.stop] if labels is not None else None
        images = generate(G, latents(opts.seed, idx, G.z_dim), cond, batch_size=opts.batch_size, device=opts.device)
        if "probs" in needs:
            f, pr = extractor.features_and_probs(images)
            feats.append(f.numpy())
            probs.append(pr.numpy())
        else:
            feats.append(extractor.features(images).numpy())
        if "images" in needs:
            kept.append(images)
    inputs.real, inputs.real_labels = real["features"], real.get("labels")
    inputs.fake, inputs.fake_labels = np.concatenate(feats), labels
    inputs.fake_probs = np.concatenate(probs) if probs else None
    inputs.fake_images = torch.cat(kept) if kept else None
    return _result(_run(todo, inputs), len(real["features"]), n, extractor, opts, start)


def evaluate_checkpoint(checkpoint: str | os.PathLike, *, metrics: tuple[str, ...] | list[str] = ("fid", "kid"),
                        num_samples: int = 10000, batch_size: int = 100, seed: int = 0, mode: str = "clean",
                        feature_extractor: str = "", inception_weights: str | None = None,
                        unverified_inception: bool = False, per_class: bool = False,
                        device: str | torch.device = "auto", data: str | None = None, ema: bool = True,
                        allow_download: bool = False) -> dict[str, Any]:
    """Score a cgantool checkpoint: what ``cgantool eval CHECKPOINT`` computes and prints as ``--json``.

    ``metrics``: registered names (:func:`cgantool.eval.registry.metric_names`); ``data``: a reference data source
    other than the checkpoint's (``"cifar10"``, ``"shapes:32"``...); ``ema``: the EMA generator when the file has
    one; ``allow_download``: let a checkpoint's ``hf:`` text encoder come from the hub. The other arguments are
    :class:`EvalOptions`. Errors are :class:`~cgantool.errors.CgantoolError` (one line and a hint).
    """
    from cgantool.checkpoint import load_checkpoint
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset, parse_source
    from cgantool.device import resolve_device
    from cgantool.engine.model import load_generator

    opts = EvalOptions(metrics=tuple(metrics), num_samples=num_samples, batch_size=batch_size, seed=seed, mode=mode,
                       feature_extractor=feature_extractor, inception_weights=inception_weights,
                       unverified_inception=unverified_inception, per_class=per_class,
                       device=device if isinstance(device, torch.device) else resolve_device(device))
    opts.selected()  # an unknown metric fails before the checkpoint is read
    ckpt = load_checkpoint(checkpoint)
    data_cfg = ckpt.config.data
    if data is not None:
        source, res = parse_source(data)
        data_cfg = DataConfig(**{**data_cfg.model_dump(), "source": source,
                                 "resolution": res or ckpt.data_info["resolution"]})
    dataset = load_dataset(data_cfg)
    G = load_generator(ckpt, ema=ema, device=opts.device)
    text_encoder = None
    if ckpt.config.model.conditioning == "text":
        from cgantool.text.encoders import load_text_encoder

        text_encoder = load_text_encoder(ckpt, opts.device, allow_download=allow_download)
    result = evaluate_generator(G, G.num_classes, dataset, opts, text_encoder=text_encoder)
    result.update(checkpoint=str(checkpoint), step=ckpt.step, preset=ckpt.preset, dataset=dataset.source,
                  ema=ema and ckpt.has("G_ema"))
    return result


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
    """Metrics of the images in ``fake_dir`` against those in ``real_dir`` (``cgantool eval --real --fake``)."""
    start = time.perf_counter()
    inputs = MetricInputs(seed=opts.seed)
    todo = planned(opts.selected(), inputs)
    extractor = Extractor(opts)
    real_imgs = load_folder_images(real_dir)
    fake_imgs = load_folder_images(fake_dir, resolution=real_imgs.shape[-1])
    inputs.real = _batched(extractor.features, real_imgs, opts.batch_size)
    inputs.fake = _batched(extractor.features, fake_imgs, opts.batch_size)
    if "probs" in _needs(todo):
        inputs.fake_probs = _batched(extractor.probs, fake_imgs, opts.batch_size)
    if "images" in _needs(todo):
        inputs.fake_images = fake_imgs
    return _result(_run(todo, inputs), len(inputs.real), len(inputs.fake), extractor, opts, start,
                   real=str(real_dir), fake=str(fake_dir))


class TrainEvaluator:
    """Metrics during training (``eval.every``): built once, so a missing extractor fails before step 1."""

    def __init__(self, cfg, dataset, device: torch.device):
        self.opts = EvalOptions(metrics=tuple(cfg.eval.metrics), num_samples=cfg.eval.num_samples,
                                feature_extractor=cfg.eval.feature_extractor, seed=cfg.train.seed, device=device)
        self.opts.selected("eval.metrics")  # the config checked them; a plugin metric may have been removed since
        self.dataset = dataset
        self.extractor = Extractor(self.opts)

    text_encoder = None  # set by train() for text-to-image runs

    def __call__(self, G, num_classes: int) -> dict[str, float]:
        result = evaluate_generator(G, num_classes, self.dataset, self.opts, self.extractor, self.text_encoder)
        return {k: v for k, v in result["metrics"].items() if isinstance(v, float)}
