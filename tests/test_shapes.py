"""The built-in shapes data: determinism, captions that agree with the pixels, colours, sizes, positions, shapes."""

from __future__ import annotations

import math

import pytest
import torch

from cgantool.data.shapes import (
    _RGB,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    _scenes,
    _unit_sdf,
    class_names,
    generate_shapes,
    hflip_caption,
    object_masks,
    parse_caption_attributes,
)
from cgantool.errors import DataError


def test_deterministic_from_seed():
    a, b = generate_shapes(40, 16, seed=3), generate_shapes(40, 16, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.attributes, b.attributes)
    assert a.captions == b.captions and torch.equal(a.labels, b.labels)
    c = generate_shapes(40, 16, seed=4)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.attributes, c.attributes)
    assert a.captions != c.captions


def test_image_i_does_not_depend_on_n_or_resolution():
    # scenes are drawn per block of 1024 from (seed, block): 1100 images span two blocks
    small = generate_shapes(30, 16, seed=9, multi=True)
    big = generate_shapes(1100, 32, seed=9, multi=True)
    assert torch.equal(small.attributes, big.attributes[:30])
    assert small.captions == big.captions[:30]
    assert torch.equal(generate_shapes(30, 32, seed=9, multi=True).images, big.images[:30])
    # the second block differs from the first
    assert not torch.equal(big.attributes[:76], big.attributes[1024:1100])


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
@pytest.mark.parametrize("multi", [False, True])
def test_tensor_shapes_and_dtypes(resolution, multi):
    d = generate_shapes(12, resolution, seed=0, multi=multi)
    k = 3 if multi else 1
    assert d.images.dtype == torch.uint8 and d.images.shape == (12, 3, resolution, resolution)
    assert d.labels.dtype == torch.int64 and d.labels.shape == (12,)
    assert d.attributes.dtype == torch.int64 and d.attributes.shape == (12, k, 4)
    assert len(d.captions) == 12 and all(len(c) >= 3 and all(isinstance(s, str) for s in c) for c in d.captions)
    assert d.class_names == class_names() and d.hflip_safe is False
    assert object_masks(12, resolution, seed=0, multi=multi).shape == (12, k, resolution, resolution)


def test_empty_and_invalid_requests():
    d = generate_shapes(0, 16)
    assert d.images.shape == (0, 3, 16, 16) and d.captions == [] and d.attributes.shape == (0, 1, 4)
    with pytest.raises(DataError):
        generate_shapes(-1, 16)
    with pytest.raises(DataError):
        generate_shapes(4, 4)


def test_class_name_indexing():
    names = class_names()
    assert len(names) == 20  # 4 colours x 5 shapes
    # index = color_index * 5 + shape_index
    assert names[0] == "red_circle"
    assert names[1 * 5 + 0] == "green_circle"
    assert names[2 * 5 + 3] == "blue_star"
    assert names[3 * 5 + 4] == "yellow_cross"
    d = generate_shapes(200, 16, seed=0, multi=True)
    for i in range(200):
        shape, color = int(d.attributes[i, 0, 0]), int(d.attributes[i, 0, 1])
        assert d.class_names[int(d.labels[i])] == f"{COLORS[color]}_{SHAPES[shape]}"


def _check_captions(d) -> None:
    for i, captions in enumerate(d.captions):
        objs = [tuple(int(v) for v in row) for row in d.attributes[i] if row[0] >= 0]
        named_size = named_position = False
        for caption in captions:
            named = parse_caption_attributes(caption)
            assert len(named) == len(objs), caption
            for obj, (shape, color, size, pos) in zip(named, objs):
                assert obj["shape"] == SHAPES[shape] and obj["color"] == COLORS[color], caption
                assert obj.get("size", SIZES[size]) == SIZES[size], caption
                assert obj.get("position", POSITIONS[pos]) == POSITIONS[pos], caption
                named_size |= "size" in obj
                named_position |= "position" in obj
        assert named_size and named_position, captions  # some caption of each image names both


def test_captions_agree_with_attributes_single_and_multi():
    _check_captions(generate_shapes(500, 16, seed=1))
    multi = generate_shapes(500, 16, seed=2, multi=True)
    _check_captions(multi)
    counts = (multi.attributes[:, :, 0] >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2, 3}
    for row in multi.attributes:  # objects of one image sit in distinct grid cells
        cells = [int(c) for c in row[:, 3] if c >= 0]
        assert len(cells) == len(set(cells))


def test_parse_caption_attributes_examples():
    assert parse_caption_attributes("a small red circle in the top left corner") == [
        {"shape": "circle", "color": "red", "size": "small", "position": "top left"}]
    assert parse_caption_attributes("a red circle") == [{"shape": "circle", "color": "red"}]
    assert parse_caption_attributes("there is a green square in the middle") == [
        {"shape": "square", "color": "green", "position": "center"}]
    assert parse_caption_attributes("two shapes: a large yellow star at the bottom and a blue cross on the left side") == [
        {"shape": "star", "color": "yellow", "size": "large", "position": "bottom"},
        {"shape": "cross", "color": "blue", "position": "left"}]


def test_hflip_caption_swaps_sides_and_round_trips():
    assert hflip_caption("a red star in the top left corner and a blue circle on the right") == \
        "a red star in the top right corner and a blue circle on the left"
    assert hflip_caption("a green cross at the top") == "a green cross at the top"
    d = generate_shapes(100, 16, seed=4, multi=True)
    mirror = {p: p.replace("left", "#").replace("right", "left").replace("#", "right") for p in POSITIONS}
    for captions in d.captions:
        for caption in captions:
            assert hflip_caption(hflip_caption(caption)) == caption
            flipped = parse_caption_attributes(hflip_caption(caption))
            for obj, orig in zip(flipped, parse_caption_attributes(caption), strict=True):
                assert obj.get("position") == (mirror[orig["position"]] if "position" in orig else None)


@pytest.mark.parametrize("multi", [False, True])
def test_object_pixels_have_the_named_colour(multi):
    d = generate_shapes(300, 32, seed=5, multi=multi)
    masks = object_masks(300, 32, seed=5, multi=multi)  # [N, K, R, R]
    img = d.images.double() / 255
    for i in range(300):
        for k in range(d.attributes.shape[1]):
            if d.attributes[i, k, 0] < 0:
                assert float(masks[i, k].sum()) == 0.0
                continue
            inside = masks[i, k] > 0.99
            mean = img[i][:, inside].mean(1)  # [3]
            nearest = int(((_RGB.double() - mean) ** 2).sum(1).argmin())
            assert nearest == int(d.attributes[i, k, 1]), (i, k)


def test_every_object_is_visible_at_16px():
    for multi in (False, True):
        masks = object_masks(500, 16, seed=6, multi=multi)
        attributes = _scenes(500, 6, multi).objects
        present = attributes[:, :, 0] >= 0
        core = (masks > 0.5).flatten(2).sum(2)  # [N, K] pixels mostly covered
        assert bool((core[present] >= 2).all())


@pytest.mark.parametrize("multi", [False, True])
def test_objects_sit_in_their_named_cell(multi):
    # the centre of each object's bounding box lies in the grid cell its position names
    R = 64
    masks = object_masks(200, R, seed=7, multi=multi)
    attributes = _scenes(200, 7, multi).objects
    for i in range(200):
        for k in range(attributes.shape[1]):
            pos = int(attributes[i, k, 3])
            if pos < 0:
                continue
            m = masks[i, k] > 0.5
            rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
            cy, cx = (rows.min() + rows.max() + 1) / 2 / R, (cols.min() + cols.max() + 1) / 2 / R
            assert (int(cy * 3), int(cx * 3)) == (pos // 3, pos % 3), (i, k, POSITIONS[pos])


def test_circle_and_square_areas_follow_the_size():
    # single objects: radius r = f / 6 of the image with f = 0.8, 1.1, 1.4 for small, medium, large
    # (half a grid cell is 1/6). At R = 64 px: circle area pi (f/6 * 64)^2 = 228.8, 432.5, 700.6 px;
    # square half side 0.86 r: area (2 * 0.86 * f/6 * 64)^2 = 215.4, 407.2, 658.4 px.
    R = 64
    attributes = _scenes(400, 8, False).objects[:, 0]  # [N, 4]
    area = object_masks(400, R, seed=8).double().sum((2, 3))[:, 0]  # coverage sums, [N]
    for size, f in enumerate((0.8, 1.1, 1.4)):
        r_px = f / 6 * R
        for shape, expected in ((0, math.pi * r_px**2), (1, (2 * 0.86 * r_px) ** 2)):
            sel = (attributes[:, 0] == shape) & (attributes[:, 2] == size)
            assert int(sel.sum()) > 0
            got = area[sel]
            # anti-aliased coverage integrates the area up to edge effects well under 1 %
            torch.testing.assert_close(got, torch.full_like(got, expected), rtol=0.01, atol=0)


def _unit_masks(n: int = 1201, half: float = 1.5):
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * half - half
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return x, y, 2 * half / n


def test_shapes_fill_their_bounding_boxes_differently():
    # filled fraction of each unit shape's own bounding box:
    #   circle pi/4 = 0.7854; square 1; equilateral triangle 1/2;
    #   star (outer R, inner 0.5 R): area 10 * (1/2) R (0.5 R) sin 36deg = 2.5 R^2 sin 36deg,
    #     box 2R cos 18deg x R (1 + cos 36deg) → 2.5 sin36 / (2 cos18 (1 + cos36)) = 0.4271;
    #   cross of two bars 2 x 0.72 (half length 1, half width 0.36): (2 * 2 * 0.72 - 0.72^2) / 4 = 0.5904
    x, y, h = _unit_masks()
    expected = [
        math.pi / 4,
        1.0,
        0.5,
        2.5 * math.sin(math.pi / 5) / (2 * math.cos(math.pi / 10) * (1 + math.cos(math.pi / 5))),
        (2 * 2 * 0.72 - 0.72**2) / 4,
    ]
    for shape in range(5):
        m = _unit_sdf(shape, x, y) < 0
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        got = torch.tensor(float(m.sum()) / float(box), dtype=torch.float64)
        # grid of 1201 px over [-1.5, 1.5]: the boundary pixels shift the fraction by well under 0.005
        torch.testing.assert_close(got, torch.tensor(expected[shape], dtype=torch.float64), rtol=0, atol=0.005)
        # each shape is centred on its bounding box
        centre = torch.stack([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2]).double()
        torch.testing.assert_close(centre, torch.full((2,), (len(x) - 1) / 2, dtype=torch.float64), rtol=0, atol=1.0)


def test_shape_sdfs_are_euclidean_distances_outside():
    # outside a shape, the SDF equals the distance to the nearest boundary pixel of a fine mask (to one pixel h)
    x, y, h = _unit_masks(601)
    g = torch.Generator().manual_seed(0)
    for shape in range(5):
        m = _unit_sdf(shape, x, y) < 0
        interior = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        edge = m.clone()
        edge[1:-1, 1:-1] &= ~interior
        boundary = torch.stack([x[edge], y[edge]], 1)  # [M, 2]
        q = torch.rand(300, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3
        d = _unit_sdf(shape, q[:, 0], q[:, 1])
        q, d = q[d > 0], d[d > 0]
        brute = torch.cdist(q, boundary).min(1).values
        torch.testing.assert_close(d, brute, rtol=0, atol=h)


def test_backgrounds_stay_far_from_every_shape_colour():
    # the nearest background colour (either end of its gradient) is at least 0.3 (RGB in [0, 1]) from any fill
    bg = _scenes(3000, 11, False).bg.reshape(-1, 3)  # [2N, 3]
    nearest = torch.cdist(bg, _RGB).min(1).values
    assert float(nearest.min()) > 0.3
    # the three families appear: dark, mid grey and light
    value = bg.mean(1)
    assert bool((value < 0.25).any() and ((value > 0.3) & (value < 0.5)).any() and (value > 0.75).any())
