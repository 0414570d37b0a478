"""``--json FILE`` — one meaning in ``info``, ``eval`` and ``compare``: the command's result as one JSON object,
written to FILE atomically, or to stdout with ``--json -`` (stdout then holds only that JSON; tables and notes go to
stderr). FILE is checked before any work, and an existing file that does not hold JSON is never overwritten (a
checkpoint typed in the wrong place stays intact). When the command fails, the object is
``{"error": ..., "hint": ..., "exit_code": ...}`` — written to the same place, beside the usual one-line error on
stderr and the same exit code — so a script reading FILE always finds an object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

HELP = "Write the result as one JSON object to FILE, or - for stdout; on failure {error, hint} goes there too."


def to_stdout(json_out: str | None) -> bool:
    return json_out == "-"


def _error(path: Path, e: OSError):
    from cgantool.errors import CgantoolError

    return CgantoolError(f"cannot write --json {path} ({e.strerror or e})",
                         hint="pass a file path in a writable directory, or --json - for stdout")


def check_target(json_out: str | None) -> None:
    """Fail before the work when ``--json PATH`` cannot be written: a directory, something that is not a regular
    file (a device, a pipe: the atomic rename would replace it), an existing file that does not hold JSON, or a
    place no file can be created in."""
    import tempfile

    from cgantool.errors import CgantoolError

    if not json_out or json_out == "-":
        return
    path = Path(json_out)
    if path.is_dir():
        raise CgantoolError(f"--json {path} is a directory", hint=f"name a file, e.g. --json {path / 'out.json'}, "
                            "or use --json - for stdout")
    if path.exists() and not path.is_file():
        raise CgantoolError(f"--json {path} is not a regular file", hint="name a file, or use --json - for stdout")
    if path.is_file() and not _holds_json(path):
        raise CgantoolError(f"--json {path} exists and does not hold JSON; it is not overwritten",
                            hint="name a new file (or an earlier --json output), or use --json - for stdout")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise CgantoolError(f"cannot write --json {path}: {ancestor} is not a directory",
                            hint="pass a file path in a writable directory, or --json - for stdout")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as the final write would
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise _error(path, e) from None


def _holds_json(path: Path) -> bool:
    """Empty, or starting (after whitespace) with ``{`` or ``[``: what an earlier ``--json`` wrote."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return True  # unreadable: the write below reports it
    return head[:1] in (b"", b"{", b"[")


def write(doc: Any, json_out: str | None) -> None:
    """``doc`` as indented JSON to ``json_out`` (atomically), or to stdout for ``-``; nothing when None."""
    if not json_out:
        return
    text = json.dumps(doc, indent=2, default=str)  # (a TOML date in a config: its text)
    if json_out == "-":
        typer.echo(text)
        return
    from cgantool.files import atomic_write

    try:
        atomic_write(Path(json_out), lambda tmp: Path(tmp).write_text(text + "\n"))
    except OSError as e:
        raise _error(Path(json_out), e) from None


@contextmanager
def errors_to(json_out: str | None) -> Iterator[None]:
    """Inside the block, a :class:`~cgantool.errors.CgantoolError` also writes ``{"error", "hint", "exit_code"}``
    to ``json_out`` (after :func:`check_target` passed), then goes on to the CLI's one-line error."""
    from cgantool.errors import CgantoolError

    try:
        yield
    except CgantoolError as e:
        if json_out:
            try:
                write({"error": e.message, "hint": e.hint, "exit_code": e.exit_code}, json_out)
            except CgantoolError:
                pass  # the target became unwritable meanwhile: the stderr line still says what failed
        raise
