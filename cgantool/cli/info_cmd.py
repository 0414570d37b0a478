"""``cgantool info``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded
from cgantool.cli.json_out import HELP as JSON_HELP


@app.command(help="Describe a checkpoint: preset, step, resolution, classes, data, metrics, config.\n\n"
             "Example: [cyan]cgantool info runs/x/checkpoints/last.safetensors --json -[/]")
@guarded
def info(
    checkpoint: Path = typer.Argument(..., help="A cgantool .safetensors checkpoint."),
    json_out: str = typer.Option(None, "--json", metavar="FILE", help=JSON_HELP),
) -> None:
    from cgantool.cli import json_out as jo

    jo.check_target(json_out)
    with jo.errors_to(json_out):
        _info(checkpoint, json_out)


def _info(checkpoint: Path, json_out: str | None) -> None:
    from cgantool.checkpoint import load_checkpoint
    from cgantool.cli import json_out as jo
    from cgantool.config import config_to_dict

    ckpt = load_checkpoint(checkpoint)
    doc = {
        "checkpoint": str(checkpoint),
        "preset": ckpt.preset,
        "step": ckpt.step,
        "cgantool_version": ckpt.version,
        "resolution": ckpt.data_info.get("resolution"),
        "conditioning": ckpt.config.model.conditioning,
        "class_names": ckpt.data_info.get("class_names", []),
        "data": ckpt.data_info,
        "ema": ckpt.has("G_ema"),
        "metrics": ckpt.metrics,
        "config": config_to_dict(ckpt.config),
    }
    jo.write(doc, json_out)
    from rich.panel import Panel

    classes = doc["class_names"]
    info = ckpt.data_info
    lines = [
        f"[bold]preset[/]       {_safe(ckpt.preset)}",
        f"[bold]step[/]         {ckpt.step} of {ckpt.config.train.steps}",
        f"[bold]resolution[/]   {doc['resolution']} px",
        f"[bold]conditioning[/] {doc['conditioning']}" + (f" ({len(classes)} classes: {_safe(', '.join(classes[:8]))}{' ...' if len(classes) > 8 else ''})" if doc["conditioning"] == "class" else "")
        + (_text_summary(info.get("text", {})) if doc["conditioning"] == "text" else ""),
        f"[bold]data[/]         {_safe(info.get('source'))} ({_safe(info.get('num_images'))} images)",
        f"[bold]EMA[/]          {'yes' if doc['ema'] else 'no'}",
        "[bold]metrics[/]      " + _safe(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in ckpt.metrics.items())),
        f"[bold]version[/]      cgantool {_safe(ckpt.version)}",
    ]
    console = err_console if jo.to_stdout(json_out) else _stdout()  # --json -: stdout holds only the JSON
    console.print(Panel("\n".join(lines), title=_safe(str(checkpoint)), expand=False), highlight=False)


def _stdout():
    from rich.console import Console

    return Console()


def _safe(value, limit: int = 200) -> str:
    """Text that came from the file, shown literally: rich markup escaped, control characters (ANSI escapes) as
    ``\\xNN`` and newlines as ``\\n``, cut to ``limit`` characters so edited metadata cannot flood the terminal
    (``--json`` prints it all)."""
    from rich.markup import escape

    from cgantool.errors import printable

    text = printable(str(value)).replace("\n", "\\n").replace("\t", " ")  # one field, one line
    return escape(text if len(text) <= limit else text[: limit - 3] + "...")


def _text_summary(text: dict) -> str:
    """' (text encoder builtin, 256-d, 33-word vocabulary)' for the info panel."""
    vocab = f", {len(text['vocab'])}-word vocabulary" if isinstance(text.get("vocab"), list) else ""
    return _safe(f" (text encoder {text.get('encoder', '?')}, {text.get('dim', '?')}-d{vocab})")
