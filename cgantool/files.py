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


def check_output(out, *, folder: bool, force: bool, what: str = "--out") -> None:
    """Refuse an output path that cannot be written, before anything is computed: an existing file where a folder
    goes (or the reverse), a path under a file, a non-empty folder or an existing file without ``force``, or a
    folder this user may not write to."""
    from cgantool.errors import CgantoolError

    out = Path(out)
    hint = f"choose another {what}" + (" or pass --force" if out.exists() and not force else "")
    if out.exists():
        if folder and not out.is_dir():
            raise CgantoolError(f"{what} {out} is a file, not a folder", hint=f"choose a folder path for {what}")
        if not folder and out.is_dir():
            raise CgantoolError(f"{what} {out} is a folder", hint=f"choose a file path for {what} or drop its suffix")
        if not force and (not folder or any(out.iterdir())):
            raise CgantoolError(f"{out} already exists" if not folder else f"output folder {out} is not empty", hint=hint)
        parent = out if folder else out.parent
    else:
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise CgantoolError(f"cannot create {what} {out}: {parent} is a file, not a folder", hint=hint)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CgantoolError(f"cannot write {what} {out}: {parent} is not writable", hint=hint)
