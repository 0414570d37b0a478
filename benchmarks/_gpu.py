"""Helpers for the GPU figures of the benchmarks: a GPU-utilisation sampler and a timing stand-in for Inception.

Neither changes what a benchmark computes; both only add figures to its JSON line.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from collections.abc import Callable

import torch


class UtilSampler:
    """Samples ``reader()`` every ``period`` seconds in a thread while the ``with`` block runs.

    ``mean`` / ``median`` of the samples afterwards, or None when no sample could be read (no reader, a
    reader that fails): a missing figure, never a made-up one.
    """

    def __init__(self, reader: Callable[[], float] | None, period: float = 0.1):
        self.reader, self.period = reader, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(float(self.reader()))
            except Exception as e:  # noqa: BLE001 - reported as error, the benchmark goes on
                self.error = f"{type(e).__name__}: {e}"
                return
            self._stop.wait(self.period)

    def __enter__(self) -> UtilSampler:
        if self.reader is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.fmean(self.samples), 1) if self.samples else None

    @property
    def median(self) -> float | None:
        return round(statistics.median(self.samples), 1) if self.samples else None


def _nvml_util(index: int) -> float:
    return float(torch.cuda.utilization(index))  # needs pynvml (nvidia-ml-py)


def _nvidia_smi_util(index: int) -> float:
    out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True)
    return float(out.stdout.strip().splitlines()[0])


def gpu_util_sampler(device: torch.device) -> UtilSampler:
    """A sampler of NVML's busy percentage (as nvidia-smi shows it) for ``device``.

    The reader is chosen once: pynvml through torch every 0.1 s, else one nvidia-smi process every 0.5 s (a
    process per sample, kept rare so that it does not take CPU from the timed steps). Not CUDA, or neither
    available: a sampler that reads nothing (``mean`` None).
    """
    if device.type != "cuda":
        return UtilSampler(None)
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        _nvml_util(index)
        return UtilSampler(lambda: _nvml_util(index), period=0.1)
    except Exception:  # noqa: BLE001 - no pynvml
        if shutil.which("nvidia-smi") is None:
            sampler = UtilSampler(None)
            sampler.error = "neither pynvml nor nvidia-smi is available"
            return sampler
        return UtilSampler(lambda: _nvidia_smi_util(index), period=0.5)


class StandInInception:
    """Torchvision's Inception-v3 with **random** weights: 299 px input, 2048-d pool features.

    For timing FID feature extraction where the real Inception file cannot be had (its FLOPs and layers are
    those of the FID network; its features mean nothing). Runs on the device of its input; channels_last and
    large batches on CUDA, like the real extractor.
    """

    def __init__(self):
        from torchvision.models import inception_v3

        torch.manual_seed(0)
        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        net.fc = torch.nn.Identity()
        self.net = net.eval().requires_grad_(False)
        self.device: torch.device | None = None

    @torch.no_grad()
    def __call__(self, images_u8: torch.Tensor) -> torch.Tensor:
        if self.device != images_u8.device:
            self.device = images_u8.device
            fmt = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
            self.net = self.net.to(self.device, memory_format=fmt)
        x = images_u8.float().div_(127.5).sub_(1.0)
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


def stand_in_inception() -> StandInInception:
    """``--feature-extractor benchmarks._gpu:stand_in_inception``."""
    return StandInInception()
