"""``cgantool sample``."""

from __future__ import annotations

from pathlib import Path

import typer

from cgantool.cli import app, err_console, guarded

EXAMPLE = "cgantool sample runs/x/checkpoints/last.safetensors -n 64 --out samples/"


@app.command(help=f"Generate images from a checkpoint: one PNG per image and grid.png.\n\nExample: [cyan]{EXAMPLE}[/]")
@guarded
def sample(
    checkpoint: Path = typer.Argument(..., help="A cgantool .safetensors checkpoint."),
    n: int = typer.Option(64, "-n", "--num", min=1, help="Number of images, at most 10,000,000 per call. They are "
                          "written batch by batch, so memory does not grow with N; grid.png shows the first 1,024."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder. Default: RUN/generated/<ckpt>-seed<S> (-2, -3... when it exists)."),
    seed: int = typer.Option(0, "--seed", help="Image i depends only on (seed, i)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per forward pass (at most 4,096)."),
    class_: str = typer.Option(None, "--class", help="One class (name or index) for every image."),
    classes: str = typer.Option(None, "--classes", help="Comma-separated classes, cycled over the images."),
    per_class: int = typer.Option(None, "--per-class", min=1, help="M images of every class (overrides -n)."),
    prompt: str = typer.Option(None, "--prompt", help="A caption for every image (text-to-image models)."),
    prompts_file: Path = typer.Option(None, "--prompts-file", help="One caption per line, cycled over the images "
                                      "(grid columns = prompts); prompts.tsv says which image shows which."),
    truncation: float = typer.Option(None, "--truncation", min=0.0, help="Resample |z| > T (off by default)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw G instead of its EMA."),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Also write grid.png."),
    nrow: int = typer.Option(None, "--nrow", min=1, help="Images per grid row."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let the checkpoint's hf: text encoder be "
                                         "fetched from the Hugging Face hub (default: local files only)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out folder."),
) -> None:
    from cgantool.api import sample_checkpoint
    from cgantool.errors import CgantoolError, printable

    if prompt is not None and prompts_file is not None:
        raise CgantoolError("--prompt and --prompts-file exclude each other", hint="pass only one of them")
    done = sample_checkpoint(
        checkpoint, out, n=n, seed=seed, batch_size=batch_size, class_name=class_, classes=classes,
        per_class=per_class, prompts=[prompt] if prompt is not None else None, prompts_file=prompts_file,
        truncation=truncation, grid=grid, nrow=nrow, ema=not no_ema, device=device, force=force,
        allow_download=allow_download,
    )
    shown, n = done["grid_images"], done["images"]
    grid_note = "" if not grid else " and grid.png" if shown == n else f" and grid.png (the first {shown})"
    err_console.print(printable(f"wrote {n} images{grid_note} to {done['out']} ({done['preset']}, step {done['step']}, "
                                f"{done['generator']}, seed {seed})"), markup=False)
