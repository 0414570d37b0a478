"""The built-in ``shapes`` dataset: coloured shapes on a 3x3 grid, class labels and English captions.

Deterministic from a seed, no download, fast on a CPU (10k images at 32 px in under a second on 2 cores):
every object is drawn from an exact signed distance function (SDF), so one evaluation per pixel gives an
anti-aliased edge (coverage = clamp(0.5 - d / pixel, 0, 1)) and a thin dark outline that keeps a yellow
shape visible on a light background. SDFs follow Inigo Quilez, "2D distance functions"
(https://iquilezles.org/articles/distfunctions2d/).

One object per image by default; ``multi=True`` places 1-3 objects in distinct grid cells and the
captions name each of them. Class index = color_index * len(SHAPES) + shape_index (e.g. ``red_circle``
is 0, ``green_circle`` is 5); the label of a multi-object image is the class of its first object.

Scenes are drawn in blocks of 1024 from ``(seed, block)``, so image ``i`` is the same for any ``n`` and
shows the same scene at every resolution: ``generate_shapes(100, 16, s)`` is the first 100 of
``generate_shapes(1000, 64, s)`` at a lower resolution.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch

from cgantool.errors import DataError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SIZES: tuple[str, ...] = ("small", "medium", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
)  # row-major 3x3 grid: column = index % 3, row = index // 3; an object's position is the cell holding
# the centre of its bounding box
hflip_safe = False  # captions name left and right: a plain horizontal flip would contradict them

# fill colours in [0, 1], one row per COLORS entry
_RGB = torch.tensor([[0.90, 0.16, 0.14], [0.14, 0.74, 0.26], [0.16, 0.40, 0.96], [0.98, 0.84, 0.12]])
# object radius in half grid cells (a cell is 1/3 of the image): single objects may overhang their cell so
# they stay recognisable at 16 px; several objects stay inside their own cells
_SIZE_RADIUS = (0.8, 1.1, 1.4)
_SIZE_RADIUS_MULTI = (0.55, 0.68, 0.8)
# unit-shape parameters (the shape's "radius" r = 1); see _unit_sdf
_SQUARE_HALF = 0.86
_TRI_HALF_SIDE = 1.04  # equilateral: height = 1.04 * sqrt(3) = 1.80
_STAR_OUTER, _STAR_INNER = 1.2, 0.5  # inner vertices at 0.5 of the outer radius
_CROSS_HALF_LEN, _CROSS_HALF_WIDTH = 1.0, 0.36
# half the bounding box of each unit shape (its reach from the centre), used to keep objects in place
_EXTENT = (1.0, _SQUARE_HALF, _TRI_HALF_SIDE, _STAR_OUTER * math.cos(math.pi / 10), _CROSS_HALF_LEN)
_MARGIN = 0.04  # image units between an object and the image border / the edge of its cell
_BLOCK = 1024  # scenes drawn per random block
_PIXELS_PER_CHUNK = 1 << 21  # rendering works on chunks of about this many pixels


def class_names() -> list[str]:
    """The 20 class names ``f"{color}_{shape}"``; index = color_index * len(SHAPES) + shape_index."""
    return [f"{color}_{shape}" for color in COLORS for shape in SHAPES]


@dataclass
class ShapesData:
    images: torch.Tensor  # uint8 [N, 3, R, R]
    labels: torch.Tensor  # int64 [N], class of the first object
    captions: list[list[str]]  # N lists of 5 captions, each true of the image
    attributes: torch.Tensor  # int64 [N, K, 4]: (shape, color, size, position) per object, -1 rows = absent
    class_names: list[str]
    hflip_safe: bool = False  # captions name left and right


# ----------------------------------------------------------------------------------------------
# Captions

_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left"),
    "top": ("at the top", "near the top edge"),
    "top right": ("in the top right corner", "at the top right"),
    "left": ("on the left", "on the left side"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "on the right side"),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom": ("at the bottom", "near the bottom edge"),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
}
_PHRASE_TO_POSITION = {phrase: pos for pos, phrases in _POSITION_PHRASES.items() for phrase in phrases}
_PREFIXES = ("", "there is ", "an image of ", "a drawing of ")
_COUNT_WORDS = ("", "one shape: ", "two shapes: ", "three shapes: ")


def describe_object(shape: int, color: int, size: int, position: int, *, with_size: bool = True,
                    with_position: bool = True, variant: int = 0) -> str:
    """One object as a noun phrase, e.g. ``"a small red circle in the top left corner"``.

    ``variant`` (0 or 1) picks the wording of the position phrase.
    """
    words = ["a"] + ([SIZES[size]] if with_size else []) + [COLORS[color], SHAPES[shape]]
    if with_position:
        phrases = _POSITION_PHRASES[POSITIONS[position]]
        words.append(phrases[variant % len(phrases)])
    return " ".join(words)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions_for(objects: list[tuple[int, int, int, int]], rng: random.Random, count: int = 5) -> list[str]:
    """``count`` captions of one image's objects ``[(shape, color, size, position), ...]``, all true.

    Caption 0 names everything, 1 only colour and shape, 2 adds the position, 3 the size; later ones
    choose at random. Wording (prefix, position phrase) is drawn from ``rng``.
    """
    out = []
    for n in range(count):
        with_size = n in (0, 3) or (n > 3 and rng.random() < 0.5)
        with_position = n in (0, 2) or (n > 3 and rng.random() < 0.7)
        parts = [describe_object(*obj, with_size=with_size, with_position=with_position, variant=rng.randrange(2))
                 for obj in objects]
        prefix = rng.choice(_PREFIXES)
        if len(objects) > 1 and rng.random() < 0.3:
            prefix = _COUNT_WORDS[len(objects)]
        out.append(prefix + _join(parts))
    return out


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))  # longest first


_OBJECT_RE = re.compile(
    rf"\b(?:(?P<size>{_alternation(SIZES)}) )?(?P<color>{_alternation(COLORS)}) (?P<shape>{_alternation(SHAPES)})\b"
    rf"(?: (?P<pos>{_alternation(_PHRASE_TO_POSITION)})\b)?"
)


def parse_caption_attributes(caption: str) -> list[dict[str, str]]:
    """The objects a caption names, in order: ``[{"shape", "color"} plus "size" / "position" if named]``.

    The inverse of the caption templates: ``"a small red circle in the top left corner"`` →
    ``[{"shape": "circle", "color": "red", "size": "small", "position": "top left"}]``.
    """
    out = []
    for m in _OBJECT_RE.finditer(caption.lower()):
        obj = {"shape": m["shape"], "color": m["color"]}
        if m["size"]:
            obj["size"] = m["size"]
        if m["pos"]:
            obj["position"] = _PHRASE_TO_POSITION[m["pos"]]
        out.append(obj)
    return out


def hflip_caption(caption: str) -> str:
    """The caption of the mirrored image: the words left and right swap."""
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m[1] == "left" else "left", caption)


# ----------------------------------------------------------------------------------------------
# Shapes as signed distance functions (negative inside)


def _box_sdf(x: torch.Tensor, y: torch.Tensor, half_x: float, half_y: float) -> torch.Tensor:
    qx, qy = x.abs() - half_x, y.abs() - half_y
    return torch.hypot(qx.clamp_min(0), qy.clamp_min(0)) + torch.maximum(qx, qy).clamp_max(0)


def _triangle_sdf(x: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    """Equilateral triangle, point up (y up), vertices (+-t, -t/sqrt3) and (0, 2t/sqrt3) (IQ sdEquilateralTriangle)."""
    k = math.sqrt(3.0)
    x = x.abs() - t
    y = y + t / k
    fold = x + k * y > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-2 * t, 0)
    return -torch.hypot(x, y) * torch.sign(y)


def _star_sdf(x: torch.Tensor, y: torch.Tensor, outer: float, inner_ratio: float) -> torch.Tensor:
    """Five-pointed star, one point up (y up), outer radius ``outer``, inner vertices at ``inner_ratio * outer``
    (IQ sdStar5)."""
    k1x, k1y = math.cos(math.pi / 5), -math.sin(math.pi / 5)
    x = x.abs()
    for kx in (k1x, -k1x):  # fold into one tenth of the star
        dot = (kx * x + k1y * y).clamp_min(0)
        x, y = x - 2 * dot * kx, y - 2 * dot * k1y
    x = x.abs()
    y = y - outer
    bax, bay = inner_ratio * -k1y, inner_ratio * k1x - 1  # tip → inner vertex, per unit of outer
    h = ((x * bax + y * bay) / (bax * bax + bay * bay)).clamp(0, outer)
    return torch.hypot(x - bax * h, y - bay * h) * torch.sign(y * bax - x * bay)


def _unit_sdf(shape: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed distance to shape ``shape`` of radius 1 centred (bounding box) at 0; x right, y DOWN (image)."""
    if shape == 0:
        return torch.hypot(x, y) - 1.0
    if shape == 1:
        return _box_sdf(x, y, _SQUARE_HALF, _SQUARE_HALF)
    if shape == 2:  # bounding box spans y_up in [-t/sqrt3, 2t/sqrt3]: its centre is t/(2 sqrt3) above 0
        return _triangle_sdf(x, -y + _TRI_HALF_SIDE / (2 * math.sqrt(3.0)), _TRI_HALF_SIDE)
    if shape == 3:  # bounding box spans y_up in [-outer cos36, outer]
        shift = _STAR_OUTER * (1 - math.cos(math.pi / 5)) / 2
        return _star_sdf(x, -y + shift, _STAR_OUTER, _STAR_INNER)
    if shape == 4:
        return torch.minimum(_box_sdf(x, y, _CROSS_HALF_LEN, _CROSS_HALF_WIDTH),
                             _box_sdf(x, y, _CROSS_HALF_WIDTH, _CROSS_HALF_LEN))
    raise ValueError(f"unknown shape index {shape}")


# ----------------------------------------------------------------------------------------------
# Scenes: everything random, drawn per block of _BLOCK images


@dataclass
class _Scenes:
    objects: torch.Tensor  # int64 [N, K, 4] (shape, color, size, position), -1 = absent
    center: torch.Tensor  # [N, K, 2] (x, y) in [0, 1], y down
    radius: torch.Tensor  # [N, K] in image units
    rgb: torch.Tensor  # [N, K, 3] fill colour
    bg: torch.Tensor  # [N, 2, 3] background colours at both ends of the gradient
    bg_angle: torch.Tensor  # [N] gradient direction

    def slice(self, i: int, j: int) -> _Scenes:
        return _Scenes(*(getattr(self, f)[i:j] for f in ("objects", "center", "radius", "rgb", "bg", "bg_angle")))


def _block_generator(seed: int, block: int) -> torch.Generator:
    return torch.Generator().manual_seed(random.Random(f"cgantool-shapes:{seed}:{block}").getrandbits(63))


def _draw_block(g: torch.Generator, multi: bool) -> _Scenes:
    """_BLOCK scenes; every draw happens whether used or not, so the stream never depends on the values."""
    B, K = _BLOCK, (3 if multi else 1)
    counts = torch.randint(1, 4, (B,), generator=g)
    cells = torch.argsort(torch.rand(B, 9, generator=g), dim=1)[:, :K]  # distinct cells per image
    shape = torch.randint(len(SHAPES), (B, K), generator=g)
    color = torch.randint(len(COLORS), (B, K), generator=g)
    size = torch.randint(len(SIZES), (B, K), generator=g)
    jitter = torch.rand(B, K, 2, generator=g) * 2 - 1
    brightness = 0.92 + 0.1 * torch.rand(B, K, 1, generator=g)
    bg_u = torch.rand(B, 8, generator=g)
    if not multi:
        counts = torch.ones_like(counts)
    present = torch.arange(K)[None] < counts[:, None]  # [B, K]
    objects = torch.stack([shape, color, size, cells], dim=2).masked_fill(~present[:, :, None], -1)

    # geometry: radius from the size, centre jittered inside the cell, kept off the image border
    half_cell = 1 / 6
    radius = torch.tensor(_SIZE_RADIUS_MULTI if multi else _SIZE_RADIUS)[size] * half_cell  # [B, K]
    reach = torch.tensor(_EXTENT)[shape] * radius + _MARGIN
    col_row = torch.stack([cells % 3, cells // 3], dim=2).float()  # [B, K, 2]
    slack = (half_cell - reach).clamp_min(0 if multi else 0.25 * half_cell)[..., None]
    lo = torch.maximum(reach[..., None], col_row / 3 + _MARGIN)
    hi = torch.minimum(1 - reach[..., None], (col_row + 1) / 3 - _MARGIN)
    center = ((col_row + 0.5) / 3 + jitter * slack).clamp(min=lo, max=hi)
    rgb = (_RGB[color] * brightness).clamp(0, 1)

    # background: dark (45 %), mid grey (25 %) or light pastel (30 %), slightly tinted, a soft gradient
    family = (bg_u[:, 0] > 0.45).long() + (bg_u[:, 0] > 0.7).long()
    lo_v, span_v, tint_v = (torch.tensor(v)[family] for v in ((0.05, 0.28, 0.78), (0.17, 0.17, 0.15), (0.08, 0.08, 0.12)))
    value = lo_v + span_v * bg_u[:, 1]
    tint = (bg_u[:, 2:5] - bg_u[:, 2:5].mean(1, keepdim=True)) * tint_v[:, None]
    start = (value[:, None] + tint).clamp(0, 1)  # [B, 3]
    ramp = 0.16 * (bg_u[:, 5:6] - 0.5)
    end = (start + ramp).clamp(0, 1)
    bg = torch.stack([start, end], dim=1)
    return _Scenes(objects, center, radius, rgb, bg, bg_u[:, 6] * 2 * math.pi)


def _scenes(n: int, seed: int, multi: bool) -> _Scenes:
    blocks = [_draw_block(_block_generator(seed, b), multi) for b in range(-(-n // _BLOCK))]
    if not blocks:
        return _draw_block(_block_generator(seed, 0), multi).slice(0, 0)
    fields = ("objects", "center", "radius", "rgb", "bg", "bg_angle")
    return _Scenes(*(torch.cat([getattr(b, f) for b in blocks])[:n] for f in fields))


# ----------------------------------------------------------------------------------------------
# Rendering


def _render_chunk(s: _Scenes, resolution: int, with_masks: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images float [B, R, R, 3] in [0, 1] and (if asked) the visible fill coverage of each object [B, R, R, K].

    Each object is evaluated only in a square window around it: objects of one (slot, shape, size) group
    share the window size, so the group is one batched SDF call plus a gather / scatter of its windows.
    """
    B, K, _ = s.objects.shape
    R = resolution
    coords = (torch.arange(R, dtype=torch.float32) + 0.5) / R  # pixel centres in [0, 1]
    # background: a linear gradient along the direction bg_angle
    cos, sin = torch.cos(s.bg_angle)[:, None, None], torch.sin(s.bg_angle)[:, None, None]
    t = 0.5 + 0.7 * ((coords[None, None, :] - 0.5) * cos + (coords[None, :, None] - 0.5) * sin)  # [B, R, R]
    img = s.bg[:, None, None, 0] + (s.bg[:, 1] - s.bg[:, 0])[:, None, None] * t[..., None]  # [B, R, R, 3]
    cover = torch.zeros(B, R, R, K) if with_masks else None
    outline = max(0.75 / R, 0.01)  # outline width in image units: about one pixel at 16-64 px
    steps = torch.arange(R)
    for k in range(K):
        for shape in range(len(SHAPES)):
            for size in range(len(SIZES)):
                idx = ((s.objects[:, k, 0] == shape) & (s.objects[:, k, 2] == size)).nonzero().squeeze(1)  # [b]
                if idx.numel() == 0:
                    continue
                r = s.radius[idx, k]  # [b], one value per group
                # half window: the object's reach plus its outline plus one pixel of anti-aliasing
                half = math.ceil((_EXTENT[shape] * float(r.max()) + outline) * R + 1)
                W = min(R, 2 * half + 1)
                cx, cy = s.center[idx, k, 0], s.center[idx, k, 1]
                cols = (cx * R - W / 2).round().long().clamp(0, R - W)[:, None] + steps[:W]  # [b, W]
                rows = (cy * R - W / 2).round().long().clamp(0, R - W)[:, None] + steps[:W]
                x = (coords[cols] - cx[:, None]) / r[:, None]  # [b, W] in units of r
                y = (coords[rows] - cy[:, None]) / r[:, None]
                x, y = torch.broadcast_tensors(x[:, None, :], y[:, :, None])  # [b, W, W]
                dist = _unit_sdf(shape, x, y) * r[:, None, None]  # image units
                # box-filter coverage of one pixel: 0.5 - signed distance in pixels, clamped to [0, 1]
                fill = (0.5 - dist * R).clamp(0, 1)[..., None]  # [b, W, W, 1]
                outer = (0.5 - (dist - outline) * R).clamp(0, 1)[..., None]
                rgb = s.rgb[idx, k][:, None, None, :]  # [b, 1, 1, 3]
                shaded = (rgb * (1.05 - 0.05 * y.clamp(-1, 1))[..., None]).clamp(0, 1)  # lighter at the top
                where = (idx[:, None, None], rows[:, :, None], cols[:, None, :])
                win = img[where]  # [b, W, W, 3]
                win = win + outer * (0.35 * rgb - win)  # dark outline
                img[where] = win + fill * (shaded - win)
                if cover is not None:
                    cov = cover[where] * (1 - outer)  # this object hides earlier ones
                    cov[..., k] = fill[..., 0]
                    cover[where] = cov
    return img.clamp(0, 1), cover


def _render(s: _Scenes, resolution: int, with_masks: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images [N, 3, R, R] and (if asked) fill coverage [N, K, R, R], rendered in chunks."""
    n, K = s.objects.shape[:2]
    chunk = max(1, _PIXELS_PER_CHUNK // (resolution * resolution))
    images = torch.empty(n, 3, resolution, resolution, dtype=torch.uint8)
    cover = torch.empty(n, K, resolution, resolution) if with_masks else None
    for i in range(0, n, chunk):
        img, cov = _render_chunk(s.slice(i, i + chunk), resolution, with_masks)
        images[i : i + chunk] = (img * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
        if cover is not None:
            cover[i : i + chunk] = cov.permute(0, 3, 1, 2)
    return images, cover


def _check(n: int, resolution: int) -> None:
    if n < 0:
        raise DataError(f"shapes: cannot generate {n} images", hint="ask for zero or more images")
    if resolution < 8:
        raise DataError(f"shapes: resolution {resolution} is too small", hint="use 8 px or more (16, 32, 64, 128)")


def generate_shapes(n: int, resolution: int = 32, seed: int = 0, multi: bool = False) -> ShapesData:
    """``n`` images at ``resolution`` with labels, attributes and captions, all determined by ``seed``.

    ``multi=False``: one object per image (attributes [N, 1, 4]); ``multi=True``: 1-3 objects in distinct
    grid cells (attributes [N, 3, 4], -1 rows for absent objects).
    """
    _check(n, resolution)
    scenes = _scenes(n, seed, multi)
    images, _ = _render(scenes, resolution)
    rng = random.Random(f"cgantool-shapes-captions:{seed}:{multi}")
    captions = []
    for row in scenes.objects.tolist():
        captions.append(captions_for([tuple(obj) for obj in row if obj[0] >= 0], rng))
    labels = scenes.objects[:, 0, 1] * len(SHAPES) + scenes.objects[:, 0, 0]
    return ShapesData(images=images, labels=labels, captions=captions, attributes=scenes.objects,
                      class_names=class_names())


def object_masks(n: int, resolution: int = 32, seed: int = 0, multi: bool = False) -> torch.Tensor:
    """Visible fill coverage in [0, 1] of each object of ``generate_shapes(n, resolution, seed, multi)``.

    float32 [N, K, R, R]; rows of absent objects are zero. Outlines are not part of the mask.
    """
    _check(n, resolution)
    return _render(_scenes(n, seed, multi), resolution, with_masks=True)[1]
