"""Latents and labels with one RNG stream per image: image i depends only on (seed, i), never on batching."""

from __future__ import annotations

import math

import torch
from torch import nn

from cgantool.data.batches import to_uint8

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant: spreads (seed, i) over generator seeds


def image_seed(seed: int, index: int) -> int:
    return (seed * _MIX + index) % (2**63 - 1)


def latents(seed: int, indices: range | list[int], z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """z [len(indices), z_dim] ~ N(0, I), each row from its own CPU generator (device independent).

    ``truncation`` T (BigGAN's trick): entries with |z| > T are redrawn from the same stream until inside.
    """
    rows = []
    for i in indices:
        g = torch.Generator().manual_seed(image_seed(seed, i))
        z = torch.randn(z_dim, generator=g)
        if truncation is not None and truncation > 0:
            for _ in range(1000):
                out = z.abs() > truncation
                if not out.any():
                    break
                z = torch.where(out, torch.randn(z_dim, generator=g), z)
            else:
                z = z.clamp(-truncation, truncation)
        rows.append(z)
    return torch.stack(rows) if rows else torch.empty(0, z_dim)


@torch.no_grad()
def generate(
    G: nn.Module,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Run G (in eval mode) over z in batches; returns uint8 images [N, 3, R, R] on the CPU."""
    was_training = G.training
    G.eval()
    out = []
    try:
        for start in range(0, z.shape[0], batch_size):
            zb = z[start : start + batch_size].to(device)
            yb = labels[start : start + batch_size].to(device) if labels is not None else None
            out.append(to_uint8(G(zb, yb)).cpu())
    finally:
        G.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.uint8)


def default_labels(n: int, num_classes: int) -> torch.Tensor | None:
    """Class i % C for image i (a grid with C columns shows one class per column); None if unconditional."""
    return torch.arange(n) % num_classes if num_classes > 0 else None


GRID_MIN_TILE = 64  # grids show images smaller than this enlarged (nearest neighbour) so 16 px samples are visible


def grid_scale(size: int) -> int:
    """The integer factor a grid enlarges ``size``-pixel images by: 4 at 16 px, 2 at 32 px, 1 from 64 px."""
    return max(1, GRID_MIN_TILE // size)


def enlarge(images_u8: torch.Tensor) -> torch.Tensor:
    """Images [..., H, W] with every pixel repeated ``grid_scale(W)`` times along both axes."""
    k = grid_scale(images_u8.shape[-1])
    return images_u8.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) if k > 1 else images_u8


def save_grid(images_u8: torch.Tensor, path, nrow: int) -> None:
    """Write uint8 images [N, 3, H, W] as one PNG grid (2 px padding), atomically.

    Images under 64 px are enlarged by ``grid_scale`` (pixel repetition, no smoothing) so a grid of 16 px
    samples can be looked at; the per-image PNGs keep the model's resolution.
    """
    from pathlib import Path

    from PIL import Image
    from torchvision.utils import make_grid

    from cgantool.checkpoint import atomic_write

    grid = make_grid(enlarge(images_u8), nrow=nrow, padding=2, pad_value=0)  # uint8 [3, H', W']
    img = Image.fromarray(grid.permute(1, 2, 0).numpy())
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def save_png(image_u8: torch.Tensor, path) -> None:
    from pathlib import Path

    from PIL import Image

    from cgantool.checkpoint import atomic_write

    img = Image.fromarray(image_u8.permute(1, 2, 0).numpy())
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def resolve_class(ckpt, value: str) -> int:
    """A class given by name (``red_circle``) or index (``3``) → its index; CgantoolError otherwise."""
    from cgantool.errors import CgantoolError

    names = ckpt.data_info.get("class_names", [])
    num = len(names) if ckpt.config.model.conditioning == "class" else 0
    if num == 0:
        kind = "text-to-image" if ckpt.config.model.conditioning == "text" else "unconditional"
        raise CgantoolError(f"this {ckpt.preset} model is {kind}: it takes no class",
                            hint="drop --class/--classes/--per-class" + (" and pass --prompt" if kind == "text-to-image" else ""))
    value = value.strip()
    if value.lstrip("-").isdigit():
        idx = int(value)
        if not 0 <= idx < num:
            raise CgantoolError(f"class {idx} is out of range (the model has {num} classes: 0-{num - 1})",
                                hint=f"classes: {', '.join(names[:20])}{' ...' if num > 20 else ''}")
        return idx
    if value not in names:
        import difflib

        close = difflib.get_close_matches(value, names, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise CgantoolError(f"unknown class '{value}'",
                            hint=f"{guess}classes: {', '.join(names[:20])}{' ...' if num > 20 else ''}")
    return names.index(value)


def class_labels(ckpt, n: int, one: str | None, many: str | None, per_class: int | None):
    """(n, labels [n] or None) for the sample command's class options; default: class i % C."""
    from cgantool.errors import CgantoolError

    given = [o for o in (one, many, per_class) if o is not None]
    if len(given) > 1:
        raise CgantoolError("--class, --classes and --per-class exclude each other", hint="pass only one of them")
    conditional = ckpt.config.model.conditioning == "class"
    num = len(ckpt.data_info.get("class_names", [])) if conditional else 0
    if one is not None:
        return n, torch.full((n,), resolve_class(ckpt, one), dtype=torch.int64)
    if many is not None:
        idx = [resolve_class(ckpt, v) for v in many.split(",") if v.strip()]
        if not idx:
            raise CgantoolError("--classes is empty", hint="e.g. --classes red_circle,blue_square")
        return n, torch.tensor(idx, dtype=torch.int64).repeat(math.ceil(n / len(idx)))[:n]
    if per_class is not None:
        if num == 0:
            resolve_class(ckpt, "0")  # raises the unconditional error
        # row r holds image r of every class: columns are classes
        return per_class * num, torch.arange(num).repeat(per_class)
    return n, default_labels(n, num)


def check_prompts(ckpt, prompts: list[str] | None, prompts_file) -> list[str] | None:
    """Validate --prompt/--prompts/--prompts-file against the checkpoint; returns the prompts (or None)."""
    from pathlib import Path

    from cgantool.errors import CgantoolError

    if prompts is None and prompts_file is None:
        return None
    if prompts_file is not None:
        path = Path(prompts_file)
        if not path.is_file():
            raise CgantoolError(f"prompts file not found: {path}", hint="one caption per line")
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts or any(not p.strip() for p in prompts):
        raise CgantoolError("empty prompt", hint='e.g. --prompt "a large blue square in the center"')
    if ckpt.config.model.conditioning != "text":
        raise CgantoolError(
            f"this {ckpt.preset} model is not text-conditional ({ckpt.config.model.conditioning}): it takes no prompt",
            hint="prompts need a text-to-image checkpoint; use --class for class-conditional models",
        )
    return prompts


def encode_prompts(ckpt, prompts: list[str], device) -> "TextCond":  # noqa: F821
    """Prompts → TextCond with the text encoder the checkpoint recorded (its weights travel in the file for
    the builtin encoder). Words outside a builtin vocabulary follow the run's ``text.unknown_words``."""
    from cgantool.text.encoders import from_info

    info = ckpt.data_info.get("text")
    if info is None:
        from cgantool.errors import CheckpointError

        raise CheckpointError("this text-to-image checkpoint lacks its text encoder description",
                              hint="it was not written by cgantool train --preset xmcgan")
    encoder = from_info(info, ckpt.tensors("text_encoder") if ckpt.has("text_encoder") else None).to(device)
    return encoder.encode(prompts)


def prompt_conditions(ckpt, n: int, prompts: list[str] | None, device):
    """(TextCond for n images cycling through the prompts, or None for a model that takes no prompt)."""
    from cgantool.errors import CgantoolError

    if ckpt.config.model.conditioning != "text":
        return None
    if not prompts:
        raise CgantoolError(f"this {ckpt.preset} model is text-to-image: it needs a caption",
                            hint='pass --prompt "a large blue square in the center" or --prompts-file FILE')
    cond = encode_prompts(ckpt, prompts, device)
    return cond[torch.arange(n) % len(prompts)]
