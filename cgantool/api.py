"""What the commands do, as functions a notebook or script imports (the CLI only parses options and prints).

    from cgantool.api import sample_checkpoint, evaluate_checkpoint, interpolate_checkpoint
    sample_checkpoint("runs/x/checkpoints/last.safetensors", "samples/", n=16, class_name="red_circle")

Every function checks its inputs and outputs before any compute and raises ``cgantool.errors.CgantoolError``
(one message and a hint) for anything a user can get wrong. None of them imports the training loop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cgantool.checkpoint import load_checkpoint
from cgantool.device import resolve_device
from cgantool.engine.model import load_generator
from cgantool.errors import CgantoolError
from cgantool.eval.evaluate import evaluate_checkpoint, evaluate_folders
from cgantool.text.encoders import load_text_encoder

__all__ = ["evaluate_checkpoint", "evaluate_folders", "interpolate_checkpoint", "load_checkpoint", "load_generator",
           "load_text_encoder", "sample_checkpoint"]


def default_output(checkpoint: Path, name: str) -> Path:
    """RUN/generated/<checkpoint name>-<name> (beside the checkpoint when it is not in a run); when that exists and
    is not empty, the first free ``…-2``, ``…-3``: a second call never fails and never overwrites the first."""
    checkpoint = Path(checkpoint)
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    base = run / "generated" / f"{checkpoint.stem}-{name}"
    stem, suffix = base.name.removesuffix(base.suffix), base.suffix
    path, n = base, 1
    while path.exists() and (path.is_file() or any(path.iterdir())):
        n += 1
        path = base.with_name(f"{stem}-{n}{suffix}")
    return path


def sample_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    n: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    class_name: str | None = None,
    classes: str | None = None,
    per_class: int | None = None,
    prompts: list[str] | None = None,
    prompts_file: str | Path | None = None,
    truncation: float | None = None,
    grid: bool = True,
    nrow: int | None = None,
    ema: bool = True,
    device: str = "auto",
    force: bool = False,
    allow_download: bool = False,
) -> dict[str, Any]:
    """Write images 0..n-1 of ``checkpoint`` as PNGs into ``out`` (and grid.png), batch by batch: image i depends
    only on (seed, i). Classes by name or index (``class_name``, ``classes`` 'a,b' cycled, ``per_class`` M of
    each); captions for a text-to-image model (``prompts`` cycled, or ``prompts_file``). Returns what was written."""
    from cgantool.files import check_output
    from cgantool.sampling import (GRID_MAX_IMAGES, check_counts, check_prompts, class_labels, prompt_conditions,
                                   sample_to_folder)

    checkpoint = Path(checkpoint)
    check_counts(n, batch_size)
    ckpt = load_checkpoint(checkpoint)  # metadata only
    out = Path(out) if out is not None else default_output(checkpoint, f"seed{seed}")
    check_output(out, folder=True, force=force)  # before any compute
    prompts = check_prompts(ckpt, prompts, prompts_file)
    n, labels_of = class_labels(ckpt, n, class_name, classes, per_class)
    check_counts(n, batch_size)  # per_class M gives M x classes
    dev = resolve_device(device)
    G = load_generator(ckpt, ema=ema, device=dev)
    text = prompt_conditions(ckpt, len(prompts) if prompts else 0, prompts, dev, allow_download=allow_download)
    if text is not None:  # [K] captions: image i shows caption i % K
        text = text.to("cpu")
        labels_of = lambda idx: text[idx % len(text)]  # noqa: E731
    columns = None
    if grid:
        by_prompt = text is not None and 1 < len(prompts) <= 16
        columns = nrow or (len(prompts) if by_prompt else None) or (per_class and len(ckpt.data_info["class_names"])) \
            or math.ceil(math.sqrt(min(n, GRID_MAX_IMAGES)))
    shown = sample_to_folder(G, out, n=n, seed=seed, labels_of=labels_of, batch_size=batch_size, device=dev,
                             truncation=truncation, grid_nrow=columns, prompts=prompts if text is not None else None)
    return {"out": out, "images": n, "grid_images": shown, "preset": ckpt.preset, "step": ckpt.step,
            "generator": "EMA generator" if ema and ckpt.has("G_ema") else "generator", "seed": seed}


def interpolate_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    seeds: str | None = None,
    classes: str | None = None,
    class_name: str | None = None,
    prompts: list[str] | None = None,
    seed: int = 0,
    frames: int = 16,
    method: str = "slerp",
    rows: int = 1,
    loop: bool = False,
    fps: int = 12,
    ema: bool = True,
    device: str = "auto",
    force: bool = False,
    allow_download: bool = False,
) -> str:
    """A walk between seeds ('1,2,3'), classes ('a,b' at fixed z) or captions (``prompts`` at fixed z), written as
    FILE.gif, a FILE.png strip or a folder of frames; ``rows`` independent walks stacked. Returns what was written."""
    from cgantool.interpolate import OUTPUT_SUFFIXES, parse_seeds, walk_images, walk_length, write_frames
    from cgantool.files import check_output
    from cgantool.sampling import ImageCheck, check_prompts, prompt_conditions, resolve_class

    if out is None:  # RUN/generated/<ckpt>-walk.gif, as sample writes into the run
        out = default_output(Path(checkpoint), "walk.gif")
    out = Path(out)
    if seeds is not None and classes is not None:
        raise CgantoolError("--seeds and --classes exclude each other", hint="walk either between seeds or between classes")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CgantoolError(f"unsupported output '{out}'", hint="use FILE.gif, FILE.png or a folder")
    check_output(out, folder=not out.suffix, force=force)  # before any compute
    seed_list = parse_seeds(seeds or "0,1")
    ckpt = load_checkpoint(checkpoint)
    check_prompts(ckpt, prompts, None)
    text_model = ckpt.config.model.conditioning == "text"
    if text_model and (classes is not None or class_name is not None):
        resolve_class(ckpt, "0")  # raises: not class-conditional
    class_keys = [resolve_class(ckpt, c) for c in classes.split(",") if c.strip()] if classes is not None else None
    fixed_class = resolve_class(ckpt, class_name) if class_name is not None else None  # (raises when unconditional)
    prompt_walk = text_model and seeds is None
    num_keys = len(prompts or []) if prompt_walk else len(class_keys) if class_keys is not None else len(seed_list)
    if prompt_walk and num_keys < 2:
        if not prompts:
            prompt_conditions(ckpt, 0, None, "cpu")  # raises: the model needs a caption
        raise CgantoolError("a prompt walk needs at least two captions",
                            hint='--prompts "a red circle" "a blue square", or add --seeds 1,2 to walk z at one caption')
    walk_length(num_keys, frames, loop, rows)  # bounds the work before anything is loaded
    dev = resolve_device(device)
    G = load_generator(ckpt, ema=ema, device=dev)
    text = None
    if text_model:
        text = prompt_conditions(ckpt, len(prompts or []), prompts, dev, allow_download=allow_download).to("cpu")
    check = ImageCheck()
    frames_u8 = walk_images(G, dev, seed=seed, rows=rows, frames=frames, loop=loop, method=method, check=check,
                            text=text, by_prompt=prompt_walk, class_keys=class_keys, seeds=seed_list,
                            fixed_class=fixed_class)
    check.warn()
    return f"{out}: {write_frames(frames_u8, out, fps)}"
