"""Publishing a cache entry: built in ``<entry>.tmp-<host>-<pid>`` and renamed into place once its ``meta.json``
is written, so an interrupted build is never trusted; under torchrun one process per node builds, the others wait.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cgantool.errors import DataError

WAIT_POLL_S = 1.0
DEFAULT_WAIT_S = 6 * 3600  # CGANTOOL_CACHE_WAIT overrides: an ImageNet build takes tens of minutes


def is_builder() -> bool:
    """The process that builds a missing entry: local rank 0 under torchrun (one per node), else this one."""
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"


def _tmp_name(entry: Path, pid: int) -> Path:
    return entry.with_name(f"{entry.name}.tmp-{socket.gethostname()}-{pid}")


def _remove_stale(entry: Path) -> None:
    """Leftovers of builds on this host whose process is gone (killed mid-build): never trusted, now removed."""
    host = socket.gethostname()
    for tmp in entry.parent.glob(f"{entry.name}.tmp-*"):
        who, _, pid = tmp.name[len(entry.name) + 5:].rpartition("-")
        if who != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def build_entry(entry: Path, key: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``build(tmp)``: it writes ``tmp/images.npy`` itself or returns ``images``; then publish atomically."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(entry)
    tmp = _tmp_name(entry, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        built = build(tmp)
        if "images" in built:
            np.save(tmp / "images.npy", built.pop("images"))
        (tmp / "meta.json").write_text(json.dumps({**built, "key": key}))
        if not entry.exists():
            try:
                os.replace(tmp, entry)
            except OSError:  # a concurrent build published first: keep theirs
                if not (entry / "meta.json").exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for_entry(entry: Path) -> None:
    """A rank that does not build waits for the builder's ``meta.json``; a clear error after the timeout."""
    limit = float(os.environ.get("CGANTOOL_CACHE_WAIT") or DEFAULT_WAIT_S)
    began = time.monotonic()
    while not (entry / "meta.json").exists():
        if time.monotonic() - began > limit:
            raise DataError(
                f"rank {os.environ.get('RANK', '?')} waited {limit:g} s for local rank 0 to build the data cache"
                f" {entry}",
                hint="see rank 0's output for why its build stopped; or build the cache once in a single process"
                " (e.g. `cgantool data export`), or raise CGANTOOL_CACHE_WAIT (seconds)",
            )
        time.sleep(WAIT_POLL_S)
