"""The built-in ``shapes`` dataset: coloured shapes on a 3x3 grid, class labels and English captions.

Deterministic from a seed, rendered vectorised with supersampling (thousands of images per second), no
download. One object per image by default (class = colour x shape, e.g. ``red_circle``); ``multi=True``
places 1-3 objects in distinct cells and captions name each of them.

Class index = color_index * len(SHAPES) + shape_index.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SIZES: tuple[str, ...] = ("small", "medium", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
)
_POSITION_PHRASES = (
    "in the top left corner", "at the top", "in the top right corner", "on the left", "in the center",
    "on the right", "in the bottom left corner", "at the bottom", "in the bottom right corner",
)
_RGB = torch.tensor([[0.92, 0.16, 0.14], [0.16, 0.78, 0.22], [0.18, 0.38, 0.98], [0.98, 0.86, 0.10]])
# object radius as a fraction of half a grid cell: single objects may overhang their cell (big enough to
# recognise at 16 px); several objects stay inside their own cells
_SIZE_FRACTION = (0.75, 1.0, 1.3)
_SIZE_FRACTION_MULTI = (0.6, 0.8, 0.95)
hflip_safe = False  # captions name left and right: a plain horizontal flip would contradict them
_SUPERSAMPLE = 4
_CHUNK = 256


def class_names() -> list[str]:
    return [f"{color}_{shape}" for color in COLORS for shape in SHAPES]


@dataclass
class ShapesData:
    images: torch.Tensor  # uint8 [N, 3, R, R]
    labels: torch.Tensor  # int64 [N], class of the first object
    captions: list[list[str]]  # N lists of captions
    attributes: torch.Tensor  # int64 [N, K, 4]: (shape, color, size, position) per object, -1 rows = absent
    class_names: list[str]


# ----------------------------------------------------------------------------------------------
# Captions


def describe(shape: int, color: int, size: int, position: int, with_size: bool, with_position: bool) -> str:
    words = ["a"] + ([SIZES[size]] if with_size else []) + [COLORS[color], SHAPES[shape]]
    if with_position:
        words.append(_POSITION_PHRASES[position])
    return " ".join(words)


def captions_for(objects: list[tuple[int, int, int, int]], rng: random.Random, count: int = 5) -> list[str]:
    """``count`` captions that all agree with the objects; some omit size or position."""
    out = []
    for n in range(count):
        with_size = n % 2 == 0 or rng.random() < 0.5
        with_position = n != 1  # caption 1 names only colour and shape
        parts = [describe(*obj, with_size=with_size, with_position=with_position) for obj in objects]
        text = " and ".join(parts)
        if n == 3:
            text = "there is " + text
        elif n == 4:
            text = "a picture of " + text
        out.append(text)
    return out


_SHAPE_RE = "|".join(SHAPES)
_COLOR_RE = "|".join(COLORS)
_SIZE_RE = "|".join(SIZES)
_POS_RE = "|".join(re.escape(p) for p in sorted(_POSITION_PHRASES, key=len, reverse=True))
_OBJECT = re.compile(rf"(?:(?P<size>{_SIZE_RE}) )?(?P<color>{_COLOR_RE}) (?P<shape>{_SHAPE_RE})(?: (?P<pos>{_POS_RE}))?")


def parse_caption_attributes(caption: str) -> list[dict[str, str]]:
    """The objects a caption names: ``[{'shape', 'color', and 'size'/'position' when named}]``."""
    out = []
    for m in _OBJECT.finditer(caption.lower()):
        obj = {"shape": m["shape"], "color": m["color"]}
        if m["size"]:
            obj["size"] = m["size"]
        if m["pos"]:
            obj["position"] = POSITIONS[_POSITION_PHRASES.index(m["pos"])]
        out.append(obj)
    return out


def hflip_caption(caption: str) -> str:
    """The caption of the mirrored image: left and right swap."""
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m[1] == "left" else "left", caption)


# ----------------------------------------------------------------------------------------------
# Rendering


def _star_radius(theta: torch.Tensor, outer: torch.Tensor, inner_ratio: float = 0.45) -> torch.Tensor:
    """Boundary radius of a 5-pointed star (one point up) along direction theta (image coordinates)."""
    step = math.pi / 5
    phi = torch.remainder(theta + math.pi / 2, 2 * step)  # angle from the nearest outer vertex, in [0, 2 step)
    local = torch.where(phi > step, 2 * step - phi, phi)  # symmetric: [0, step]
    # edge from the outer vertex (angle 0, radius 1) to the inner vertex (angle step, radius inner_ratio)
    p1 = torch.tensor([1.0, 0.0])
    p2 = torch.tensor([inner_ratio * math.cos(step), inner_ratio * math.sin(step)])
    cross = p1[0] * p2[1] - p1[1] * p2[0]
    d = p2 - p1
    denom = d[1] * torch.cos(local) - d[0] * torch.sin(local)
    return outer * cross / denom


def _masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Inside-masks [B, H, W] for per-image shape ids; dx, dy [B, H, W] offsets from the centre, r [B, 1, 1]."""
    circle = dx * dx + dy * dy <= r * r
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.82 * r
    top, base = -r, 0.8 * r
    tri = (dy >= top) & (dy <= base) & (dx.abs() <= (dy - top) / (base - top) * 0.95 * r)
    theta = torch.atan2(dy, dx)
    star = dx * dx + dy * dy <= _star_radius(theta, r * 1.05) ** 2
    arm = 0.32 * r
    cross = ((dx.abs() <= arm) & (dy.abs() <= r)) | ((dy.abs() <= arm) & (dx.abs() <= r))
    stack = torch.stack([circle, square, tri, star, cross], dim=1)  # [B, 5, H, W]
    return stack.gather(1, shape.view(-1, 1, 1, 1).expand(-1, 1, *dx.shape[1:])).squeeze(1)


def _render_chunk(objects: torch.Tensor, background: torch.Tensor, jitter: torch.Tensor, resolution: int,
                  multi: bool) -> torch.Tensor:
    """objects [B, K, 4] (-1 = absent), background [B, 3, 2] (top and bottom colours), jitter [B, K, 2]."""
    B, K, _ = objects.shape
    S = resolution * _SUPERSAMPLE
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) / S  # pixel centres in [0, 1]
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    t = yy[None, None]  # vertical gradient
    img = background[:, :, :1, None] * (1 - t) + background[:, :, 1:, None] * t  # [B, 3, S, S]
    img = img.expand(B, 3, S, S).clone()
    half_cell = 1 / 6
    for k in range(K):
        present = objects[:, k, 0] >= 0
        if not bool(present.any()):
            continue
        obj = objects[:, k].clamp_min(0)
        shape, color, size, pos = obj.unbind(1)
        r = torch.tensor(_SIZE_FRACTION_MULTI if multi else _SIZE_FRACTION)[size] * half_cell  # [B]
        slack = (half_cell - r).clamp_min(0) + 0.1 * half_cell
        # cell centre plus a little jitter, kept inside the image
        cx = (((pos % 3).float() + 0.5) / 3 + jitter[:, k, 0] * slack).clamp(r * 1.05, 1 - r * 1.05)
        cy = (((pos // 3).float() + 0.5) / 3 + jitter[:, k, 1] * slack).clamp(r * 1.05, 1 - r * 1.05)
        dx = xx[None] - cx[:, None, None]
        dy = yy[None] - cy[:, None, None]
        mask = _masks(dx, dy, r[:, None, None], shape) & present[:, None, None]
        img = torch.where(mask[:, None], _RGB[color][:, :, None, None], img)
    img = F.avg_pool2d(img, _SUPERSAMPLE)  # antialiasing
    return (img * 255).round().clamp(0, 255).to(torch.uint8)


def generate_shapes(n: int, resolution: int = 32, seed: int = 0, multi: bool = False) -> ShapesData:
    """``n`` images at ``resolution`` with labels, attributes and captions, all determined by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    K = 3 if multi else 1
    objects = torch.full((n, K, 4), -1, dtype=torch.int64)
    counts = torch.randint(1, 4, (n,), generator=g) if multi else torch.ones(n, dtype=torch.int64)
    cells = torch.argsort(torch.rand(n, 9, generator=g), dim=1)[:, :K]  # distinct cells per image
    shape = torch.randint(len(SHAPES), (n, K), generator=g)
    color = torch.randint(len(COLORS), (n, K), generator=g)
    size = torch.randint(len(SIZES), (n, K), generator=g)
    present = torch.arange(K)[None] < counts[:, None]
    attrs = torch.stack([shape, color, size, cells], dim=2)
    objects = torch.where(present[:, :, None], attrs, objects)
    # dark, slightly tinted backgrounds with a vertical gradient: every shape colour stays visible
    base = 0.08 + 0.3 * torch.rand(n, 1, 1, generator=g)
    tint = 0.06 * (torch.rand(n, 3, 1, generator=g) - 0.5)
    ramp = 0.12 * (torch.rand(n, 1, 1, generator=g) - 0.5)
    background = (base + tint + torch.cat([-ramp, ramp], dim=2)).clamp(0, 1)  # [n, 3, 2]
    jitter = torch.rand(n, K, 2, generator=g) * 2 - 1
    images = torch.cat([
        _render_chunk(objects[i : i + _CHUNK], background[i : i + _CHUNK], jitter[i : i + _CHUNK], resolution, multi)
        for i in range(0, n, _CHUNK)
    ]) if n else torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    captions = []
    for i in range(n):
        objs = [tuple(int(v) for v in objects[i, k]) for k in range(int(counts[i]))]
        captions.append(captions_for(objs, rng))
    labels = objects[:, 0, 1] * len(SHAPES) + objects[:, 0, 0]
    return ShapesData(images=images, labels=labels, captions=captions, attributes=objects, class_names=class_names())
