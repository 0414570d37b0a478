"""``cgantool interpolate``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded

EXAMPLE = "cgantool interpolate runs/x/checkpoints/last.safetensors --seeds 1,2,3 --frames 24 --loop --out walk.gif"


@app.command(help="Walk between seeds (latent space), classes or captions and write a GIF, a PNG strip or frames.\n\n"
             f"Example: [cyan]{EXAMPLE}[/]")
@guarded
def interpolate(
    checkpoint: Path = typer.Argument(..., help="A cgantool .safetensors checkpoint."),
    more_prompts: list[str] = typer.Argument(None, metavar="[PROMPT]...", help="Further captions after --prompts."),
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated seeds walked in order (default 0,1)."),
    classes: str = typer.Option(None, "--classes", help="Comma-separated classes to morph between at fixed z."),
    class_: str = typer.Option(None, "--class", help="Class held fixed during a seed walk (conditional models)."),
    prompts: list[str] = typer.Option(None, "--prompts", help='Captions to morph between at fixed z (text-to-image: '
                                      '--prompts "a red circle" "a blue square"); with --seeds, the caption held fixed.'),
    seed: int = typer.Option(0, "--seed", help="The z held fixed during a class or prompt walk."),
    frames: int = typer.Option(16, "--frames", help="Frames per segment between two keys. A walk holds at most "
                               "10,000 images (frames x rows), as a GIF or strip is assembled in memory."),
    method: str = typer.Option("slerp", "--method", help="slerp (Gaussian latents) or lerp."),
    rows: int = typer.Option(1, "--rows", min=1, help="Independent walks stacked (row r uses image r of each seed)."),
    out: Path = typer.Option(None, "--out", "-o", help="FILE.gif, FILE.png or a folder of frames. Default: "
                             "RUN/generated/<ckpt>-walk.gif (-2, -3... when it exists)."),
    fps: int = typer.Option(12, "--fps", min=1, help="Frames per second of the GIF."),
    loop: bool = typer.Option(False, "--loop", help="Return to the first key so the GIF loops seamlessly."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw G instead of its EMA."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let the checkpoint's hf: text encoder be "
                                         "fetched from the Hugging Face hub (default: local files only)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    from cgantool.api import interpolate_checkpoint
    from cgantool.errors import CgantoolError, printable

    if more_prompts and not prompts:
        raise CgantoolError(f"unexpected argument '{more_prompts[0]}'", hint='captions go after --prompts: --prompts "a" "b"')
    what = interpolate_checkpoint(
        checkpoint, out, seeds=seeds, classes=classes, class_name=class_,
        prompts=[*(prompts or []), *(more_prompts or [])] or None, seed=seed, frames=frames, method=method, rows=rows,
        loop=loop, fps=fps, ema=not no_ema, device=device, force=force, allow_download=allow_download,
    )
    err_console.print(printable(f"wrote {what}"), markup=False)
