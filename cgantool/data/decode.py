"""Decoding image files into the data cache: centre crop and antialiased resize to uint8 [3, R, R], with the
memory a build may take bounded (a pixel budget across threads; oversized files skipped from their header) and
every skipped file named.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cgantool.config import DataConfig
from cgantool.errors import DataError

# Pixels being decoded at once across the decode threads: small images decode in parallel, large ones take turns,
# so the peak memory of a cache build stays near DECODE_PIXEL_BUDGET * ~8 bytes whatever the files claim. (Files
# over data.max_image_pixels are skipped from their header, never decoded; Pillow's decompression-bomb guard stays.)
DECODE_PIXEL_BUDGET = 100_000_000
TRIM_AFTER_PIXELS = 4_000_000  # after decoding an image this large, freed memory goes back to the OS (see _trim)
NAMED_BAD_FILES = 3  # skipped files named in the warning


def shown_path(path: Path | str) -> str:
    """A path (or name) as text that is valid UTF-8: bytes that are not (a Latin-1 folder name on Linux, which
    Python carries as surrogates) appear as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _PixelBudget:
    """Lets decode threads hold at most ``budget`` pixels at once (one image over the budget runs alone)."""

    def __init__(self, budget: int):
        self.budget, self.in_use = budget, 0
        self.cond = threading.Condition()

    def acquire(self, pixels: int) -> int:
        pixels = min(pixels, self.budget)
        with self.cond:
            while self.in_use and self.in_use + pixels > self.budget:
                self.cond.wait()
            self.in_use += pixels
        return pixels

    def release(self, pixels: int) -> None:
        with self.cond:
            self.in_use -= pixels
            self.cond.notify_all()


def _trim() -> None:
    """Return freed heap memory to the OS (glibc; a no-op elsewhere). Each decode thread has its own malloc arena,
    which keeps what a large image freed: six 49 MP PNGs through 8 threads peaked at 1.9 GB without this, 0.4 GB
    with it (a bare decode loop, one image at a time)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _to_8bit(img: Any) -> Any:
    """16-bit grayscale ('I;16*', and 'I' as Pillow opens 16-bit PNG/TIFF) scaled to 8 bits: round(v / 257), so
    65535 → 255. (Pillow's convert('RGB') clips these at 255 instead: a 16-bit photo turns almost white.)"""
    from PIL import Image

    if not (img.mode.startswith("I;16") or img.mode == "I"):
        return img
    v = np.asarray(img).astype(np.uint32) if img.mode != "I" else np.clip(np.asarray(img), 0, 65535).astype(np.uint32)
    return Image.fromarray(((v + 128) // 257).astype(np.uint8), "L")  # floor((v + 128) / 257) = round(v / 257)


def _decode_one(f: Path, resolution: int, max_pixels: int, budget: _PixelBudget) -> np.ndarray | str:
    """uint8 [3, R, R], or why the file was skipped. The size comes from the header before anything is decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(f) as src:
            width, height = src.size
            if width * height > max_pixels:
                return f"{width}x{height} pixels, over data.max_image_pixels = {max_pixels}"
            held = budget.acquire(width * height)
            try:
                img = _to_8bit(src)
                img = img if img.mode == "RGB" else img.convert("RGB")  # convert('RGB') of RGB is a full copy
                img = ImageOps.fit(img, (resolution, resolution), Image.Resampling.BICUBIC)
                return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
            finally:
                src.close()  # frees the decoded pixels now
                if width * height >= TRIM_AFTER_PIXELS:
                    _trim()
                budget.release(held)
    except FileNotFoundError:
        return "missing"
    except Image.DecompressionBombError:
        return "over Pillow's decompression-bomb limit"
    except Exception as e:  # any file Pillow cannot read is skipped and counted, never fatal on its own
        if isinstance(e, Image.UnidentifiedImageError):
            return "not a readable image"
        return f"unreadable ({type(e).__name__})"


def _decode_all(
    files: list[Path], cfg: DataConfig, root: Path | None = None
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode, centre-crop and antialias-resize every file to uint8 [N, 3, R, R].

    Returns (images, good indices, notices): a notice names how many files were skipped and the first few, with
    why. More than ``cfg.max_bad_fraction`` skipped is a DataError. Paths are shown relative to ``root``.
    """
    from PIL import Image

    budget = _PixelBudget(DECODE_PIXEL_BUDGET)
    with warnings.catch_warnings():  # oversized files are skipped and named by us; Pillow's warning would repeat it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            decoded = list(pool.map(lambda f: _decode_one(f, cfg.resolution, cfg.max_image_pixels, budget), files))
    good = [i for i, img in enumerate(decoded) if not isinstance(img, str)]
    bad = [i for i, img in enumerate(decoded) if isinstance(img, str)]

    def name(i: int) -> str:
        f = files[i]
        rel = f.relative_to(root) if root is not None and f.is_relative_to(root) else f
        return f"{shown_path(rel)} ({decoded[i]})"

    if not good or len(bad) > cfg.max_bad_fraction * len(files):
        raise DataError(
            f"{len(bad)} of {len(files)} images could not be read (first: {name(bad[0])})",
            hint="remove, fix or downscale those files, or raise data.max_bad_fraction (or data.max_image_pixels)",
        )
    notices = []
    if bad:
        named = ", ".join(name(i) for i in bad[:NAMED_BAD_FILES])
        more = f" and {len(bad) - NAMED_BAD_FILES} more" if len(bad) > NAMED_BAD_FILES else ""
        where = f" in {shown_path(root)}" if root is not None else ""
        notices.append(f"skipped {len(bad)} of {len(files)} images{where}: {named}{more}")
    images = np.stack([decoded[i] for i in good])
    return images, good, notices
