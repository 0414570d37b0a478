"""The built-in shapes data: determinism, captions that agree with the pixels' attributes, colours, shapes."""

from __future__ import annotations

import math

import torch

from cgantool.data.shapes import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    _masks,
    _RGB,
    class_names,
    generate_shapes,
    hflip_caption,
    parse_caption_attributes,
)


def test_deterministic_from_seed():
    a, b = generate_shapes(40, 16, seed=3), generate_shapes(40, 16, seed=3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and torch.equal(a.labels, b.labels)
    c = generate_shapes(40, 16, seed=4)
    assert not torch.equal(a.images, c.images)


def test_shapes_dtypes_and_class_index():
    d = generate_shapes(30, 32, seed=0)
    assert d.images.dtype == torch.uint8 and d.images.shape == (30, 3, 32, 32)
    assert d.labels.dtype == torch.int64 and d.attributes.shape == (30, 1, 4)
    assert len(class_names()) == 20 and class_names()[0] == "red_circle"
    for i in range(30):
        shape, color = int(d.attributes[i, 0, 0]), int(d.attributes[i, 0, 1])
        assert d.class_names[int(d.labels[i])] == f"{COLORS[color]}_{SHAPES[shape]}"


def _check_captions(d):
    for i, captions in enumerate(d.captions):
        objs = [tuple(int(v) for v in row) for row in d.attributes[i] if row[0] >= 0]
        assert len(captions) >= 3
        for caption in captions:
            named = parse_caption_attributes(caption)
            assert len(named) == len(objs), caption
            for obj, (shape, color, size, pos) in zip(named, objs):
                assert obj["shape"] == SHAPES[shape] and obj["color"] == COLORS[color], caption
                assert obj.get("size", SIZES[size]) == SIZES[size], caption
                assert obj.get("position", POSITIONS[pos]) == POSITIONS[pos], caption


def test_captions_agree_with_attributes_single_and_multi():
    _check_captions(generate_shapes(300, 16, seed=1))
    multi = generate_shapes(300, 32, seed=2, multi=True)
    _check_captions(multi)
    counts = (multi.attributes[:, :, 0] >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2, 3}
    # objects of one image sit in distinct grid cells
    for row in multi.attributes:
        cells = [int(c) for c in row[:, 3] if c >= 0]
        assert len(cells) == len(set(cells))


def test_object_pixels_have_the_named_colour():
    d = generate_shapes(200, 32, seed=5)
    img = d.images.float() / 255  # [N, 3, H, W]
    bg = img[:, :, 0, 0]  # a corner pixel is background unless an object covers it
    for i in range(200):
        # the pixels farthest from the corner background colour are the object's
        dist = (img[i] - bg[i][:, None, None]).abs().sum(0)
        obj = img[i][:, dist > 0.6 * dist.max()].mean(1)  # [3]
        nearest = int(((_RGB - obj) ** 2).sum(1).argmin())
        assert nearest == int(d.attributes[i, 0, 1]), i


def test_shape_masks_fill_their_bounding_boxes_differently():
    # filled fraction of the 2r x 2r box: circle pi/4, square 0.82^2, triangle ~0.95*1.8/4, star much less, cross
    n = 400
    coords = (torch.arange(n) + 0.5) / n * 2 - 1
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    r = torch.ones(1, 1, 1)
    fractions = [float(_masks(xx[None], yy[None], r, torch.tensor([s])).float().mean()) for s in range(5)]
    assert abs(fractions[0] - math.pi / 4) < 0.01  # circle
    assert abs(fractions[1] - 0.82**2) < 0.01  # square of half side 0.82 r
    assert abs(fractions[2] - 0.95 * 1.8 / 4) < 0.01  # triangle: base 1.9 r, height 1.8 r
    assert abs(fractions[4] - (2 * 0.64 * 2 - 0.64**2) / 4) < 0.01  # cross: two 0.64 x 2 bars
    assert len({round(f, 2) for f in fractions}) == 5  # all five differ


def test_hflip_caption_swaps_sides():
    assert hflip_caption("a red star in the top left corner and a blue circle on the right") == \
        "a red star in the top right corner and a blue circle on the left"
    assert hflip_caption(hflip_caption("a green cross on the left")) == "a green cross on the left"
