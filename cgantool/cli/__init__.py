"""The ``cgantool`` command line: thin Typer commands over importable functions, one error boundary.

torch is imported inside the commands, so ``--help`` and usage errors answer fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from cgantool import __version__

err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # a line stays one line in a log file

app = typer.Typer(
    name="cgantool",
    help="Train, sample, evaluate and interpolate contrastive GANs (InfoMax-GAN, ContraGAN, DualContrast, XMC-GAN).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, hint: str | None = None, code: int = 2) -> typer.Exit:
    """Print one ``error:`` line (and a ``hint:`` line) to stderr; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}")
    return typer.Exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The error boundary: cgantool errors become one line + hint and their exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cgantool.errors import CgantoolError

        try:
            return fn(*args, **kwargs)
        except CgantoolError as e:  # usage errors exit 2; a missed --max-fid / --min-is (GateFailed) exits 1
            raise fail(_escape(e.message), _escape(e.hint) if e.hint else None, code=e.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    from cgantool.errors import printable

    return escape(printable(text))


def _version_callback(value: bool) -> None:
    if value:
        print(f"cgantool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
) -> None:
    """cgantool: contrastive GANs, one engine, four methods."""


def _register() -> None:
    from cgantool.cli import (  # noqa: F401
        config_cmd,
        data_cmd,
        eval_cmd,
        info_cmd,
        interpolate_cmd,
        presets_cmd,
        report_cmd,
        sample_cmd,
        train_cmd,
    )


_register()


def main() -> None:
    app(prog_name="cgantool")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
