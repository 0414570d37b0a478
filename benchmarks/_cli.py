"""What the benchmark scripts share with the CLI's manners: bad input is one ``error:`` line, a hint, exit 2.

    if __name__ == "__main__":
        run(main)

argparse already answers its own errors (a usage line, exit 2); ``positive`` / ``non_negative`` make it
refuse counts that would otherwise end in a traceback (``--steps 0`` has no median).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def positive(text: str) -> int:
    """An argparse type: an int >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> int:
    """An argparse type: an int >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``; a cgantool input error becomes ``error:`` + ``hint:`` lines and exit code 2."""
    from cgantool.errors import CgantoolError

    try:
        main()
    except CgantoolError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
