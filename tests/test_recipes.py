"""Each preset's official per-resolution recipes (issue 31 item 1): the numbers, where they come from, and which
recipe a run picks (cgantool.recipes.choose through resolve_config)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgantool.config import resolve_config, validate_config
from cgantool.engine.model import build_gan
from cgantool.recipes import preset_path, preset_recipes, read_toml

STUDIO = "PyTorch-StudioGAN"
MIMICRY = "Mimicry README.md"
XMC = "xmcgan_image_generation xmcgan/configs/coco_xmc.py"

# The Mimicry README's "Training Parameters" rows (batch, lr, betas, decay, n_dis, n_iter), also used by InfoMax-GAN
# and, as that preset's documented choice (no official code exists), by DualContrast. Mimicry never flips.
MIMICRY_ROW = {"train.batch_size": 64, "optim.lr_g": 2e-4, "optim.lr_d": 2e-4, "optim.beta1": 0.0,
               "optim.beta2": 0.9, "train.steps": 100000, "train.ema_decay": 0.0, "train.hflip": False}
MIMICRY_LINEAR_5 = {**MIMICRY_ROW, "optim.lr_decay": "linear", "train.d_steps_per_g_step": 5}
MIMICRY_CELEBA_128 = {**MIMICRY_ROW, "optim.lr_decay": "none", "train.d_steps_per_g_step": 2}

# ContraGAN: common to StudioGAN's three configs (hinge, lambda 1, t 1, shared embedding 128, Adam eps 1e-6 in
# src/config.py, EMA 0.9999, random flip PRE.apply_rflip = True, no DiffAugment in the plain configs).
STUDIO_COMMON = {"loss.adversarial": "hinge", "loss.cond_2c.weight": 1.0, "loss.cond_2c.temperature": 1.0,
                 "model.shared_dim": 128, "model.attention_resolution": 0, "optim.eps": 1e-6,
                 "optim.lr_decay": "none", "train.ema_decay": 0.9999, "train.hflip": True, "train.diffaug": ""}

# XMC-GAN: coco_xmc.py (beta1, beta2, d_lr, g_lr, polyak_decay, batch_size, gf_dim, df_dim, z_dim,
# d_step_per_g_step, num_epochs 500 → 500 x 82,783 // (2 x 56) G steps); coco_dataset.py resizes without a crop
# and flips.
XMC_ROW = {"optim.lr_g": 1e-4, "optim.lr_d": 4e-4, "optim.beta1": 0.5, "optim.beta2": 0.999,
           "train.batch_size": 56, "train.d_steps_per_g_step": 2, "train.ema_decay": 0.999,
           "train.ema_start_step": 0, "train.steps": 500 * 82_783 // 112, "model.z_dim": 128,
           "model.g_channels": 96, "model.d_channels": 96, "data.crop": False, "train.hflip": True}

# preset, resolution, recipe name, source file (in the recipe's `source`), official values
TABLE = [
    # StudioGAN v.0.4.0 src/configs/CIFAR10/ContraGAN.yaml + src/config.py defaults (= v0.2.0 CIFAR10/ContraGAN.json)
    ("contragan", 32, "CIFAR-10", "src/configs/CIFAR10/ContraGAN.yaml",
     {**STUDIO_COMMON, "model.z_dim": 80, "model.g_channels": 96, "model.d_channels": 96,
      "loss.cond_2c.embed_dim": 512, "train.batch_size": 64, "optim.lr_g": 2e-4, "optim.lr_d": 2e-4,
      "optim.beta1": 0.5, "optim.beta2": 0.999, "train.d_steps_per_g_step": 5, "train.steps": 100000,
      "train.ema_start_step": 1000}),
    # StudioGAN v.0.3.0 src/configs/Tiny_ImageNet/ContraGAN.yaml (= v0.2.0 TINY_ILSVRC2012/ContraGAN.json)
    ("contragan", 64, "Tiny ImageNet", "src/configs/Tiny_ImageNet/ContraGAN.yaml",
     {**STUDIO_COMMON, "model.z_dim": 100, "model.g_channels": 80, "model.d_channels": 80,
      "loss.cond_2c.embed_dim": 768, "train.batch_size": 1024, "optim.lr_g": 1e-4, "optim.lr_d": 4e-4,
      "optim.beta1": 0.0, "optim.beta2": 0.999, "train.d_steps_per_g_step": 1, "train.steps": 100000,
      "train.ema_start_step": 20000}),
    # StudioGAN v.0.4.0 src/configs/ImageNet/ContraGAN-256.yaml (= v0.2.0 ILSVRC2012/ContraGAN256.json)
    ("contragan", 128, "ImageNet", "src/configs/ImageNet/ContraGAN-256.yaml",
     {**STUDIO_COMMON, "model.z_dim": 120, "model.g_channels": 96, "model.d_channels": 96,
      "loss.cond_2c.embed_dim": 1536, "train.batch_size": 256, "optim.lr_g": 5e-5, "optim.lr_d": 2e-4,
      "optim.beta1": 0.0, "optim.beta2": 0.999, "train.d_steps_per_g_step": 2, "train.steps": 200000,
      "train.ema_start_step": 20000}),
    # Mimicry README.md, Baselines: CIFAR-10 32 x 32 / STL-10 48 x 48 / CelebA 64 x 64 / CelebA 128 x 128 rows
    ("sngan", 32, "CIFAR-10", "CIFAR-10 32 x 32", MIMICRY_LINEAR_5),
    ("sngan", 48, "STL-10", "STL-10 48 x 48", MIMICRY_LINEAR_5),
    ("sngan", 64, "CelebA", "CelebA 64 x 64", MIMICRY_LINEAR_5),
    ("sngan", 128, "CelebA", "CelebA 128 x 128", MIMICRY_CELEBA_128),
    # Mimicry README.md, the same rows (its InfoMax-GAN results were trained with them); nets/infomax_gan nrkhs 1024
    ("infomax-gan", 32, "CIFAR-10", "CIFAR-10 32 x 32", {**MIMICRY_LINEAR_5, "loss.infomax.rkhs_dim": 1024}),
    ("infomax-gan", 48, "STL-10", "STL-10 48 x 48", {**MIMICRY_LINEAR_5, "loss.infomax.rkhs_dim": 1024}),
    ("infomax-gan", 64, "CelebA", "CelebA 64 x 64", {**MIMICRY_LINEAR_5, "loss.infomax.rkhs_dim": 1024}),
    ("infomax-gan", 128, "CelebA", "CelebA 128 x 128", {**MIMICRY_CELEBA_128, "loss.infomax.rkhs_dim": 1024}),
    # no official code: methods.md "DualContrast" + Mimicry's SNGAN rows (the preset's documented recipe)
    ("dualcontrast", 32, "CIFAR-10", "CIFAR-10 32 x 32", MIMICRY_LINEAR_5),
    ("dualcontrast", 48, "STL-10", "STL-10 48 x 48", MIMICRY_LINEAR_5),
    ("dualcontrast", 64, "CelebA", "CelebA 64 x 64", MIMICRY_LINEAR_5),
    ("dualcontrast", 128, "CelebA", "CelebA 128 x 128", MIMICRY_CELEBA_128),
    # google-research/xmcgan_image_generation xmcgan/configs/coco_xmc.py (128 px; 256 px = image_size 256)
    ("xmcgan", 128, "COCO-2014", XMC, XMC_ROW),
    ("xmcgan", 256, "COCO-2014", XMC, XMC_ROW),
]


def value(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("preset,res,name,source,expected", TABLE, ids=[f"{r[0]}-{r[1]}" for r in TABLE])
def test_recipe_carries_the_official_numbers(preset, res, name, source, expected):
    cfg = resolve_config(preset, sets=[f"data.resolution={res}"])
    assert cfg.data.resolution == res
    assert cfg.recipe.startswith(f"{name} {res} px (") and source in cfg.recipe, cfg.recipe
    got = {key: value(cfg, key) for key in expected}
    assert got == expected
    if preset == "dualcontrast":
        assert "no official code" in cfg.recipe


def test_every_recipe_is_in_the_table():
    """A recipe added to a preset file needs its row (and its numbers checked) here."""
    for preset in ("contragan", "sngan", "infomax-gan", "dualcontrast", "xmcgan"):
        recipes = {r.resolution for r in preset_recipes(read_toml(preset_path(preset)))}
        assert recipes == {row[1] for row in TABLE if row[0] == preset}, preset


# StudioGAN's own training logs print G's and D's parameter counts (logs/CIFAR10/ContraGAN-train-2020_10_04_21_50_14
# .log, logs/TINY_IMAGENET/ContraGAN-train-2021_01_01_09_35_08.log, logs/IMAGENET/ContraGAN256-train-2021_01_25_13_55
# _18.log); attention_after_nth_gen_block 2 / 3 / 4 and attention_after_nth_dis_block 1 in all three configs.
@pytest.mark.parametrize("res,classes,g_params,d_params,g_attn_block", [
    (32, 10, 9_416_196, 2_517_186, 2),
    (64, 200, 17_335_204, 31_678_130, 3),
    (128, 1000, 70_433_988, 90_343_202, 4),
])
def test_contragan_recipes_build_studiogans_networks(res, classes, g_params, d_params, g_attn_block):
    cfg = resolve_config("contragan", sets=[f"data.resolution={res}"])
    with torch.device("meta"):  # shapes only
        gan = build_gan(cfg, {"num_classes": classes, "resolution": res, "source": "folder"})
    assert sum(p.numel() for p in gan.G.parameters()) == g_params
    assert sum(p.numel() for p in gan.D.parameters()) == d_params
    assert gan.G.attn_after == g_attn_block - 1 and gan.D.backbone.attn_after == 0
    assert gan.G.shared.weight.shape == (classes, 128)
    assert len(set(gan.G.chunks)) == 1  # z splits evenly over the chunks, as StudioGAN requires


def test_biggan_shared_dim_and_attention_keys_reach_the_nets():
    cfg = resolve_config("contragan", sets=["data.resolution=32", "model.shared_dim=64",
                                            "model.attention_resolution=8"])
    with torch.device("meta"):
        gan = build_gan(cfg, {"num_classes": 10, "resolution": 32, "source": "folder"})
    assert gan.G.shared.weight.shape == (10, 64)
    assert gan.G.attn_after == 0  # G blocks output 8, 16, 32 px
    assert gan.D.backbone.attn_after == 1  # D blocks output 16, 8, 8, 8 px
    # an older run's stored config has neither key: the defaults are today's nets
    raw = resolve_config("contragan").model_dump(mode="json")
    del raw["model"]["shared_dim"], raw["model"]["attention_resolution"]
    old = validate_config(raw, stored=True)
    assert old.model.shared_dim == 128 and old.model.attention_resolution == 0


# ----------------------------------------------------------------------------------------------
# Which recipe a run trains


def photo_folder(root: Path, size: tuple[int, int] = (400, 300), n: int = 3) -> Path:
    """Two class sub-folders of PNGs of ``size`` (width, height)."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_cifar10_picks_the_32_px_recipe():
    notes: list[str] = []
    cfg = resolve_config("contragan", flags={"data.source": "cifar10"}, notes=notes)
    assert cfg.data.resolution == 32 and cfg.recipe.startswith("CIFAR-10 32 px") and notes == []
    cfg = resolve_config("sngan", flags={"data.source": "cifar100"})
    assert cfg.data.resolution == 32 and "CIFAR-10 32 x 32" in cfg.recipe


def test_an_image_folder_of_photos_picks_the_128_px_recipe(tmp_path):
    folder = photo_folder(tmp_path / "photos")  # short side 300 px
    notes: list[str] = []
    cfg = resolve_config("contragan", flags={"data.source": str(folder)}, notes=notes)
    assert cfg.data.resolution == 128 and cfg.recipe.startswith("ImageNet 128 px") and notes == []
    assert cfg.model.z_dim == 120 and cfg.train.batch_size == 256
    cfg = resolve_config("sngan", flags={"data.source": str(folder)})
    assert cfg.data.resolution == 128 and cfg.train.d_steps_per_g_step == 2


def test_an_explicit_resolution_wins_over_the_data(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    cfg = resolve_config("contragan", sets=["data.resolution=64"], flags={"data.source": str(folder)})
    assert cfg.data.resolution == 64 and cfg.recipe.startswith("Tiny ImageNet 64 px")
    cfg = resolve_config("contragan", flags={"data.source": str(folder), "data.resolution": 32})
    assert cfg.data.resolution == 32 and cfg.recipe.startswith("CIFAR-10 32 px")


def test_a_resolution_without_recipe_trains_the_nearest_with_one_warning():
    notes: list[str] = []
    cfg = resolve_config("contragan", sets=["data.resolution=48"], notes=notes)
    assert cfg.data.resolution == 48
    assert cfg.recipe.startswith("CIFAR-10 32 px") and cfg.model.z_dim == 80  # 32 and 64 tie: the smaller
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "48 px" in notes[0] and "32 px" in notes[0]


def test_the_users_set_wins_over_the_recipe():
    cfg = resolve_config("contragan", sets=["data.resolution=128", "train.batch_size=32", "model.z_dim=60",
                                            "loss.cond_2c.embed_dim=64"])
    assert (cfg.train.batch_size, cfg.model.z_dim, cfg.loss.cond_2c.embed_dim) == (32, 60, 64)
    assert cfg.optim.lr_g == 5e-5 and cfg.train.d_steps_per_g_step == 2  # the rest is still the recipe's
    cfg = resolve_config("sngan", sets=["data.resolution=128"], flags={"train.d_steps_per_g_step": 5})
    assert cfg.train.d_steps_per_g_step == 5 and cfg.optim.lr_decay == "none"


def test_an_only_when_asked_recipe_is_never_picked_from_the_data(tmp_path):
    folder = photo_folder(tmp_path / "big", size=(700, 600), n=2)  # large enough for 256 px
    notes: list[str] = []
    cfg = resolve_config("xmcgan", flags={"data.source": str(folder)}, notes=notes)
    assert cfg.data.resolution == 128 and cfg.recipe.startswith("COCO-2014 128 px") and notes == []
    cfg = resolve_config("xmcgan", flags={"data.source": str(folder), "data.resolution": 256})
    assert cfg.data.resolution == 256 and cfg.recipe.startswith("COCO-2014 256 px")
    assert resolve_config("xmcgan").data.resolution == 128  # the built-in shapes: the preset's own 128 px


def test_the_folder_probe_samples_the_class_folders_without_walking_the_tree(tmp_path, monkeypatch):
    """An ImageNet-like tree: 200 class folders, the first half of small images, the second of large ones. The probe
    reads at most 64 headers spread over the classes (so the median is the large side, not the first classes'),
    never walks the whole tree (the data build does that once), and ignores root files beside class folders."""
    import cgantool.data.sources as sources
    import cgantool.recipes as recipes

    root = tmp_path / "tree"
    for k in range(200):
        (root / f"n{k:03d}").mkdir(parents=True)
        size = (40, 40) if k < 90 else (300, 300)
        for i in range(3):
            Image.new("RGB", size).save(root / f"n{k:03d}" / f"{i}.png")
    Image.new("RGB", (20, 20)).save(root / "stray.png")
    monkeypatch.setattr(sources, "image_files", lambda root: pytest.fail("the probe listed the whole folder"))
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    assert recipes.typical_short_side(str(root)) == 300
    assert 32 <= len(opened) <= 64 and len({Path(f).parent.name for f in opened}) >= 32
    assert not any(f.endswith("stray.png") for f in opened)
    flat = tmp_path / "flat"  # a flat folder: its own images, evenly spaced
    flat.mkdir()
    for i in range(10):
        Image.new("RGB", (50 + i, 80)).save(flat / f"{i}.png")
    assert recipes.typical_short_side(str(flat)) == 55
    nested = tmp_path / "nested" / "cls" / "sub"  # class/sub/img: found below the class folder
    nested.mkdir(parents=True)
    Image.new("RGB", (70, 90)).save(nested / "0.png")
    assert recipes.typical_short_side(str(tmp_path / "nested")) == 70
