"""Metrics of a folder of images against another (``cgantool eval --real DIR --fake DIR``), with features computed
exactly as clean-fid's ``compute_fid`` computes them for folders (its file list, each image at its own size)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgantool.errors import DataError
from cgantool.eval.evaluate import EvalOptions, Extractor, _needs, _result, _run
from cgantool.eval.registry import MetricInputs, planned


def folder_files(folder: Path) -> list[str]:
    """The image files of a folder and its sub-folders, exactly as clean-fid's ``get_folder_features`` lists them:
    its extensions (``cleanfid.utils.EXTENSIONS``, .npy arrays included), ``glob`` (hidden files skipped), sorted."""
    from glob import glob

    from cleanfid.utils import EXTENSIONS

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}", hint="pass an existing folder of images")
    files = sorted(f for ext in EXTENSIONS for f in glob(os.path.join(str(folder), f"**/*.{ext}"), recursive=True))
    if not files:
        raise DataError(f"no images found in {folder}", hint="put PNG/JPEG files there")
    return files


def _load_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] as clean-fid's ``ResizeDataset`` reads a file (PIL, converted to RGB; .npy as stored)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.endswith(".npy"):
            array = np.load(path)
        else:
            with Image.open(path) as img:
                array = np.array(img.convert("RGB"))
    except (OSError, ValueError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path} ({e})", hint="remove or replace the file") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"{path} is not an RGB image (array of shape {list(array.shape)})",
                        hint="folders hold RGB images [H, W, 3]")
    return array.astype(np.uint8, copy=False)


def folder_features(folder: Path, extractor: Extractor, opts: EvalOptions, what: str, probs: bool = False,
                    keep_images: bool = False) -> tuple[np.ndarray, np.ndarray | None, torch.Tensor | None]:
    """Features (class probabilities, the images) of every image of ``folder`` as clean-fid's ``compare_folders``
    computes them: its file list, each image at its own size into the extractor (the Inception modes resize each
    to 299 with clean-fid's resizer; a ``--feature-extractor`` gets the uint8 images as stored). Consecutive
    images of one size share a batch."""
    from cgantool.eval.progress import EvalProgress

    files = folder_files(folder)
    feats, prob, kept, batch = [], [], [], []

    def flush() -> None:
        images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
        if probs:
            f, pr = extractor.features_and_probs(images)
            feats.append(f.numpy())
            prob.append(pr.numpy())
        else:
            feats.append(extractor.features(images).numpy())
        if keep_images:
            kept.append(images)
        progress.advance(len(batch))
        batch.clear()

    with EvalProgress(what, len(files)) as progress:
        for f in files:
            array = _load_image(f)
            if batch and (array.shape != batch[0].shape or len(batch) == opts.batch_size):
                flush()
            batch.append(array)
        flush()
    if keep_images and len({k.shape[1:] for k in kept}) > 1:
        raise DataError(f"the images in {folder} have different sizes", hint="drop the metrics that read images")
    return (np.concatenate(feats), np.concatenate(prob) if probs else None, torch.cat(kept) if keep_images else None)


def evaluate_folders(real_dir: Path, fake_dir: Path, opts: EvalOptions) -> dict[str, Any]:
    """Metrics of the images in ``fake_dir`` against those in ``real_dir`` (``cgantool eval --real --fake``).

    The features are clean-fid's (:func:`folder_features`): with the same extractor and mode, FID equals
    ``cleanfid.fid.compute_fid(real_dir, fake_dir, mode=...)`` (tests/test_eval_ci.py checks it to 1e-4).
    """
    start = time.perf_counter()
    inputs = MetricInputs(seed=opts.seed)
    todo = planned(opts.selected(), inputs)
    extractor = Extractor(opts)  # the weights first: offline, this fails before any image is read
    folder_files(real_dir), folder_files(fake_dir)  # both folders hold images, before minutes of work
    needs = _needs(todo)
    inputs.real, _, _ = folder_features(real_dir, extractor, opts, f"features of {real_dir}")
    inputs.fake, inputs.fake_probs, inputs.fake_images = folder_features(
        fake_dir, extractor, opts, f"features of {fake_dir}", probs="probs" in needs, keep_images="images" in needs)
    return _result(_run(todo, inputs), len(inputs.real), len(inputs.fake), extractor, opts, start,
                   real=str(real_dir), fake=str(fake_dir))
