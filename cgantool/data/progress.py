"""What a cache build shows on stderr: a rich bar (images/s, ETA) in a terminal, a plain line every ~10 s when
stderr is a file or a pipe, nothing on ranks other than 0."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def duration(seconds: float) -> str:
    """'1h02m', '1m29s', '42s' (the ETA of cache builds and of training progress lines)."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class BuildProgress:
    """``with BuildProgress(total) as p: ... p.advance(n)``."""

    def __init__(self, total: int, interval: float = 10.0, stream: Any = None):
        self.total, self.interval, self.done = total, interval, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = os.environ.get("RANK", "0") == "0"
        self.bar: Any = None
        self.task: Any = None
        self.began = self.line_time = time.perf_counter()
        self.lines = 0

    def __enter__(self) -> BuildProgress:
        if self.enabled and self.terminal():
            self.start_bar("caching images")
        return self

    def terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def start_bar(self, title: str) -> None:
        """The rich bar: ``title``, bar, done/total, %, a free text field ``rate``, time remaining."""
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(
            TextColumn(f"[bold]{escape(title)}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=Console(file=self.stream), transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("progress", total=self.total, rate="")

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.began, 1e-9)

    def eta(self) -> str:
        rate = self.rate()
        return duration((self.total - self.done) / rate) if rate > 0 else "?"

    def line_due(self) -> bool:
        """True (and the clock restarted) when a plain line is due: ``interval`` seconds since the last one."""
        now = time.perf_counter()
        if now - self.line_time < self.interval:
            return False
        self.line_time = now
        return True

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{self.rate():,.0f} img/s")
        elif self.line_due():
            self.line(f"caching {self.done:,}/{self.total:,} images ({self.rate():,.0f} img/s, ETA {self.eta()})")

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self.lines += 1

    def __exit__(self, *exc: Any) -> bool:
        if self.bar is not None:
            self.bar.stop()
        elif self.enabled and self.lines and exc[0] is None:
            self.line(f"cached {self.done:,} images in {duration(time.perf_counter() - self.began)}"
                      f" ({self.rate():,.0f} img/s)")
        return False
