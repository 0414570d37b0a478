"""The Inception feature extractor, with an offline story, and pluggable extractors (``module:function``).

clean-fid hard-codes ``/tmp/inception-2015-12-05.pt`` and its download has no timeout. Here the weights are
found, in order, at ``--inception-weights PATH``, ``$CGANTOOL_INCEPTION_WEIGHTS``, cgantool's cache dir,
clean-fid's location; else downloaded with a deadline into the cache (size-checked, atomic); else one
clear error says which URL to fetch and where to put it.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cgantool.errors import CgantoolError, OfflineError

FILENAME = "inception-2015-12-05.pt"
URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
MIN_BYTES = 90_000_000  # the TorchScript file is ~95 MB; anything much smaller is a broken download
CLEANFID_PATH = Path("/tmp") / FILENAME


def cache_path() -> Path:
    from cgantool.data import cache_dir

    return cache_dir() / FILENAME


def _hint() -> str:
    return (f"download {URL} and put it at {cache_path()}, or pass --inception-weights PATH "
            "(or set CGANTOOL_INCEPTION_WEIGHTS); --feature-extractor module:function plugs in another network")


def resolve_inception_weights(path: str | None = None, download: bool = True, timeout: float = 30.0,
                              url: str | None = None) -> Path:
    """Find the Inception weights (see the module docstring); never hangs longer than ``timeout``."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise CgantoolError(f"Inception weights not found at {p}", hint=_hint())
        return p
    env = os.environ.get("CGANTOOL_INCEPTION_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise CgantoolError(f"CGANTOOL_INCEPTION_WEIGHTS points at a missing file: {p}", hint=_hint())
        return p
    for candidate in (cache_path(), CLEANFID_PATH):
        if candidate.is_file() and candidate.stat().st_size >= MIN_BYTES:
            return candidate
    if not download:
        raise OfflineError("the Inception weights are not on this machine", hint=_hint())
    return _download(url or URL, cache_path(), timeout)


def _download(url: str, dest: Path, timeout: float) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    deadline = time.monotonic() + max(timeout, 1.0) * 20  # whole-transfer limit; each read has `timeout`
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError("the download took too long")
        size = tmp.stat().st_size
        if size < MIN_BYTES:
            raise OSError(f"got {size} bytes, expected about 95 MB")
        os.replace(tmp, dest)
        return dest
    except (OSError, socket.timeout, TimeoutError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise OfflineError(f"could not download the Inception weights ({reason})", hint=_hint()) from None
    finally:
        if tmp.exists():
            tmp.unlink()


class InceptionFeatures(nn.Module):
    """uint8 images [B, 3, H, W] → 2048-d pool features, as clean-fid computes them in ``mode``:

    - ``clean``: each image resized to 299 with PIL bicubic on float32 (clean-fid's resizer), then the
      network's own layers on (x - 128) / 128;
    - ``legacy_pytorch``: F.interpolate bilinear to 299, same normalisation;
    - ``legacy_tensorflow``: the network resizes inside (TensorFlow's convention).

    :meth:`probs` gives the class probabilities for the Inception Score with no output bias
    (``no_output_bias=True``, as StyleGAN2-ADA's metric does).
    """

    def __init__(self, path: str | Path, mode: str = "clean", device: torch.device | str = "cpu"):
        super().__init__()
        from cleanfid.resize import build_resizer

        import warnings

        with warnings.catch_warnings():  # TorchScript is the format clean-fid's weights ship in
            warnings.simplefilter("ignore", FutureWarning)
            self.base = torch.jit.load(str(path), map_location=device).eval()
        self.mode = mode
        self.device = torch.device(device)
        self.resizer = build_resizer(mode) if mode in ("clean", "legacy_pytorch") else None

    def _resized(self, images_u8: torch.Tensor) -> torch.Tensor:
        if self.resizer is None:
            return images_u8.float().to(self.device)
        arrays = images_u8.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3] uint8
        resized = np.stack([self.resizer(a) for a in arrays])  # float32 [B, 299, 299, 3] in [0, 255]
        return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous().to(self.device)

    @torch.no_grad()
    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = self._resized(images_u8)
        if self.resizer is None:
            return self.base(x, return_features=True).view(x.shape[0], -1)
        return self.base.layers.forward((x - 128) / 128).view(x.shape[0], -1)

    @torch.no_grad()
    def probs(self, images_u8: torch.Tensor) -> torch.Tensor:
        return self.base(self._resized(images_u8), no_output_bias=True)


def load_feature_extractor(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``'module:function'`` → ``function()``, a callable uint8 [B, 3, H, W] → float [B, F]."""
    module_name, sep, fn_name = spec.partition(":")
    hint = "pass --feature-extractor module:function, where function() returns a callable images→features"
    if not sep or not module_name or not fn_name:
        raise CgantoolError(f"--feature-extractor expects module:function, got '{spec}'", hint=hint)
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:  # modules beside the user, as `python -m` would see them
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CgantoolError(f"cannot import feature extractor module '{module_name}' ({e})", hint=hint) from None
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise CgantoolError(f"module '{module_name}' has no function '{fn_name}'", hint=hint)
    return factory()
