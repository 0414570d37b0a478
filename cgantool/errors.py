"""Errors that reach the user as one line plus a hint (the CLI turns them into exit code 2)."""

from __future__ import annotations


class CgantoolError(Exception):
    """A problem with the user's input: bad config, missing data, a file that is not a checkpoint.

    ``message`` names the problem in one line; ``hint`` says what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(CgantoolError):
    """An invalid run configuration (unknown key, bad value, incompatible combination)."""


class DataError(CgantoolError):
    """Missing, unreadable or unsuitable data."""


class CheckpointError(CgantoolError):
    """A file that is not a (compatible) cgantool checkpoint."""


class OfflineError(CgantoolError):
    """Something had to be downloaded and could not be."""


class TrainingError(CgantoolError):
    """The run itself failed (diverged, or a checkpoint could not be written): exit code 1; the last good
    checkpoint is kept and named."""

    exit_code = 1


class Interrupted(CgantoolError):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP): a checkpoint was written; exit code 128 + the signal number."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 130):
        super().__init__(message, hint)
        self.exit_code = exit_code


class GateFailed(CgantoolError):
    """An evaluation bound (--max-fid / --min-is) was missed: exit code 1, not a usage error."""

    exit_code = 1


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (markup in ``message`` is printed literally, never interpreted)."""
    import sys

    from rich.console import Console
    from rich.markup import escape

    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(f"[yellow]warning:[/] {escape(printable(message))}")


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, carriage returns, NUL...) shown as ``\\xNN`` escapes, so text
    that came from a file (a checkpoint's metadata, a folder name) can never drive the terminal."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode("ascii") for ch in text)
