"""Progress of eval's long waits on stderr: feature extraction (reference and generated images, image folders) and
the shapes probe's first training. A rich bar in a terminal; when stderr is a file or a pipe (CI, nohup, SLURM) a
line when the wait begins, a line every ``every`` seconds and a closing line when it took that long.

Off unless :func:`showing` turns it on: ``cgantool eval`` does (``--progress/--no-progress``,
``--progress-every``); a notebook, and train's in-training evaluation (which has its own bar), stay quiet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cgantool.data.progress import BuildProgress, duration

_settings: dict[str, Any] = {"on": False, "every": 10.0, "stream": None}


@contextmanager
def showing(on: bool = True, every: float = 10.0, stream: Any = None) -> Iterator[None]:
    """Show eval progress inside the block (``every``: seconds between plain lines when not a terminal)."""
    saved = dict(_settings)
    _settings.update(on=on, every=every, stream=stream)
    try:
        yield
    finally:
        _settings.update(saved)


class EvalProgress(BuildProgress):
    """``with EvalProgress("features of the reference", 10000) as p: ... p.advance(n)`` (``unit``: images,
    steps). Silent unless :func:`showing` is on, and on ranks other than 0."""

    def __init__(self, what: str, total: int, unit: str = "images"):
        super().__init__(total, interval=_settings["every"], stream=_settings["stream"] or sys.stderr)
        self.what, self.unit = what, unit
        self.enabled = self.enabled and bool(_settings["on"])

    def __enter__(self) -> EvalProgress:
        if not self.enabled:
            return self
        if self.terminal():
            self.start_bar(self.what)
        else:
            self.line(f"eval: {self.what}: {self.total:,} {self.unit}")
            self.lines = 0  # the opening line does not call for a closing one
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        rate = self.rate()
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{rate:,.1f} {self.unit}/s")
        elif self.line_due():
            self.line(f"eval: {self.what}: {self.done:,}/{self.total:,} {self.unit} ({rate:,.1f} {self.unit}/s, "
                      f"ETA {self.eta()})")

    def __exit__(self, *exc: Any) -> bool:
        if self.bar is not None:
            self.bar.stop()
        elif self.enabled and self.lines and exc[0] is None:
            self.line(f"eval: {self.what}: {self.done:,} {self.unit} in {duration(time.perf_counter() - self.began)}")
        return False
