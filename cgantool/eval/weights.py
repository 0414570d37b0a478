"""Where the Inception weights come from and whether they may run: finding, verifying and downloading
clean-fid's ``inception-2015-12-05.pt`` (the network itself is :mod:`cgantool.eval.inception`).

The file is clean-fid's (and StyleGAN2-ADA's) TorchScript translation of TensorFlow's inception-2015-12-05 graph,
from :data:`URL` (~95 MB). clean-fid 0.1.35 hard-codes ``/tmp/inception-2015-12-05.pt`` and downloads it with no
timeout. Here the weights are found, in order, at:

1. an explicit path (``--inception-weights PATH``);
2. ``$CGANTOOL_INCEPTION_WEIGHTS``;
3. ``<cache dir>/inception-2015-12-05.pt`` (cache dir: ``$CGANTOOL_CACHE``, else ``$XDG_CACHE_HOME/cgantool``,
   else ``~/.cache/cgantool``);
4. clean-fid's ``/tmp/inception-2015-12-05.pt`` -- a directory anyone can write to, so that file is only taken
   when its sha256 is :data:`SHA256`, and then as a verified copy in the cache dir (a planted file is ignored
   with a warning, and a swap after the check cannot reach the copy);
5. a download into the cache dir with a stall timeout and a whole-transfer deadline (temp file, size and
   sha256 checks, atomic rename); when that fails, one :class:`OfflineError` says what to fetch and where.

The file is TorchScript: loading it runs code it carries. So whatever its location, its sha256 must be clean-fid's
(:data:`SHA256`, hashed in 1 MiB chunks) before ``torch.jit.load`` sees it; a different network needs the explicit
``--unverified-inception`` (or ``$CGANTOOL_UNVERIFIED_INCEPTION=1``), which warns, and names the extractor
``unverified-inception-<sha256 prefix>/<mode>`` in results and in the reference-feature cache key.

The constants here are read at call time (tests replace them on this module).
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from cgantool.data.sources import cache_dir
from cgantool.errors import CgantoolError, OfflineError, warn

FILENAME = "inception-2015-12-05.pt"
URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
# Inception-v3 with a 1008-way head holds ~23.9 M float32 parameters (~95.5 MB); the exact byte size is not
# published by clean-fid or NVIDIA, so a download is checked against the server's Content-Length and this floor.
MIN_BYTES = 90_000_000
# sha256 of clean-fid's / NVIDIA's inception-2015-12-05.pt. clean-fid 0.1.35 ships no checksum; this value is the
# one k-diffusion pins for the same URL (crowsonkb/k-diffusion, k_diffusion/evaluation.py,
# InceptionV3FeatureExtractor), and other projects pinning that file publish the same digest.
SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
MAX_BYTES = 128_000_000  # clean-fid's /tmp copy above this size is not read (it is ~95.6 MB)
HASH_CHUNK = 1 << 20  # bytes read per step while hashing: memory stays flat for any file size
ENV_VAR = "CGANTOOL_INCEPTION_WEIGHTS"
UNVERIFIED_ENV = "CGANTOOL_UNVERIFIED_INCEPTION"  # "1": accept weights whose sha256 is not SHA256 (as the flag)
CLEANFID_PATH = Path("./" if platform.system() == "Windows" else "/tmp") / FILENAME  # cleanfid/features.py
MAX_DOWNLOAD_SECONDS = 900.0  # whole-transfer deadline (a trickling connection would otherwise never end)


def cache_path() -> Path:
    """Where a downloaded copy lives: ``<cgantool cache dir>/inception-2015-12-05.pt`` (read at call time)."""
    return cache_dir() / FILENAME


def fetch_hint() -> str:
    return (f"download {URL} and put it at {cache_path()}, or pass --inception-weights PATH / set {ENV_VAR}")


# ------------------------------------------------------------------------------------------------ verification


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read :data:`HASH_CHUNK` bytes at a time (memory-flat, whatever the size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def unverified_allowed(flag: bool = False) -> bool:
    """Whether weights that are not clean-fid's may load: ``--unverified-inception`` or ``$CGANTOOL_UNVERIFIED_INCEPTION``."""
    return flag or os.environ.get(UNVERIFIED_ENV, "").strip().lower() not in ("", "0", "false", "no")


def verify_inception_weights(path: str | os.PathLike, unverified: bool = False) -> str:
    """The file's sha256, after checking it is clean-fid's :data:`SHA256`.

    A different file raises :class:`CgantoolError` (nothing of it runs), unless ``unverified`` -- the user's
    explicit consent -- which loads it with a warning that it is unverified.
    """
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise CgantoolError(f"cannot read the Inception weights at {path} ({e.strerror or e})",
                            hint=fetch_hint()) from None
    if digest == SHA256:
        return digest
    if not unverified:
        raise CgantoolError(
            f"the Inception weights at {path} are not clean-fid's {FILENAME} (sha256 {digest[:12]}..., expected "
            f"{SHA256[:12]}...); not loaded, as loading TorchScript runs its code",
            hint=f"replace it with clean-fid's {URL} (or delete it: cgantool then downloads that file into "
            f"{cache_path()}); to run this different network knowingly, pass --unverified-inception (or set "
            f"{UNVERIFIED_ENV}=1)",
        )
    warn(f"loading UNVERIFIED Inception weights {path} (sha256 {digest[:12]}..., not clean-fid's {FILENAME}): "
         "its TorchScript code runs as is and its scores are not comparable with clean-fid's")
    return digest


def _adopt_cleanfid_copy(source: Path) -> Path | None:
    """clean-fid's copy in a directory anyone can write to: copied into the cache while hashing, kept only when
    the copy's sha256 is :data:`SHA256` (then returned); otherwise ignored with a warning (``None``)."""
    dest = cache_path()
    tmp = None
    try:
        size = source.stat().st_size
        if not MIN_BYTES <= size <= MAX_BYTES:  # not worth reading (or copying: a planted file may be huge)
            warn(f"ignoring {source}: {size} bytes cannot be clean-fid's {FILENAME}, and anyone can write there")
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(name)
        h = hashlib.sha256()
        copied = 0
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while (chunk := src.read(HASH_CHUNK)) and copied <= MAX_BYTES:  # stops a file that grows meanwhile
                h.update(chunk)
                out.write(chunk)
                copied += len(chunk)
        if h.hexdigest() != SHA256:
            warn(f"ignoring {source}: it is not clean-fid's {FILENAME} (sha256 {h.hexdigest()[:12]}...), and anyone "
                 "can write to that directory")
            return None
        os.replace(tmp, dest)
        return dest
    except OSError as e:
        warn(f"ignoring {source}: cannot copy it into {dest.parent} ({e.strerror or e})")
        return None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- finding weights


def resolve_inception_weights(path: str | os.PathLike | None = None, download: bool = True, timeout: float = 30.0,
                              url: str | None = None) -> Path:
    """Path of ``inception-2015-12-05.pt``, searched in the order of the module docstring (its sha256 is checked
    by :func:`verify_inception_weights` when it is loaded, except clean-fid's copy, checked here).

    ``timeout`` bounds every wait without progress (DNS, connect, each read); the whole transfer is bounded by
    ``max(MAX_DOWNLOAD_SECONDS, 20 * timeout)``. ``url`` overrides :data:`URL` (tests). Raises
    :class:`CgantoolError` for an explicit path or ``$CGANTOOL_INCEPTION_WEIGHTS`` that is not a file, and
    :class:`OfflineError` when the weights are absent and cannot be downloaded (or ``download=False``).
    """
    if path is not None and str(path) != "":
        p = Path(path).expanduser()
        if not p.is_file():
            raise CgantoolError(f"Inception weights not found at {p}", hint=fetch_hint())
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise CgantoolError(f"{ENV_VAR} points at a missing file: {p}", hint=fetch_hint())
        return p
    if cache_path().is_file():
        return cache_path()  # its sha256 is checked when it is loaded
    if CLEANFID_PATH.is_file():
        adopted = _adopt_cleanfid_copy(CLEANFID_PATH)
        if adopted is not None:
            return adopted
    if not download:
        raise OfflineError("the Inception weights are not on this machine", hint=fetch_hint())
    try:
        return download_file(url or URL, cache_path(), timeout=timeout,
                             max_seconds=max(MAX_DOWNLOAD_SECONDS, 20 * timeout), min_bytes=MIN_BYTES, sha256=SHA256)
    except OSError as e:
        raise OfflineError(f"could not download the Inception weights ({_reason(e)})", hint=fetch_hint()) from None


def _reason(e: BaseException) -> str:
    """A short human reason for a failed download."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


class _Transfer(threading.Thread):
    """Copies ``url`` into the file ``tmp`` on a daemon thread, recording progress for a watchdog."""

    def __init__(self, url: str, tmp: Path, timeout: float):
        super().__init__(daemon=True, name="cgantool-download")
        self.url, self.tmp, self.timeout = url, tmp, timeout
        self.lock = threading.Lock()
        self.cancelled = False
        self.last_progress = time.monotonic()
        self.expected_bytes: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                self.last_progress = time.monotonic()
                length = response.headers.get("Content-Length", "")
                self.expected_bytes = int(length) if length.isdigit() else None
                with self.lock:  # never (re)create the temp file after the watchdog gave up and removed it
                    if self.cancelled:
                        return
                    f = open(self.tmp, "wb")  # noqa: SIM115 - closed below
                with f:
                    while chunk := response.read1(1 << 16):  # returns after one recv: progress stays visible
                        self.last_progress = time.monotonic()
                        if self.cancelled:
                            return
                        f.write(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self.error = e

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True


def download_file(url: str, dest: Path, timeout: float, max_seconds: float, min_bytes: int = 0,
                  sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file beside it, checks, ``os.replace``); returns ``dest``.

    Fails with :class:`TimeoutError` when nothing arrives for ``timeout`` seconds (DNS and connect included, which
    urllib's own timeout does not fully cover) or the transfer exceeds ``max_seconds``; with :class:`OSError` for
    network errors, a short transfer (fewer bytes than Content-Length or ``min_bytes``), a file that is not a
    zip archive (TorchScript files are) or, given ``sha256``, another digest. Never leaves a temp file behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    transfer = _Transfer(url, tmp, timeout)
    start = time.monotonic()
    try:
        transfer.start()
        while transfer.is_alive():
            transfer.join(0.05)
            now = time.monotonic()
            if transfer.is_alive() and now - transfer.last_progress > timeout:
                raise TimeoutError(f"no response for {timeout:g} s")
            if transfer.is_alive() and now - start > max_seconds:
                raise TimeoutError(f"the transfer took longer than {max_seconds:g} s")
        if transfer.error is not None:
            raise transfer.error if isinstance(transfer.error, OSError) else OSError(_reason(transfer.error))
        size = tmp.stat().st_size
        if transfer.expected_bytes is not None and size != transfer.expected_bytes:
            raise OSError(f"incomplete transfer: {size} of {transfer.expected_bytes} bytes")
        if size < min_bytes:
            raise OSError(f"got {size} bytes, expected at least {min_bytes}")
        if not zipfile.is_zipfile(tmp):
            raise OSError("the downloaded file is not a TorchScript archive")
        if sha256 is not None and (digest := sha256_file(tmp)) != sha256:
            raise OSError(f"the downloaded file's sha256 is {digest[:12]}..., expected {sha256[:12]}...")
        os.replace(tmp, dest)
        return dest
    finally:
        transfer.cancel()
        tmp.unlink(missing_ok=True)

