"""Latents and labels with one RNG stream per image: image i depends only on (seed, i), never on batching."""

from __future__ import annotations

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


class ImageCheck:
    """Counts generated images with NaN or inf pixels (``to_uint8`` writes those pixels black); :meth:`warn` says
    so in one line, once for a whole command."""

    def __init__(self) -> None:
        self.images = 0
        self.nonfinite = 0

    def add(self, images: torch.Tensor) -> None:
        """images float [B, 3, H, W], straight from G."""
        self.images += images.shape[0]
        self.nonfinite += int((~torch.isfinite(images)).flatten(1).any(1).sum())

    def warn(self) -> None:
        if self.nonfinite:
            from cgantool.errors import warn

            warn(f"{self.nonfinite} of {self.images} images came out of the generator with NaN or inf pixels "
                 "(written black there): the model is numerically broken at these inputs")


@torch.no_grad()
def generate(
    G: nn.Module,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    check: ImageCheck | None = None,
) -> torch.Tensor:
    """Run G (in eval mode) over z in batches; returns uint8 images [N, 3, R, R] on the CPU.

    ``check`` (optional) counts the images with non-finite pixels."""
    was_training = G.training
    G.eval()
    out = []
    try:
        for start in range(0, z.shape[0], batch_size):
            zb = z[start : start + batch_size].to(device)
            yb = labels[start : start + batch_size].to(device) if labels is not None else None
            fake_img = G(zb, yb)  # [B, 3, R, R] in [-1, 1]
            if check is not None:
                check.add(fake_img)
            out.append(to_uint8(fake_img).cpu())
    finally:
        G.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.uint8)


MAX_SAMPLES = 10_000_000  # images per `sample` call (one PNG each); memory does not grow with the count
MAX_BATCH = 4096  # images per forward pass
GRID_MAX_IMAGES = 1024  # grid.png shows the first images only


def check_counts(n: int, batch_size: int) -> None:
    """Refuse ``sample`` counts past the documented bounds (one line, before anything is loaded or written)."""
    from cgantool.errors import CgantoolError

    if n > MAX_SAMPLES:
        raise CgantoolError(f"{n:,} images is more than one sample call writes (at most {MAX_SAMPLES:,})",
                            hint="run sample several times with different --seed values and --out folders")
    if batch_size > MAX_BATCH:
        raise CgantoolError(f"--batch-size {batch_size:,} is more than {MAX_BATCH} images per forward pass",
                            hint="use e.g. --batch-size 256; the images do not depend on the batch size")


def write_error(path, e: OSError):
    """An OSError while writing outputs → one CgantoolError line."""
    from cgantool.errors import CgantoolError

    return CgantoolError(f"could not write {path}: {e.strerror or e}", hint="check the disk space and --out")


@torch.no_grad()
def sample_to_folder(
    G: nn.Module,
    out,
    *,
    n: int,
    seed: int,
    labels_of,
    batch_size: int,
    device,
    truncation: float | None = None,
    grid_nrow: int | None = None,
    prompts: list[str] | None = None,
) -> int:
    """Write images 0..n-1 as PNGs into ``out``, one batch at a time: memory does not depend on ``n``.

    ``labels_of(idx [B])`` gives the batch's labels (class indices, a TextCond, or None). ``grid_nrow`` (None: no
    grid) writes grid.png of the first ``GRID_MAX_IMAGES`` images; ``prompts`` writes prompts.tsv (image → caption).
    Returns how many images the grid shows (0 without a grid)."""
    from pathlib import Path

    out = Path(out)
    width = max(4, len(str(n - 1)))
    shown = min(n, GRID_MAX_IMAGES) if grid_nrow is not None else 0
    kept: list[torch.Tensor] = []
    check = ImageCheck()
    was_training = G.training
    G.eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))  # [B]
            gen_z = latents(seed, range(start, start + len(idx)), G.z_dim, truncation=truncation).to(device)
            cond = labels_of(idx)
            fake_img = G(gen_z, cond.to(device) if cond is not None else None)  # [B, 3, R, R]
            check.add(fake_img)
            images = to_uint8(fake_img).cpu()
            for i, img in zip(idx.tolist(), images):
                save_png(img, out / f"{i:0{width}d}.png")
            if start < shown:
                kept.append(images[: shown - start])
        if prompts is not None:
            from cgantool.files import atomic_write

            def write_tsv(tmp):
                with open(tmp, "w") as f:
                    for i in range(n):
                        f.write(f"{i:0{width}d}.png\t{prompts[i % len(prompts)]}\n")

            atomic_write(out / "prompts.tsv", write_tsv)
        if shown:
            save_grid(torch.cat(kept), out / "grid.png", nrow=grid_nrow)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        G.train(was_training)
    check.warn()
    return shown


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

    from cgantool.files import atomic_write

    grid = make_grid(enlarge(images_u8), nrow=nrow, padding=2, pad_value=0)  # uint8 [3, H', W']
    img = Image.fromarray(grid.permute(1, 2, 0).numpy())
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def save_png(image_u8: torch.Tensor, path) -> None:
    from pathlib import Path

    from PIL import Image

    from cgantool.files import atomic_write

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
    if value.lstrip("-").isascii() and value.lstrip("-").isdigit():  # ('²'.isdigit() is True, int('²') fails)
        idx = int(value)
        if not 0 <= idx < num:
            raise CgantoolError(f"class {idx} is out of range (the model has {num} classes: 0-{num - 1})",
                                hint=f"classes: {', '.join(names[:20])}{' ...' if num > 20 else ''}")
        return idx
    if value not in names:
        from cgantool.registry import did_you_mean

        raise CgantoolError(f"unknown class '{value}'",
                            hint=f"{did_you_mean(value, names)}classes: {', '.join(names[:20])}{' ...' if num > 20 else ''}")
    return names.index(value)


def class_labels(ckpt, n: int, one: str | None, many: str | None, per_class: int | None):
    """(n, labels_of) for the sample command's class options: ``labels_of(idx [B])`` gives the labels [B] of images
    ``idx`` (or None for a model without classes), so no label list as long as n is ever built.
    Default: class i % C for image i."""
    from cgantool.errors import CgantoolError

    given = [o for o in (one, many, per_class) if o is not None]
    if len(given) > 1:
        raise CgantoolError("--class, --classes and --per-class exclude each other", hint="pass only one of them")
    conditional = ckpt.config.model.conditioning == "class"
    num = len(ckpt.data_info.get("class_names", [])) if conditional else 0
    if one is not None:
        c = resolve_class(ckpt, one)
        return n, lambda idx: torch.full_like(idx, c)
    if many is not None:
        chosen = torch.tensor([resolve_class(ckpt, v) for v in many.split(",") if v.strip()], dtype=torch.int64)
        if not len(chosen):
            raise CgantoolError("--classes is empty", hint="e.g. --classes red_circle,blue_square")
        return n, lambda idx: chosen[idx % len(chosen)]
    if per_class is not None:
        if num == 0:
            resolve_class(ckpt, "0")  # raises the unconditional error
        # row r holds image r of every class: columns are classes
        return per_class * num, lambda idx: idx % num
    return n, (lambda idx: idx % num) if num > 0 else (lambda idx: None)


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


def encode_prompts(ckpt, prompts: list[str], device, allow_download: bool = False) -> "TextCond":  # noqa: F821
    """Prompts → TextCond with the text encoder the checkpoint recorded (``text.encoders.load_text_encoder``).
    Words outside a builtin vocabulary follow the run's ``text.unknown_words``."""
    from cgantool.text.encoders import load_text_encoder

    return load_text_encoder(ckpt, device, allow_download=allow_download).encode(prompts)


def prompt_conditions(ckpt, n: int, prompts: list[str] | None, device, allow_download: bool = False):
    """(TextCond for n images cycling through the prompts, or None for a model that takes no prompt)."""
    from cgantool.errors import CgantoolError

    if ckpt.config.model.conditioning != "text":
        return None
    if not prompts:
        raise CgantoolError(f"this {ckpt.preset} model is text-to-image: it needs a caption",
                            hint='pass --prompt "a large blue square in the center" or --prompts-file FILE')
    cond = encode_prompts(ckpt, prompts, device, allow_download=allow_download)
    return cond[torch.arange(n) % len(prompts)]
