"""The recipe a run trains, as a user sees it through the CLI: `train`'s first line, `config show --data`,
`presets NAME`, and the record in the run (issue 31's done-when)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cgantool.config import resolve_config

ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "2"}


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cgantool", *args], cwd=cwd, env=env or ENV,
                          capture_output=True, text=True, timeout=600)


def large_image_folder(root: Path, size: tuple[int, int] = (400, 300)) -> Path:
    """Two classes of photo-sized images (300 px short side)."""
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def test_train_on_large_images_picks_the_imagenet_recipe_and_says_so_first(tmp_path):
    data = large_image_folder(tmp_path / "photos")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    r = cli("train", "--preset", "contragan", "--data", str(data), "--steps", "2", "--batch-size", "4",
            "--set", "model.g_channels=4", "--set", "model.d_channels=4", "--set", "train.d_steps_per_g_step=1",
            "--out", str(out), "--no-progress", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    first = r.stderr.strip().splitlines()[0]
    expected = resolve_config("contragan", flags={"data.resolution": 128}).recipe
    assert "128 px" in first and "ImageNet" in first, first
    assert expected and expected.split(" (")[0] in first  # the recipe's name...
    assert "StudioGAN" in first  # ...and its source
    stored = tomllib.loads((out / "config.toml").read_text())
    assert stored["data"]["resolution"] == 128
    assert stored["recipe"] == expected
    # what the user set wins over the recipe; what they did not comes from it
    recipe_cfg = resolve_config("contragan", flags={"data.resolution": 128})
    assert stored["model"]["g_channels"] == 4
    assert stored["model"]["z_dim"] == recipe_cfg.model.z_dim
    assert stored["optim"]["lr_d"] == recipe_cfg.optim.lr_d
    assert "warning" not in r.stderr.lower()


def test_config_show_with_cifar10_is_the_cifar_recipe(tmp_path):
    r = cli("config", "show", "--preset", "contragan", "--data", "cifar10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    shown = tomllib.loads(r.stdout)
    assert shown["data"]["resolution"] == 32
    assert "CIFAR-10" in shown["recipe"]
    assert shown["model"]["z_dim"] == resolve_config("contragan", flags={"data.resolution": 32}).model.z_dim


def test_a_resolution_without_recipe_warns_once_and_trains_the_nearest(tmp_path):
    r = cli("config", "show", "--preset", "contragan", "--data", "shapes:16", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "16 px" in warnings[0] and "32 px" in warnings[0], r.stderr
    shown = tomllib.loads(r.stdout)
    assert shown["data"]["resolution"] == 16 and "CIFAR-10" in shown["recipe"]


def test_presets_lists_each_recipe_with_its_source(tmp_path):
    r = cli("presets", "contragan", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tomllib.loads(r.stdout)  # still valid TOML: the recipe list is a comment
    comment = "\n".join(line for line in r.stdout.splitlines() if line.startswith("#"))
    for res in (32, 64, 128):
        line = next((ln for ln in comment.splitlines() if f"{res} px" in ln), "")
        assert "StudioGAN" in line, comment


@pytest.mark.parametrize("preset", ["sngan", "infomax-gan", "dualcontrast", "contragan", "xmcgan"])
def test_every_preset_has_recipes_and_each_builds(preset):
    from cgantool.recipes import preset_path, preset_recipes, read_toml

    recipes = preset_recipes(read_toml(preset_path(preset)))
    assert recipes, f"{preset} has no [recipes.RES] table"
    for recipe in recipes:
        cfg = resolve_config(preset, flags={"data.resolution": recipe.resolution})
        assert cfg.recipe == recipe.label and recipe.source
        if cfg.model.arch == "biggan":  # StudioGAN refuses z that does not split evenly over G's chunks
            from cgantool.nets.biggan import _LAYOUT

            chunks = len(_LAYOUT[recipe.resolution][1]) + 1
            assert cfg.model.z_dim % chunks == 0, (preset, recipe.resolution, cfg.model.z_dim, chunks)
