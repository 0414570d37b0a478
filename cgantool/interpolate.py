"""Walks through latent space (slerp / lerp between seeds) and between classes, written as GIF, PNG or frames."""

from __future__ import annotations

from pathlib import Path

import torch

from cgantool.errors import CgantoolError


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of rows of a, b [..., D] (falls back to lerp for (anti)parallel rows).

    slerp(a, b, 0) = a and slerp(a, b, 1) = b exactly.
    """
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum(-1, keepdim=True) / (a64.norm(dim=-1, keepdim=True) * b64.norm(dim=-1, keepdim=True)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    out = torch.where(
        so.abs() < 1e-6,
        (1 - t) * a64 + t * b64,
        torch.sin((1 - t) * omega) / so * a64 + torch.sin(t * omega) / so * b64,
    )
    return out.to(a.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t if 0.0 < t < 1.0 else (a.clone() if t == 0.0 else b.clone())


MAX_WALK_IMAGES = 10_000  # frames x rows of one walk: a GIF or strip is assembled in memory
OUTPUT_SUFFIXES = (".gif", ".png", "")  # animated GIF, PNG strip, folder of frames


def parse_seeds(text: str) -> list[int]:
    """``'1,2,3'`` → [1, 2, 3]; anything else is one CgantoolError."""
    seeds = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise CgantoolError(f"--seeds takes comma-separated integers, not '{part.strip()}'",
                                hint="e.g. --seeds 1,2,3") from None
    return seeds


def walk_length(num_keys: int, frames: int, loop: bool, rows: int = 1) -> int:
    """Frames of a walk over ``num_keys`` keys (``frames`` per segment, the last key unless looping); refuses walks
    of under two keys or frames, and walks of more than ``MAX_WALK_IMAGES`` images (frames x rows)."""
    if num_keys < 2:
        raise CgantoolError("an interpolation needs at least two keys", hint="e.g. --seeds 1,2 or --classes a,b")
    if frames < 2:
        raise CgantoolError("--frames must be at least 2", hint="e.g. --frames 24")
    T = (num_keys if loop else num_keys - 1) * frames + (0 if loop else 1)
    if T * rows > MAX_WALK_IMAGES:
        raise CgantoolError(f"this walk is {T:,} frames x {rows} row(s) = {T * rows:,} images; at most "
                            f"{MAX_WALK_IMAGES:,} per call",
                            hint="use fewer --frames, keys or --rows (a GIF or strip is assembled in memory)")
    return T


def walk_positions(num_keys: int, frames: int, loop: bool) -> list[tuple[int, int, float]]:
    """(from key, to key, t) for every frame: ``frames`` per segment, the last key included unless looping.

    Keys k0..kn-1 give n-1 segments (n with --loop, back to k0); frame 0 is exactly key 0.
    """
    walk_length(num_keys, frames, loop)
    segments = num_keys if loop else num_keys - 1
    out = [(s, (s + 1) % num_keys, f / frames) for s in range(segments) for f in range(frames)]
    if not loop:
        out.append((num_keys - 2, num_keys - 1, 1.0))
    return out


def interpolate_keys(keys: torch.Tensor, frames: int, method: str, loop: bool) -> torch.Tensor:
    """keys [K, R, D] → frames [T, R, D] along the walk."""
    fn = {"slerp": slerp, "lerp": lerp}.get(method)
    if fn is None:
        raise CgantoolError(f"unknown interpolation method '{method}'", hint="use slerp or lerp")
    return torch.stack([fn(keys[i], keys[j], t) for i, j, t in walk_positions(keys.shape[0], frames, loop)])


@torch.no_grad()
def prompt_walk(G, z: torch.Tensor, text, positions: list[tuple[int, int, float]], device, check=None) -> torch.Tensor:
    """Frames of a caption morph at fixed z: frame (i, j, t) conditions on (1 - t) · caption i + t · caption j
    (sentence features and the word contexts mixed; ``XMCGenerator.forward(mix=...)``).
    z [R, D], text: K captions → uint8 [T * R, 3, H, W] (frame-major). ``check``: a ``sampling.ImageCheck``."""
    from cgantool.data.batches import to_uint8

    was_training = G.training
    G.eval()
    out = []
    try:
        zd = z.to(device)
        R = z.shape[0]
        for i, j, t in positions:
            a = text[torch.full((R,), i, dtype=torch.int64)].to(device)
            b = text[torch.full((R,), j, dtype=torch.int64)].to(device)
            fake_img = G(zd, a, mix=(b, t))  # [R, 3, H, W]
            if check is not None:
                check.add(fake_img)
            out.append(to_uint8(fake_img).cpu())
    finally:
        G.train(was_training)
    return torch.cat(out)


def walk_images(G, device, *, seed: int, rows: int, frames: int, loop: bool, method: str, check=None,
                text=None, by_prompt: bool = False, class_keys: list[int] | None = None,
                seeds: list[int] | None = None, fixed_class: int | None = None) -> torch.Tensor:
    """The frames of one walk → uint8 [T, R, 3, H, W]: between captions (``by_prompt``, ``text`` = K captions),
    between classes (``class_keys``: soft one-hot labels at fixed z), or between ``seeds`` (slerp/lerp of z; the
    class ``fixed_class`` or class r % C on row r of a conditional model, the first caption of a text model)."""
    from cgantool.sampling import generate, latents

    if by_prompt:
        positions = walk_positions(len(text), frames, loop)
        images = prompt_walk(G, latents(seed, range(rows), G.z_dim), text, positions, device, check=check)
        return images.view(len(positions), rows, *images.shape[1:])
    if class_keys is not None:
        positions = walk_positions(len(class_keys), frames, loop)
        onehot = torch.eye(G.num_classes)[class_keys]  # [K, C]
        soft = torch.stack([onehot[i] * (1 - t) + onehot[j] * t for i, j, t in positions])  # [T, C]
        T = soft.shape[0]
        z_all = latents(seed, range(rows), G.z_dim).unsqueeze(0).expand(T, rows, -1).reshape(T * rows, -1)
        y_all = soft.unsqueeze(1).expand(T, rows, -1).reshape(T * rows, -1)
    else:
        keys_z = torch.stack([latents(s, range(rows), G.z_dim) for s in seeds])  # [K, R, D]
        walk = interpolate_keys(keys_z, frames, method, loop)  # [T, R, D]
        T = walk.shape[0]
        z_all = walk.reshape(T * rows, -1)
        if text is not None:
            y_all = text[torch.zeros(T * rows, dtype=torch.int64)]  # the first caption, held fixed
        elif G.num_classes:
            per_row = torch.tensor([fixed_class if fixed_class is not None else r % G.num_classes for r in range(rows)])
            y_all = per_row.repeat(T)
        else:
            y_all = None
    images = generate(G, z_all, y_all, batch_size=64, device=device, check=check)
    return images.view(T, rows, *images.shape[1:])


def write_frames(frames_u8: torch.Tensor, out: Path, fps: int) -> str:
    """frames [T, R, 3, H, W] uint8 → animated GIF (R images stacked per frame), PNG strip (R rows × T), or DIR.

    GIF and strip show images under 64 px enlarged (``sampling.grid_scale``); DIR frames keep the resolution.
    A failed write (disk full, ...) is one CgantoolError.
    """
    from cgantool.sampling import write_error

    try:
        return _write_frames(frames_u8, out, fps)
    except OSError as e:
        raise write_error(out, e) from None


def _write_frames(frames_u8: torch.Tensor, out: Path, fps: int) -> str:
    from PIL import Image
    from torchvision.utils import make_grid

    from cgantool.files import atomic_write
    from cgantool.sampling import enlarge

    T, R = frames_u8.shape[:2]
    suffix = out.suffix.lower()
    shown = enlarge(frames_u8) if suffix in (".gif", ".png") else frames_u8  # enlarged like sample grids
    if suffix == ".gif":
        images = [Image.fromarray(make_grid(shown[t], nrow=1, padding=0).permute(1, 2, 0).numpy()) for t in range(T)]
        duration = max(1, round(1000 / fps))
        atomic_write(out, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=duration, loop=0, disposal=1))
        return f"{T}-frame GIF at {fps} fps"
    if suffix == ".png":
        strip = shown.transpose(0, 1).reshape(T * R, *shown.shape[2:])  # row r = walk r
        grid = make_grid(strip, nrow=T, padding=1)
        atomic_write(out, lambda tmp: Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG"))
        return f"PNG strip of {R} row(s) × {T} frames"
    if suffix:
        raise CgantoolError(f"unsupported output '{out}'", hint="use FILE.gif, FILE.png or a folder")
    out.mkdir(parents=True, exist_ok=True)
    for t in range(T):
        grid = make_grid(frames_u8[t], nrow=1, padding=0)
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out / f"frame_{t:04d}.png")
    return f"{T} frames"
