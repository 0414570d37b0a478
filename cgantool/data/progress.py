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
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(
                TextColumn("[bold]caching images"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("cache", total=self.total, rate="")
        return self

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.began, 1e-9)

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{self.rate():,.0f} img/s")
        elif time.perf_counter() - self.line_time >= self.interval:
            self.line_time = time.perf_counter()
            rate = self.rate()
            eta = duration((self.total - self.done) / rate) if rate > 0 else "?"
            self.line(f"caching {self.done:,}/{self.total:,} images ({rate:,.0f} img/s, ETA {eta})")

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
