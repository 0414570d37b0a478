"""Sampling and interpolation from a checkpoint alone: determinism, classes, truncation, walks as GIF/PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import invoke
from tests.test_cli import assert_usage_error


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_same_seed_same_pixels_other_seed_differs(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert invoke(runner, "sample", ckpt, "-n", "3", "--seed", seed, "--out", tmp_path / name).exit_code == 0
    assert np.array_equal(_png(tmp_path / "a" / "0000.png"), _png(tmp_path / "b" / "0000.png"))
    assert not np.array_equal(_png(tmp_path / "a" / "0000.png"), _png(tmp_path / "c" / "0000.png"))


def test_per_class_grid_has_one_column_per_class(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    result = invoke(runner, "sample", ckpt, "--per-class", "2", "--out", tmp_path / "pc")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "pc").glob("0*.png"))) == 40  # 2 x 20 classes
    grid = Image.open(tmp_path / "pc" / "grid.png")
    # 20 columns and 2 rows of 16 px images shown 4x (64 px) with 2 px padding: 2 + 20 * 66 by 2 + 2 * 66
    assert grid.size == (2 + 20 * 66, 2 + 2 * 66)
    # the tile in row 1, column 3 is image 1 * 20 + 3, each pixel repeated 4 x 4 times
    tile = np.asarray(grid)[2 + 66 : 2 + 66 + 64, 2 + 3 * 66 : 2 + 3 * 66 + 64]
    np.testing.assert_array_equal(tile, _png(tmp_path / "pc" / "0023.png").repeat(4, 0).repeat(4, 1))


def test_truncation_changes_images_and_rejects_bad_values(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    invoke(runner, "sample", ckpt, "-n", "2", "--out", tmp_path / "plain")
    assert invoke(runner, "sample", ckpt, "-n", "2", "--truncation", "0.5", "--out", tmp_path / "t").exit_code == 0
    assert not np.array_equal(_png(tmp_path / "plain" / "0000.png"), _png(tmp_path / "t" / "0000.png"))
    assert invoke(runner, "sample", ckpt, "--truncation", "-1", "--out", tmp_path / "x").exit_code == 2


def test_slerp_walk_endpoints_equal_the_seeds_samples(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    # class 0 for the walk and the samples, so the conditioning matches
    result = invoke(runner, "interpolate", ckpt, "--seeds", "4,9", "--frames", "5", "--class", "red_circle",
                    "--out", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    frames = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(frames) == 6  # 5 per segment + the final key
    for seed, frame in ((4, frames[0]), (9, frames[-1])):
        invoke(runner, "sample", ckpt, "-n", "1", "--seed", seed, "--class", "red_circle", "--out", tmp_path / f"s{seed}")
        # same z and class; a different batch composition may move a pixel by one level (float summation order)
        diff = np.abs(_png(frame).astype(int) - _png(tmp_path / f"s{seed}" / "0000.png").astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.05


def test_gif_frame_count_size_and_loop(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    out = tmp_path / "walk.gif"
    result = invoke(runner, "interpolate", ckpt, "--seeds", "1,2,3", "--frames", "4", "--loop", "--rows", "2",
                    "--out", out, "--fps", "10")
    assert result.exit_code == 0, result.output
    gif = Image.open(out)
    assert gif.n_frames == 12  # 3 segments (looping back to seed 1) x 4 frames
    assert gif.size == (64, 128)  # two rows of 16 px images stacked, shown 4x
    assert gif.info["duration"] == 100 and gif.info.get("loop") == 0
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--out", out), "already exists")


def test_class_walk_png_strip(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    out = tmp_path / "morph.png"
    result = invoke(runner, "interpolate", ckpt, "--classes", "red_circle,blue_square", "--frames", "6", "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (1 + 7 * 65, 1 + 65)  # 7 frames of 16 px shown 4x in one row, 1 px padding


@pytest.mark.parametrize("args, fragment", [
    (["--classes", "red_circle,purple_blob"], "unknown class 'purple_blob'"),
    (["--seeds", "1"], "at least two keys"),
    (["--seeds", "1,2", "--classes", "red_circle,blue_star"], "exclude each other"),
    (["--method", "cubic"], "unknown interpolation method"),
    (["--out", "x.mp4"], "unsupported output"),
])
def test_interpolate_bad_input(tiny_run, runner, tmp_path, args, fragment):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "w.gif")]
    else:
        args = [a if a != "x.mp4" else str(tmp_path / "x.mp4") for a in args]
    assert_usage_error(invoke(runner, "interpolate", ckpt, *args), fragment)


def test_unconditional_model_refuses_classes(runner, tmp_path):
    from tests.conftest import TINY

    out = tmp_path / "uncond"
    result = invoke(runner, "train", "--preset", "infomax-gan", "--data", "shapes:16", "--steps", "1", "--batch-size", "4",
                    "--out", out, "--no-progress", *TINY, "--set", "loss.infomax.rkhs_dim=16")
    assert result.exit_code == 0, result.output
    ckpt = out / "checkpoints" / "last.safetensors"
    assert_usage_error(invoke(runner, "sample", ckpt, "--class", "red_circle", "--out", tmp_path / "s"), "unconditional")
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--classes", "0,1", "--out", tmp_path / "w.gif"),
                       "unconditional")


def test_prompts_for_a_model_that_is_not_text_conditional(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    assert_usage_error(invoke(runner, "sample", ckpt, "--prompt", "a red circle", "--out", tmp_path / "a"),
                       "not text-conditional")
    assert_usage_error(invoke(runner, "sample", ckpt, "--prompt", "  ", "--out", tmp_path / "b"), "empty prompt")
    assert_usage_error(invoke(runner, "interpolate", ckpt, "--prompts", "a red circle", "--prompts", "a blue star",
                              "--out", tmp_path / "w.gif"), "not text-conditional")
    (tmp_path / "p.txt").write_text("a red circle\n")
    assert_usage_error(invoke(runner, "sample", ckpt, "--prompts-file", tmp_path / "p.txt", "--out", tmp_path / "c"),
                       "not text-conditional")


def test_default_outputs_go_into_the_run_and_a_second_call_takes_the_next_name(runner, tiny_run, tmp_path,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing lands in the working directory
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    generated = tiny_run / "generated"
    before = set(generated.iterdir()) if generated.exists() else set()
    for _ in range(2):
        result = invoke(runner, "sample", ckpt, "-n", "2", "--seed", "7", "--device", "cpu")
        assert result.exit_code == 0, result.output
    for _ in range(2):
        result = invoke(runner, "interpolate", ckpt, "--frames", "2", "--device", "cpu")
        assert result.exit_code == 0, result.output
    new = {p.name for p in set(generated.iterdir()) - before}
    assert new == {"last-seed7", "last-seed7-2", "last-walk.gif", "last-walk-2.gif"}, new
    assert list(tmp_path.iterdir()) == []
    assert len(list((generated / "last-seed7-2").glob("0*.png"))) == 2
