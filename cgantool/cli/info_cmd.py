"""``cgantool info``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cgantool.cli import app, guarded


@app.command(help="Describe a checkpoint: preset, step, resolution, classes, data, metrics, config.\n\n"
             "Example: [cyan]cgantool info runs/x/checkpoints/last.safetensors --json[/]")
@guarded
def info(
    checkpoint: Path = typer.Argument(..., help="A cgantool .safetensors checkpoint."),
    json_: bool = typer.Option(False, "--json", help="Print JSON to stdout."),
) -> None:
    from cgantool.checkpoint import load_checkpoint
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
    if json_:
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.panel import Panel

    classes = doc["class_names"]
    lines = [
        f"[bold]preset[/]       {ckpt.preset}",
        f"[bold]step[/]         {ckpt.step} of {ckpt.config.train.steps}",
        f"[bold]resolution[/]   {doc['resolution']} px",
        f"[bold]conditioning[/] {doc['conditioning']}" + (f" ({len(classes)} classes: {', '.join(classes[:8])}{' ...' if len(classes) > 8 else ''})" if doc["conditioning"] == "class" else "")
        + (_text_summary(ckpt.data_info.get("text", {})) if doc["conditioning"] == "text" else ""),
        f"[bold]data[/]         {ckpt.data_info.get('source')} ({ckpt.data_info.get('num_images')} images)",
        f"[bold]EMA[/]          {'yes' if doc['ema'] else 'no'}",
        f"[bold]metrics[/]      " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ckpt.metrics.items()),
        f"[bold]version[/]      cgantool {ckpt.version}",
    ]
    Console().print(Panel("\n".join(lines), title=str(checkpoint), expand=False), highlight=False)


def _text_summary(text: dict) -> str:
    """' (text encoder builtin, 256-d, 33-word vocabulary)' for the info panel."""
    vocab = f", {len(text['vocab'])}-word vocabulary" if "vocab" in text else ""
    return f" (text encoder {text.get('encoder', '?')}, {text.get('dim', '?')}-d{vocab})"
