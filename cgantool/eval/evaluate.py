"""Evaluate a checkpoint, a generator or a folder of images against a dataset with the registered metrics
(:mod:`cgantool.eval.registry`: FID, KID, IS, PR/DC, per-class FID, the shapes attribute probe, plugins).

Images go generator → uint8 (exactly what a PNG would hold) → feature extractor, in memory. The reference is a
seeded random, class-stratified subset of the data (or all of it), :mod:`cgantool.eval.reference`; its features
are computed once and cached under cgantool's cache dir, keyed by everything that changes them. Named protocols
(:mod:`cgantool.eval.protocols`) fix mode, counts, repeats and IS splits as a paper measured them.
:func:`evaluate_checkpoint` is what ``cgantool eval`` calls, and what a notebook imports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgantool import __version__
from cgantool.errors import CgantoolError, DataError, warn
from cgantool.eval.reference import real_features
from cgantool.eval.registry import Metric, MetricInputs, check_metrics, planned, run_metrics


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = ("fid", "kid")  # names in cgantool.eval.registry.METRICS
    num_samples: int = 10000
    batch_size: int = 100
    seed: int = 0
    mode: str = "clean"  # clean | legacy_tensorflow | pytorch_resize (eval/protocols.py MODES)
    feature_extractor: str = ""  # "" = Inception; else "module:function"
    inception_weights: str | None = None
    unverified_inception: bool = False  # load Inception weights whose sha256 is not clean-fid's (explicit consent)
    per_class: bool = False  # adds "fid_per_class" to the metrics
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_real: int | str | None = None  # reference size: a count, "all" (the whole split), None = num_samples
    reference_seed: int = 0  # seed of the random (class-stratified) reference subset, eval/reference.py
    repeats: int = 1  # generated sets (seeds seed, seed+1, ...); metrics are their mean, metrics_std their spread
    is_splits: int = 10  # splits the Inception Score averages over
    protocol: dict[str, Any] | None = None  # the named protocol's record (eval/protocols.py), for the JSON
    reference_split: str | None = None  # the split the protocol takes the reference from (recorded)
    standing_stats: int = 0  # batches re-estimating G's batch-norm statistics first (on a copy), eval/standing.py

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
            start: float, reference: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The result of every evaluation, as ``eval --json`` writes it: the metrics and what they measured."""
    reference = {"num_real": int(num_real), "reference_seed": None, "reference_selection": "all",
                 "reference_classes": None, **(reference or {})}
    return {"metrics": metrics, **reference, "num_fake": int(num_fake), "extractor": extractor.name,
            "mode": opts.mode, "seed": opts.seed, "repeats": opts.repeats, "is_splits": opts.is_splits,
            "reference_split": opts.reference_split, "standing_stats": opts.standing_stats, "protocol": opts.protocol,
            "seconds": round(time.perf_counter() - start, 2), "cgantool_version": __version__, **extra}


def _mean_over_repeats(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    """The metrics of each repeat → their mean (per key; per name for dict-valued metrics) and std (floats)."""
    if len(runs) == 1:
        return runs[0], {}
    mean: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            mean[key] = {n: float(np.mean([r[key][n] for r in runs if n in r[key]])) for n in value}
        else:
            mean[key] = float(np.mean([r[key] for r in runs]))
    std = {k: float(np.std([r[k] for r in runs])) for k, v in runs[0].items() if not isinstance(v, dict)}
    return mean, std


def caption_of(dataset, i: int) -> str:
    """The caption fake i of a text-to-image evaluation is generated from: image i mod N, its captions in turn."""
    caps = dataset.captions[i % len(dataset)]
    return caps[(i // len(dataset) + i) % len(caps)]


def evaluate_generator(G, num_classes: int, dataset, opts: EvalOptions, extractor: Extractor | None = None,
                       text_encoder=None) -> dict[str, Any]:
    """Metrics of generator G against ``dataset``; class-balanced fake labels for conditional G; for a
    text-to-image G (``text_encoder`` given) fake i is generated from :func:`caption_of` (dataset, i)."""
    from cgantool.sampling import default_labels

    start = time.perf_counter()
    text = text_encoder is not None
    if text and dataset.captions is None:
        raise DataError(f"a text-to-image model is evaluated on captioned data; '{dataset.source}' has none",
                        hint="evaluate on the training data (drop --data) or a captions .jsonl / coco: source")
    inputs = MetricInputs(seed=opts.seed, dataset=dataset, num_classes=num_classes, text=text,
                          class_names=dataset.class_names or (), is_splits=opts.is_splits)
    todo = planned(opts.selected(), inputs)
    extractor = extractor or Extractor(opts)
    real = real_features(dataset, extractor, opts)
    n = opts.num_samples if opts.num_samples > 0 else len(real["features"])  # 0: as many as the reference
    labels = default_labels(n, num_classes)
    if text:  # fake i shows caption i mod N: the class (if any) of image i mod N
        labels = dataset.labels[torch.arange(n) % len(dataset)] if dataset.labels is not None else None
    inputs.real, inputs.real_labels = real["features"], real.get("labels")
    extra: dict[str, Any] = {}
    if opts.standing_stats > 0:
        G, extra["standing_stats_layers"] = _standing(G, num_classes, dataset, opts, text_encoder)
    runs = []
    for r in range(max(1, opts.repeats)):  # repeat r: fresh latents from seed + r, the same reference
        fakes = _fake_features(G, dataset, opts, extractor, text_encoder, labels, n, opts.seed + r, _needs(todo))
        inputs.fake, inputs.fake_probs, inputs.fake_images = fakes
        inputs.fake_labels = labels
        runs.append(_run(todo, inputs))
    metrics, spread = _mean_over_repeats(runs)
    if len(runs) > 1:
        extra.update(metrics_std=spread, metrics_per_repeat=runs)
    return _result(metrics, len(real["features"]), n, extractor, opts, start, real["reference"], **extra)


def _standing(G, num_classes: int, dataset, opts: EvalOptions, text_encoder) -> tuple[Any, int]:
    """A copy of G with standing batch-norm statistics (fake conditions as the scored fakes get them)."""
    from cgantool.eval.standing import with_standing_statistics

    def cond_for(idx: range):
        if text_encoder is not None:
            return text_encoder.encode([caption_of(dataset, j) for j in idx]).to("cpu")
        return torch.tensor([j % num_classes for j in idx]) if num_classes > 0 else None

    G, layers = with_standing_statistics(G, opts.standing_stats, opts.batch_size, opts.seed, opts.device, cond_for)
    if not layers:
        warn("--standing-stats: the generator has no batch norm; its statistics are left as they are")
    return G, layers


def _fake_features(G, dataset, opts: EvalOptions, extractor: Extractor, text_encoder, labels, n: int, seed: int,
                   needs: set[str]) -> tuple[np.ndarray, np.ndarray | None, torch.Tensor | None]:
    """Features (probs, images where a metric needs them) of n fakes from latents of ``seed``, generated and
    extracted in chunks: bounded memory for any n (with progress on stderr under ``cgantool eval``)."""
    from cgantool.eval.progress import EvalProgress
    from cgantool.sampling import generate, latents

    feats, probs, kept = [], [], []
    what = "generated images" + (f" (seed {seed})" if opts.repeats > 1 else "")
    with EvalProgress(what, n) as progress:
        for i in range(0, n, opts.batch_size):
            idx = range(i, min(i + opts.batch_size, n))
            if text_encoder is not None:
                cond = text_encoder.encode([caption_of(dataset, j) for j in idx]).to("cpu")
            else:
                cond = labels[i : idx.stop] if labels is not None else None
            images = generate(G, latents(seed, idx, G.z_dim), cond, batch_size=opts.batch_size, device=opts.device)
            if "probs" in needs:
                f, pr = extractor.features_and_probs(images)
                feats.append(f.numpy())
                probs.append(pr.numpy())
            else:
                feats.append(extractor.features(images).numpy())
            if "images" in needs:
                kept.append(images)
            progress.advance(len(idx))
    return (np.concatenate(feats), np.concatenate(probs) if probs else None, torch.cat(kept) if kept else None)


def evaluate_checkpoint(checkpoint: str | os.PathLike, *, metrics: tuple[str, ...] | list[str] = ("fid", "kid"),
                        num_samples: int | None = None, batch_size: int = 100, seed: int = 0, mode: str | None = None,
                        feature_extractor: str = "", inception_weights: str | None = None,
                        unverified_inception: bool = False, per_class: bool = False,
                        device: str | torch.device = "auto", data: str | None = None, ema: bool = True,
                        allow_download: bool = False, protocol: str | None = None,
                        num_real: int | str | None = None, reference_seed: int = 0, repeats: int | None = None,
                        is_splits: int | None = None, standing_stats: int = 0) -> dict[str, Any]:
    """Score a cgantool checkpoint: what ``cgantool eval CHECKPOINT`` computes and prints as ``--json``.

    ``metrics``: registered names (:func:`cgantool.eval.registry.metric_names`); ``data``: a reference data source
    other than the checkpoint's (``"cifar10"``, ``"shapes:32"``...); ``ema``: the EMA generator when the file has
    one; ``allow_download``: let a checkpoint's ``hf:`` text encoder come from the hub; ``protocol``: a name of
    :data:`cgantool.eval.protocols.PROTOCOLS` fixing mode, num_real, num_samples, repeats and is_splits (any of
    them given here overrides it; unset ones default to 10000 fakes, as many reals, clean mode, 1 repeat);
    ``standing_stats``: re-estimate G's batch-norm statistics over that many batches first (on a copy). The
    other arguments are :class:`EvalOptions`. Errors are :class:`~cgantool.errors.CgantoolError` (one line and a
    hint). The feature extractor (the Inception weights, or ``feature_extractor``) is found and loaded first, so
    offline or with a broken extractor this fails in seconds, before the checkpoint, the data and G are read.
    """
    from cgantool.checkpoint import load_checkpoint
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset, parse_source
    from cgantool.device import resolve_device
    from cgantool.engine.model import load_generator

    opts = options_for(protocol, metrics=tuple(metrics), num_samples=num_samples, batch_size=batch_size, seed=seed,
                       mode=mode, feature_extractor=feature_extractor, inception_weights=inception_weights,
                       unverified_inception=unverified_inception, per_class=per_class, num_real=num_real,
                       reference_seed=reference_seed, repeats=repeats, is_splits=is_splits,
                       standing_stats=standing_stats,
                       device=device if isinstance(device, torch.device) else resolve_device(device))
    opts.selected()  # an unknown metric fails before the checkpoint is read
    if not Path(checkpoint).exists():  # a typo fails before the extractor's seconds (load_checkpoint says it)
        load_checkpoint(checkpoint)
    extractor = Extractor(opts)  # missing Inception weights / a broken extractor: before the slow loads below
    ckpt = load_checkpoint(checkpoint)
    data_cfg = ckpt.config.data
    if data is not None:
        source, res = parse_source(data)
        data_cfg = DataConfig(**{**data_cfg.model_dump(), "source": source,
                                 "resolution": res or ckpt.data_info["resolution"]})
    dataset = load_dataset(data_cfg)
    if opts.protocol and data is None and opts.reference_split not in ("train", None):
        warn(f"protocol '{protocol}' takes its reference from the {opts.reference_split} split; this evaluates "
             f"against the checkpoint's training data ({dataset.source}): pass that split as --data to match it"
             + (f" (--data {dataset.source}-test)" if dataset.source in ("cifar10", "cifar100") else ""))
    G = load_generator(ckpt, ema=ema, device=opts.device)
    text_encoder = None
    if ckpt.config.model.conditioning == "text":
        from cgantool.text.encoders import load_text_encoder

        text_encoder = load_text_encoder(ckpt, opts.device, allow_download=allow_download)
    result = evaluate_generator(G, G.num_classes, dataset, opts, extractor=extractor, text_encoder=text_encoder)
    result.update(checkpoint=str(checkpoint), step=ckpt.step, preset=ckpt.preset, dataset=dataset.source,
                  ema=ema and ckpt.has("G_ema"))
    return result


def options_for(protocol: str | None, **given: Any) -> EvalOptions:
    """:class:`EvalOptions` of a protocol (or none) with the explicitly ``given`` settings (not None) on top."""
    from cgantool.eval.protocols import SETTINGS, canonical_mode, resolve

    given["mode"] = canonical_mode(given.get("mode"))  # legacy_pytorch (the old name) → pytorch_resize, warned
    settings, record = resolve(protocol, **{k: given.pop(k, None) for k in SETTINGS})
    return EvalOptions(**given, **settings, protocol=record)


def evaluate_folders(real_dir: Path, fake_dir: Path, opts: EvalOptions) -> dict[str, Any]:
    """Metrics of the images in ``fake_dir`` against those in ``real_dir``: :func:`cgantool.eval.folders.evaluate_folders`."""
    from cgantool.eval.folders import evaluate_folders as run

    return run(real_dir, fake_dir, opts)


class TrainEvaluator:
    """Metrics during training (``eval.every``): built once, so a missing extractor fails before step 1."""

    def __init__(self, cfg, dataset, device: torch.device, inception_weights: str | None = None):
        self.opts = EvalOptions(metrics=tuple(cfg.eval.metrics), num_samples=cfg.eval.num_samples,
                                feature_extractor=cfg.eval.feature_extractor, seed=cfg.train.seed, device=device,
                                inception_weights=inception_weights)
        self.opts.selected("eval.metrics")  # the config checked them; a plugin metric may have been removed since
        self.dataset = dataset
        self.extractor = Extractor(self.opts)

    text_encoder = None  # set by train() for text-to-image runs

    def __call__(self, G, num_classes: int) -> dict[str, float]:
        result = evaluate_generator(G, num_classes, self.dataset, self.opts, self.extractor, self.text_encoder)
        return {k: v for k, v in result["metrics"].items() if isinstance(v, float)}
