"""Decoding image files into the data cache: centre crop (or, ``data.crop = false``, none: the whole image squashed
to a square) and antialiased resize to uint8 [3, R, R], streamed
into the ``images.npy`` of a cache entry being built, so memory stays flat however many files there are. Files are
decoded in worker processes (a pixel budget shared between them; oversized files skipped from their header), and
every skipped file is named.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import sys
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from cgantool.config import DataConfig
from cgantool.errors import DataError

# Pixels being decoded at once across the decode processes: small images decode in parallel, large ones take turns,
# so the peak memory of a cache build stays near DECODE_PIXEL_BUDGET * ~8 bytes whatever the files claim. (Files
# over data.max_image_pixels are skipped from their header, never decoded; Pillow's decompression-bomb guard stays.)
DECODE_PIXEL_BUDGET = 100_000_000
TRIM_AFTER_PIXELS = 4_000_000  # after decoding an image this large, freed memory goes back to the OS (see _trim)
NAMED_BAD_FILES = 3  # skipped files named in the warning
CHUNK = 32  # files per task sent to a decode process (fewer at high resolutions: CHUNK_BYTES)
CHUNK_BYTES = 4 * 1024**2  # decoded bytes a task sends back at most; 2 tasks per worker wait to be written
PROCESS_MIN_FILES = 64  # fewer files decode in this process: starting workers would take longer
MAX_WORKERS = 32


def shown_path(path: Path | str) -> str:
    """A path (or name) as text that is valid UTF-8: bytes that are not (a Latin-1 folder name on Linux, which
    Python carries as surrogates) appear as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Count:
    value = 0


class _PixelBudget:
    """Lets decoders hold at most ``budget`` pixels at once (one image over the budget runs alone). Threads share
    one by default; processes share a ``multiprocessing`` condition and value passed in."""

    def __init__(self, budget: int, cond: Any = None, in_use: Any = None):
        self.budget = budget
        self.cond = cond if cond is not None else threading.Condition()
        self.in_use = in_use if in_use is not None else _Count()

    def acquire(self, pixels: int) -> int:
        pixels = min(pixels, self.budget)
        with self.cond:
            while self.in_use.value and self.in_use.value + pixels > self.budget:
                self.cond.wait()
            self.in_use.value += pixels
        return pixels

    def release(self, pixels: int) -> None:
        with self.cond:
            self.in_use.value -= pixels
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


def _decode_one(f: Path, resolution: int, max_pixels: int, budget: _PixelBudget, crop: bool = True) -> np.ndarray | str:
    """uint8 [3, R, R], or why the file was skipped. The size comes from the header before anything is decoded.

    ``crop``: resize the short side to R and keep the centre (default); False: resize width and height to R
    separately, the aspect ratio changed and nothing cut off, as XMC-GAN's official input pipeline does (it uses
    TF's bilinear resize without antialiasing; the filter here stays the cache's antialiased bicubic)."""
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
                if crop:
                    img = ImageOps.fit(img, (resolution, resolution), Image.Resampling.BICUBIC)
                else:
                    img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
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


def decode_workers(num_files: int) -> int:
    """Decode processes for a build: one per usable core (``CGANTOOL_DECODE_WORKERS`` overrides; 0 or 1 decodes
    in this process, as does a build of fewer than PROCESS_MIN_FILES files)."""
    if os.environ.get("CGANTOOL_DECODE_WORKERS", "").isdigit():
        return int(os.environ["CGANTOOL_DECODE_WORKERS"])
    if num_files < PROCESS_MIN_FILES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, MAX_WORKERS)


_worker_budget: _PixelBudget | None = None


def _init_worker(cond: Any, in_use: Any) -> None:
    from PIL import Image

    global _worker_budget
    _worker_budget = _PixelBudget(DECODE_PIXEL_BUDGET, cond, in_use)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _decode_chunk(files: list[Path], resolution: int, max_pixels: int, crop: bool = True) -> list[np.ndarray | str]:
    assert _worker_budget is not None
    return [_decode_one(f, resolution, max_pixels, _worker_budget, crop) for f in files]


def _decoded(files: list[Path], cfg: DataConfig) -> Iterator[list[np.ndarray | str]]:
    """Each file decoded (or why it was skipped), in order, a chunk at a time; at most 2 chunks per worker are in
    flight, so what waits to be written stays bounded."""
    from PIL import Image

    workers = decode_workers(len(files))
    size = max(1, min(CHUNK, CHUNK_BYTES // (3 * cfg.resolution**2)))
    if workers <= 1:
        budget = _PixelBudget(DECODE_PIXEL_BUDGET)
        with warnings.catch_warnings():  # oversized files are skipped and named by us; Pillow's would repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for start in range(0, len(files), size):
                yield [_decode_one(f, cfg.resolution, cfg.max_image_pixels, budget, cfg.crop)
                       for f in files[start:start + size]]
        return
    # fork (Linux): workers start at once, nothing re-imported; elsewhere spawn (fork is unsafe on macOS)
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    init = (ctx.Condition(), ctx.Value("q", 0, lock=False))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        starts = iter(range(0, len(files), size))
        pending: deque = deque()

        def submit() -> None:
            start = next(starts, None)
            if start is not None:
                pending.append(pool.submit(_decode_chunk, files[start:start + size], cfg.resolution,
                                           cfg.max_image_pixels, cfg.crop))

        for _ in range(2 * workers):
            submit()
        while pending:
            try:
                chunk = pending.popleft().result()
            except BrokenProcessPool:
                raise DataError(f"a decode process died while caching {len(files)} images (out of memory?)",
                                hint="set CGANTOOL_DECODE_WORKERS to fewer processes (1 decodes in this one), or"
                                " lower data.max_image_pixels") from None
            submit()
            yield chunk


def decode_to_file(
    files: list[Path], cfg: DataConfig, path: Path, root: Path | None = None, progress: Any = None
) -> tuple[list[int], list[str]]:
    """Decode, centre-crop (unless ``cfg.crop`` is false) and antialias-resize every file into ``path``, a uint8
    [N, 3, R, R] ``.npy``.

    Good images are written to the next free row, in file order (a bounded chunk in memory at a time); the
    skipped ones are dropped and N rewritten at the end. Returns (good indices, notices): a notice names how many
    files were skipped and the first few, with why. More than ``cfg.max_bad_fraction`` skipped is a DataError.
    Paths are shown relative to ``root``. ``progress.advance(n)`` is called as files are done.
    """
    res = cfg.resolution
    preallocated = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(files), 3, res, res))
    del preallocated  # the header and a sparse file of N rows; the rows are written below
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    good: list[int] = []
    why: dict[int, str] = {}
    fd = os.open(path, os.O_WRONLY)
    try:
        index = 0
        for chunk in _decoded(files, cfg):
            rows = []
            for img in chunk:
                if isinstance(img, str):
                    why[index] = img
                else:
                    rows.append(img)
                    good.append(index)
                index += 1
            if rows:  # written with pwrite, not through a memory map: written pages are not this process's memory
                os.pwrite(fd, np.stack(rows).tobytes(), offset + (len(good) - len(rows)) * 3 * res * res)
            if progress is not None:
                progress.advance(len(chunk))
    finally:
        os.close(fd)

    def name(i: int) -> str:
        f = files[i]
        rel = f.relative_to(root) if root is not None and f.is_relative_to(root) else f
        return f"{shown_path(rel)} ({why[i]})"

    bad = sorted(why)
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
        _set_rows(path, offset, version, (len(good), 3, res, res))
    return good, notices


def _set_rows(path: Path, offset: int, version: tuple[int, int], shape: tuple[int, ...]) -> None:
    """Rewrite the shape in a uint8 ``.npy`` header (padded to the same length: fewer rows never need more
    characters) and cut the file after the last row."""
    size = 4 if version[0] >= 2 else 2
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % (shape,)
    body = (header.ljust(offset - 8 - size - 1) + "\n").encode("latin1")
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I" if size == 4 else "<H", len(body)) + body)
    os.truncate(path, offset + int(np.prod(shape)))
