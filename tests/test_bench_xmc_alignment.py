"""The position read-out of benchmarks/xmc_alignment.py: the cell of an object's colour-mask centroid."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import xmc_alignment  # noqa: E402

from cgantool.data.shapes import POSITIONS, generate_shapes  # noqa: E402


def test_object_cell_reads_the_position_of_real_shapes():
    data = generate_shapes(400, resolution=16, seed=3)
    truth = data.attributes[:, 0, 3]  # single objects: (shape, color, size, position) of object 0
    cells = xmc_alignment.object_cell(data.images)
    assert cells.min() >= 0 and cells.max() < len(POSITIONS)
    assert (cells == truth).float().mean() > 0.95
    # an object moved to the opposite corner is read there: flip both axes, the cell index mirrors
    flipped = xmc_alignment.object_cell(data.images.flip(-1).flip(-2))
    assert (flipped == len(POSITIONS) - 1 - truth).float().mean() > 0.95


def test_object_cell_of_a_hand_drawn_square():
    img = torch.zeros(1, 3, 12, 12, dtype=torch.uint8)  # black background, a red 3x3 square in the top right cell
    img[0, 0, 1:4, 9:12] = 230
    img[0, 1, 1:4, 9:12], img[0, 2, 1:4, 9:12] = 41, 36
    assert xmc_alignment.object_cell(img).tolist() == [POSITIONS.index("top right")]


def test_named_cells():
    cells = xmc_alignment.named_cells(["a small red circle in the top left corner", "a green star",
                                       "there is a blue cross on the right side"])
    assert cells.tolist() == [POSITIONS.index("top left"), -1, POSITIONS.index("right")]
