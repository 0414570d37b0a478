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
    n: int = typer.Option(64, "-n", "--num", min=1, help="Number of images."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder. Default: RUN/generated/<ckpt>-seed<S>."),
    seed: int = typer.Option(0, "--seed", help="Image i depends only on (seed, i)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1),
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
    device: str = typer.Option("auto", "--device"),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out folder."),
) -> None:
    import math

    from cgantool.checkpoint import load_checkpoint
    from cgantool.engine.loop import resolve_device
    from cgantool.engine.model import load_generator
    from cgantool.errors import CgantoolError
    from cgantool.sampling import check_prompts, class_labels, generate, latents, prompt_conditions, save_grid, save_png

    ckpt = load_checkpoint(checkpoint)
    if prompt is not None and prompts_file is not None:
        raise CgantoolError("--prompt and --prompts-file exclude each other", hint="pass only one of them")
    prompts = check_prompts(ckpt, [prompt] if prompt is not None else None, prompts_file)
    dev = resolve_device(device)
    G = load_generator(ckpt, ema=not no_ema, device=dev)
    n, labels = class_labels(ckpt, n, class_, classes, per_class)
    text = prompt_conditions(ckpt, n, prompts, dev)
    if text is not None:
        labels = text.to("cpu")
    if out is None:
        run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        out = run / "generated" / f"{checkpoint.stem}-seed{seed}"
    if out.exists() and any(out.iterdir()) and not force:
        raise CgantoolError(f"output folder {out} is not empty", hint="choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    z = latents(seed, range(n), G.z_dim, truncation=truncation)
    images = generate(G, z, labels, batch_size=batch_size, device=dev)
    width = max(4, len(str(n - 1)))
    for i, img in enumerate(images):
        save_png(img, out / f"{i:0{width}d}.png")
    if text is not None:  # which image shows which prompt
        from cgantool.checkpoint import atomic_write

        lines = "".join(f"{i:0{width}d}.png\t{prompts[i % len(prompts)]}\n" for i in range(n))
        atomic_write(out / "prompts.tsv", lambda tmp: Path(tmp).write_text(lines))
    if grid:
        by_prompt = text is not None and len(prompts) > 1 and len(prompts) <= 16
        columns = nrow or (len(prompts) if by_prompt else None) or (per_class and len(set(labels.tolist()))) \
            or math.ceil(math.sqrt(n))
        save_grid(images, out / "grid.png", nrow=columns)
    what = "EMA generator" if not no_ema and ckpt.has("G_ema") else "generator"
    err_console.print(f"wrote {n} images{' and grid.png' if grid else ''} to {out} "
                      f"({ckpt.preset}, step {ckpt.step}, {what}, seed {seed})")
