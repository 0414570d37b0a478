"""The Inception feature extractor, and pluggable extractors (``module:function``).

The network is clean-fid's (and StyleGAN2-ADA's) TorchScript translation of TensorFlow's inception-2015-12-05
graph; :mod:`cgantool.eval.weights` finds the file (offline first), verifies its sha256 before anything of it
runs, and downloads it when it must.

The TorchScript module's interface (as StyleGAN2-ADA's metrics and clean-fid call it):
``forward(img, return_features=False, use_fp16=False, no_output_bias=False)`` takes images [B, 3, H, W] with
values in [0, 255] (any float or uint8 dtype), resizes them to 299 x 299 inside with a TensorFlow-style bilinear
resize, normalises (x - 128) / 128 and returns pool features [B, 2048] (``return_features=True``) or softmax
probabilities over 1008 classes (``no_output_bias=True`` drops the output layer's bias, as the original IS code).
Its submodules ``layers`` (normalised 299 x 299 input → [B, 2048, 1, 1]) and ``output`` (Linear 2048 → 1008)
are reachable as attributes; clean-fid's "clean" mode calls ``layers`` on its own resize.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cgantool.errors import CgantoolError
from cgantool.eval import weights
from cgantool.eval.protocols import MODES, RENAMED_MODES  # clean, legacy_tensorflow, pytorch_resize
from cgantool.eval.weights import (  # re-exported: they lived here before eval/weights.py
    cache_path,
    download_file,
    resolve_inception_weights,
    sha256_file,
    unverified_allowed,
    verify_inception_weights,
)

__all__ = ["MODES", "InceptionFeatures", "cache_path", "download_file", "load_feature_extractor", "load_torchscript",
           "resolve_inception_weights", "sha256_file", "unverified_allowed", "verify_inception_weights"]



# ------------------------------------------------------------------------------------------- the feature network


def load_torchscript(path: str | os.PathLike, device: torch.device | str = "cpu",
                     unverified: bool = False) -> torch.jit.ScriptModule:
    """``torch.jit.load`` (the format clean-fid's weights ship in) of a file whose sha256 is clean-fid's (or, with
    ``unverified``, any file, with a warning), with load failures as a CgantoolError."""
    weights.verify_inception_weights(path, unverified)
    return _jit_load(path, device)


def _jit_load(path: str | os.PathLike, device: torch.device | str) -> torch.jit.ScriptModule:
    """``torch.jit.load`` of a file already verified by :func:`~cgantool.eval.weights.verify_inception_weights`."""
    try:
        with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; the file format is fixed
            warnings.filterwarnings("ignore", message=r".*torch\.jit", category=FutureWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CgantoolError(f"cannot load the Inception weights at {path} ({first_line})", hint=f"the file must be "
                            f"clean-fid's TorchScript {weights.FILENAME}: {weights.fetch_hint()}") from None


class InceptionFeatures(nn.Module):
    """uint8 images [B, 3, H, W] → 2048-d pool features (float32), as clean-fid computes them in ``mode``:

    - ``clean``: each image resized to 299 x 299 by clean-fid's resizer (PIL bicubic on float32 per channel,
      ``make_resizer("PIL", False, "bicubic", (299, 299))``), then ``layers((x - 128) / 128)`` — clean-fid's
      ``InceptionV3W`` with ``resize_inside=False``;
    - ``legacy_tensorflow``: the uint8 batch goes straight to the network, which resizes inside
      (TensorFlow-style bilinear) — ``InceptionV3W`` with ``resize_inside=True``;
    - ``pytorch_resize``: clean-fid's legacy_pytorch resizer ``make_resizer("PyTorch", False, "bilinear",
      (299, 299))`` (F.interpolate, align_corners=False) and pytorch-fid's normalisation 2 x / 255 - 1. clean-fid's
      ``legacy_pytorch`` feeds that to pytorch-fid's own port of the same TF graph (a separate
      ``pt_inception-2015-12-05-6726825d.pth``); here it feeds the TorchScript port, so values approximate
      pytorch-fid's, not bit for bit -- hence its own name (``legacy_pytorch``, its old name, still maps to it).

    :meth:`logits` / :meth:`probs` give the 1008-way head without its bias (``no_output_bias=True``, as
    StyleGAN2-ADA's Inception Score) for the Inception Score.

    The file must be clean-fid's (:data:`cgantool.eval.weights.SHA256`) unless ``unverified``; :attr:`sha256` and
    :attr:`verified` say which file ran, and :attr:`name` labels results (``unverified-inception-<sha256
    prefix>/<mode>`` otherwise).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "clean", device: torch.device | str = "cpu",
                 unverified: bool = False):
        super().__init__()
        mode = RENAMED_MODES.get(mode, mode)  # the old name of pytorch_resize (the CLI warns about it)
        if mode not in MODES:
            raise CgantoolError(f"unknown Inception mode '{mode}'", hint=f"use one of: {', '.join(MODES)}")
        from cleanfid.resize import build_resizer

        self.sha256 = weights.verify_inception_weights(path, unverified)
        self.verified = self.sha256 == weights.SHA256
        self.name = (f"inception-2015-12-05/{mode}" if self.verified
                     else f"unverified-inception-{self.sha256[:12]}/{mode}")
        self.base = _jit_load(path, device)
        self.mode = mode
        self.device = torch.device(device)
        with warnings.catch_warnings():  # clean-fid's PyTorch resizer calls warnings.filterwarnings("ignore")
            self.resizer = {"clean": lambda: build_resizer("clean"), "legacy_tensorflow": lambda: None,
                            "pytorch_resize": lambda: build_resizer("legacy_pytorch")}[mode]()

    def _resize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] → float32 [B, 3, 299, 299] in [0, 255] with clean-fid's per-image resizer."""
        arrays = images_u8.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3] uint8
        resized = np.stack([self.resizer(a) for a in arrays]).astype(np.float32)  # [B, 299, 299, 3]
        return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous().to(self.device)

    def _network_input(self, images_u8: torch.Tensor) -> torch.Tensor:
        """What the mode feeds the network: normalised 299 x 299 for ``layers``, or raw [0, 255] for ``base``."""
        if images_u8.dtype != torch.uint8 or images_u8.ndim != 4 or images_u8.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {images_u8.dtype} {tuple(images_u8.shape)}")
        if self.mode == "legacy_tensorflow":
            return images_u8.to(self.device)
        x = self._resize(images_u8)  # [B, 3, 299, 299] float32 in [0, 255]
        if self.mode == "clean":
            return (x - 128) / 128
        return x / 255 * 2 - 1  # pytorch_resize: pytorch-fid's normalize_input

    def _features_from_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "legacy_tensorflow":
            return self.base(x, return_features=True).reshape(x.shape[0], 2048)
        return self.base.layers(x).reshape(x.shape[0], 2048)  # [B, 2048, 1, 1] → [B, 2048]

    @torch.no_grad()
    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] → pool features float32 [B, 2048]."""
        return self._features_from_input(self._network_input(images_u8)).float()

    @torch.no_grad()
    def features_and_logits(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: features [B, 2048] and bias-free logits [B, 1008] = features @ output.weight.T."""
        x = self._network_input(images_u8)
        feats = self._features_from_input(x).float()
        if hasattr(self.base, "output"):
            return feats, F.linear(feats, self.base.output.weight.float())
        # a TorchScript file without the ``output`` attribute: its own interface gives the probabilities, whose
        # logs are logits (softmax is invariant to a per-row constant). It takes [0, 255] and normalises itself.
        raw = x if self.mode == "legacy_tensorflow" else self._resize(images_u8)
        return feats, torch.log(self.base(raw, no_output_bias=True).float())

    def logits(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Bias-free class logits [B, 1008] (softmax of these = StyleGAN2-ADA's IS probabilities)."""
        return self.features_and_logits(images_u8)[1]

    def probs(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, 1008] for the Inception Score: softmax of :meth:`logits`."""
        return torch.softmax(self.logits(images_u8), dim=1)


# ---------------------------------------------------------------------------------------- pluggable extractors


def load_feature_extractor(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``'module:name'`` → a callable uint8 [B, 3, H, W] → float [B, F]. ``name`` may be that callable itself (a
    function of the image batch, or an ``nn.Module`` instance), or a zero-argument factory returning one (a
    function or a class). The module is imported as ``python -m`` would see it from the working directory. The
    callable may also have ``probs`` (or ``logits``) for the Inception Score."""
    import inspect

    hint = ("pass --feature-extractor module:function, where function maps a uint8 image batch [B, 3, H, W] to "
            "features [B, F] (or is an nn.Module, or a zero-argument factory returning one)")
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not module_name.strip() or not fn_name.strip():
        raise CgantoolError(f"--feature-extractor expects module:function, got '{spec}'", hint=hint)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - a missing module, or an error inside the user's module
        raise CgantoolError(f"cannot import feature extractor module '{module_name}' ({type(e).__name__}: {e})",
                            hint=hint) from None
    target = getattr(module, fn_name, None)
    if not callable(target):
        raise CgantoolError(f"module '{module_name}' has no function '{fn_name}'", hint=hint)
    if isinstance(target, torch.nn.Module):
        return target.eval()
    try:
        required = [p for p in inspect.signature(target).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # a builtin without a signature: treat it as the extractor
        required = [None]
    if required and not inspect.isclass(target):
        return target  # a function of the image batch
    try:
        extractor = target()
    except Exception as e:  # noqa: BLE001
        raise CgantoolError(f"{spec}() failed ({type(e).__name__}: {e})", hint=hint) from None
    if not callable(extractor):
        raise CgantoolError(f"{spec}() returned {type(extractor).__name__!r}, not a callable", hint=hint)
    return extractor.eval() if isinstance(extractor, torch.nn.Module) else extractor
