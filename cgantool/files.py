"""Writing files so that readers never see half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, fsync, then rename over ``path``: readers never see a half-written file, and a
    killed writer leaves only ``.NAME.tmp-PID`` (which ``engine.run_dir`` cleans up in a run directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())  # as `cp` would: some writers (safetensors) create their file 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def new_file_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under the usual 022), so teammates sharing a run
    folder can read its checkpoints."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
