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
    out: Path = typer.Option(Path("walk.gif"), "--out", "-o", help="FILE.gif, FILE.png or a folder of frames."),
    fps: int = typer.Option(12, "--fps", min=1),
    loop: bool = typer.Option(False, "--loop", help="Return to the first key so the GIF loops seamlessly."),
    no_ema: bool = typer.Option(False, "--no-ema"),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let the checkpoint's hf: text encoder be "
                                         "fetched from the Hugging Face hub (default: local files only)."),
    device: str = typer.Option("auto", "--device"),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    import torch

    from cgantool.checkpoint import load_checkpoint
    from cgantool.engine.loop import resolve_device
    from cgantool.engine.model import load_generator
    from cgantool.errors import CgantoolError, printable
    from cgantool.interpolate import (OUTPUT_SUFFIXES, interpolate_keys, parse_seeds, prompt_walk, walk_length,
                                      walk_positions, write_frames)
    from cgantool.sampling import (ImageCheck, check_output, check_prompts, generate, latents, prompt_conditions,
                                   resolve_class)

    if seeds is not None and classes is not None:
        raise CgantoolError("--seeds and --classes exclude each other", hint="walk either between seeds or between classes")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CgantoolError(f"unsupported output '{out}'", hint="use FILE.gif, FILE.png or a folder")
    check_output(out, folder=not out.suffix, force=force)  # before any compute
    if more_prompts and not prompts:
        raise CgantoolError(f"unexpected argument '{more_prompts[0]}'", hint='captions go after --prompts: --prompts "a" "b"')
    prompts = [*(prompts or []), *(more_prompts or [])] or None
    seed_list = parse_seeds(seeds or "0,1")
    ckpt = load_checkpoint(checkpoint)
    check_prompts(ckpt, prompts, None)
    text_model = ckpt.config.model.conditioning == "text"
    if text_model and (classes is not None or class_ is not None):
        resolve_class(ckpt, "0")  # raises: not class-conditional
    class_keys = [resolve_class(ckpt, c) for c in classes.split(",") if c.strip()] if classes is not None else None
    if text_model and seeds is None:
        num_keys = len(prompts or [])
    else:
        num_keys = len(class_keys) if class_keys is not None else len(seed_list)
    if not (text_model and seeds is None and num_keys < 2):  # (a prompt walk explains its own two-caption minimum)
        walk_length(num_keys, frames, loop, rows)  # bounds the work before anything is loaded
    dev = resolve_device(device)
    G = load_generator(ckpt, ema=not no_ema, device=dev)
    num_classes = G.num_classes
    check = ImageCheck()
    text = None
    if text_model:
        text = prompt_conditions(ckpt, len(prompts or []), prompts, dev, allow_download=allow_download).to("cpu")
    if text is not None and seeds is None:
        if len(prompts) < 2:
            raise CgantoolError("a prompt walk needs at least two captions",
                                hint='--prompts "a red circle" "a blue square", or add --seeds 1,2 to walk z at one caption')
        positions = walk_positions(len(prompts), frames, loop)
        z = latents(seed, range(rows), G.z_dim)  # [R, D], fixed
        images = prompt_walk(G, z, text, positions, dev, check=check)
        T = len(positions)
    elif classes is not None:
        keys = class_keys
        positions = walk_positions(len(keys), frames, loop)
        onehot = torch.eye(num_classes)[keys]  # [K, C]
        soft = torch.stack([onehot[i] * (1 - t) + onehot[j] * t for i, j, t in positions])  # [T, C]
        z = latents(seed, range(rows), G.z_dim)  # [R, D], fixed
        T = soft.shape[0]
        z_all = z.unsqueeze(0).expand(T, rows, -1).reshape(T * rows, -1)
        y_all = soft.unsqueeze(1).expand(T, rows, -1).reshape(T * rows, -1)
    else:
        keys_z = torch.stack([latents(s, range(rows), G.z_dim) for s in seed_list])  # [K, R, D]
        walk = interpolate_keys(keys_z, frames, method, loop)  # [T, R, D]
        T = walk.shape[0]
        z_all = walk.reshape(T * rows, -1)
        if text is not None:
            y_all = text[torch.zeros(T * rows, dtype=torch.int64)]  # the first caption, held fixed
        elif num_classes:
            fixed = resolve_class(ckpt, class_) if class_ is not None else None
            per_row = torch.tensor([fixed if fixed is not None else r % num_classes for r in range(rows)])
            y_all = per_row.repeat(T)
        else:
            if class_ is not None:
                resolve_class(ckpt, class_)  # raises: unconditional
            y_all = None
    if text is None or seeds is not None:
        images = generate(G, z_all, y_all, batch_size=64, device=dev, check=check)
    check.warn()
    frames_u8 = images.view(T, rows, *images.shape[1:])
    what = write_frames(frames_u8, out, fps)
    err_console.print(printable(f"wrote {out}: {what}"), markup=False)
