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
    out: Path = typer.Option(None, "--out", "-o", help="Output folder. Default: RUN/generated/<ckpt>-seed<S>."),
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
    device: str = typer.Option("auto", "--device"),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out folder."),
) -> None:
    import math

    from cgantool.checkpoint import load_checkpoint
    from cgantool.engine.loop import resolve_device
    from cgantool.engine.model import load_generator
    from cgantool.errors import CgantoolError, printable
    from cgantool.sampling import (GRID_MAX_IMAGES, check_counts, check_output, check_prompts, class_labels,
                                   prompt_conditions, sample_to_folder)

    if prompt is not None and prompts_file is not None:
        raise CgantoolError("--prompt and --prompts-file exclude each other", hint="pass only one of them")
    check_counts(n, batch_size)
    ckpt = load_checkpoint(checkpoint)  # metadata only
    if out is None:
        run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        out = run / "generated" / f"{checkpoint.stem}-seed{seed}"
    check_output(out, folder=True, force=force)  # before any compute
    prompts = check_prompts(ckpt, [prompt] if prompt is not None else None, prompts_file)
    n, labels_of = class_labels(ckpt, n, class_, classes, per_class)
    check_counts(n, batch_size)  # --per-class M gives M x classes
    dev = resolve_device(device)
    G = load_generator(ckpt, ema=not no_ema, device=dev)
    text = prompt_conditions(ckpt, len(prompts) if prompts else 0, prompts, dev,
                             allow_download=allow_download)  # [K] captions, or None
    if text is not None:
        text = text.to("cpu")
        labels_of = lambda idx: text[idx % len(text)]  # noqa: E731  image i shows caption i % K
    shown = min(n, GRID_MAX_IMAGES)
    columns = None
    if grid:
        by_prompt = text is not None and len(prompts) > 1 and len(prompts) <= 16
        columns = nrow or (len(prompts) if by_prompt else None) or (per_class and len(ckpt.data_info["class_names"])) \
            or math.ceil(math.sqrt(shown))
    shown = sample_to_folder(G, out, n=n, seed=seed, labels_of=labels_of, batch_size=batch_size, device=dev,
                             truncation=truncation, grid_nrow=columns, prompts=prompts if text is not None else None)
    what = "EMA generator" if not no_ema and ckpt.has("G_ema") else "generator"
    grid_note = "" if not grid else " and grid.png" if shown == n else f" and grid.png (the first {shown})"
    err_console.print(printable(f"wrote {n} images{grid_note} to {out} ({ckpt.preset}, step {ckpt.step}, {what}, "
                                f"seed {seed})"), markup=False)
