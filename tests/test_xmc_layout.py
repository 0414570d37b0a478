"""XMC-GAN against the official code: the 256 px layout (parameter counts pinned), the pretrained image–image
term never turning off silently, the encoder's preprocessing, and ``data.crop = false`` (the official resize)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cgantool.nets.xmcgan import XMCDiscriminator, XMCGenerator
from cgantool.text import TextCond

ROOT = Path(__file__).resolve().parents[1]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _official(resolution: int) -> tuple[XMCGenerator, XMCDiscriminator]:
    """gf = df = 96, z 128, BERT's 768-d word and sentence features; on the meta device (no memory, fast)."""
    with torch.device("meta"):
        return (XMCGenerator(resolution, z_dim=128, channels=96, text_dim=768),
                XMCDiscriminator(resolution, channels=96, text_dim=768))


# ------------------------------------------------------------------------------------ layout


def test_official_256px_parameter_counts():
    """The counts of the official Flax nets at 256 px: every Dense/Conv with a bias, BN without affine, the
    spectral-norm u vectors (buffers here, ``spectral_norm_stats`` there) not counted."""
    G, D = _official(256)
    assert _count(G) == 92_865_539
    assert _count(D) == 99_415_585


def test_128px_parameter_counts_unchanged():
    G, D = _official(128)
    assert (_count(G), _count(D)) == (78_507_779, 87_911_713)


def test_official_256px_layout():
    G, D = _official(256)
    # G: stem 16 gf, GenBlocks 16, 8 gf (4→8→16), word attention at 16x16, GenSpatialBlocks 8, 4, 2, 1 gf
    assert [b.c2.out_channels // 96 for b in G.global_blocks] == [16, 8]
    assert [b.c2.out_channels // 96 for b in G.spatial_blocks] == [8, 4, 2, 1]
    assert G.word_proj.in_channels == 8 * 96 and G.b_out.gain.in_channels == 768 + 128 + 128
    # D: optimized block df, then [2, 4, 8, 8, 16, 16] df, all downsampling but the last
    widths = [b.c2.parametrizations.weight.original.shape[0] // 96 for b in D.blocks]
    assert widths == [1, 2, 4, 8, 8, 16, 16]
    assert [b.downsample for b in D.blocks[1:]] == [True] * 5 + [False]
    assert D.blocks[-1].c_sc is None  # 16 df → 16 df without downsampling: the identity shortcut
    # region features from the 8 df block whose output is 16x16 (256 → 128 → 64 → 32 → 16)
    assert D.region_block == 3 and D.region.parametrizations.weight.original.shape[1] == 8 * 96


def test_256px_forward_shapes():
    torch.manual_seed(0)
    G, D = XMCGenerator(256, channels=2, text_dim=8), XMCDiscriminator(256, channels=2, text_dim=8)
    mask = torch.arange(4)[None] < torch.tensor([2, 4])[:, None]
    text = TextCond(torch.randn(2, 8), torch.randn(2, 4, 8), mask)
    x = G(torch.randn(2, 128), text)
    assert x.shape == (2, 3, 256, 256)
    out = D(x, text)
    assert out.logits.shape == (2,) and out.local.shape == (2, 256, 8) and out.h.shape == (2, 32)


# ------------------------------------------------------------------------------------ the pretrained term


def test_missing_encoder_weights_warn_once_on_stderr(tmp_path):
    """A real training run whose 'auto' encoder finds no weights says so in one warning line, and records none."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "CGANTOOL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "cgantool", "train", "--preset", "xmcgan", "--data", "shapes:32", "--steps", "1",
         "--batch-size", "4", "--out", str(out), "--no-progress", "--device", "cpu",
         "--set", "model.g_channels=8", "--set", "model.d_channels=8", "--set", "data.num_images=64",
         "--set", "text.dim=32", "--set", "text.pretrain_steps=2", "--set", "eval.every=0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "image-image term is off" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("warning: no ResNet-50/VGG16 ImageNet weights found in ")
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in lines[0] and "loss.xmc.image_encoder" in lines[0]
    assert "image-image" not in proc.stdout
    assert 'image_encoder = "none"' in (out / "config.toml").read_text()


def test_the_warning_is_only_for_auto_that_found_nothing():
    from cgantool.config import resolve_config
    from cgantool.engine.loop import _lost_pretrained_term

    def cfg(*sets):
        return resolve_config("xmcgan", sets=list(sets))

    none = cfg("loss.xmc.image_encoder=none", "model.conditioning=text")
    assert _lost_pretrained_term(cfg(), none)
    assert not _lost_pretrained_term(cfg("loss.xmc.image_encoder=none"), none)  # asked for none: no surprise
    assert not _lost_pretrained_term(cfg("loss.xmc.image_pretrained=0"), none)  # the term was off anyway
    assert not _lost_pretrained_term(cfg("loss.xmc.weight=0"), none)
    assert not _lost_pretrained_term(cfg(), cfg("loss.xmc.image_encoder=resnet50", "model.conditioning=text"))


def test_encoder_preprocessing_matches_the_official_resize(monkeypatch):
    """[-1, 1] → [0, 1] → bilinear 224 px, antialiased when shrinking (jax.image.resize), → ImageNet mean/std."""
    from cgantool.nets import image_encoders

    seen = []
    enc = image_encoders.PretrainedImageEncoder.__new__(image_encoders.PretrainedImageEncoder)
    torch.nn.Module.__init__(enc)
    enc.net = lambda x: seen.append(x) or x.mean((2, 3))
    enc.register_buffer("mean", torch.tensor(image_encoders._MEAN).view(1, 3, 1, 1))
    enc.register_buffer("std", torch.tensor(image_encoders._STD).view(1, 3, 1, 1))
    torch.manual_seed(0)
    for res in (128, 256):
        x = torch.rand(2, 3, res, res) * 2 - 1
        enc(x)
        unit = (x + 1) / 2
        expected = F.interpolate(unit, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        torch.testing.assert_close(seen[-1], (expected - enc.mean) / enc.std)
        plain = F.interpolate(unit, size=(224, 224), mode="bilinear", align_corners=False)
        if res == 128:  # growing: the antialiased resize is plain bilinear
            torch.testing.assert_close(expected, plain, atol=1e-5, rtol=0)
        else:  # shrinking: it is not (plain bilinear would skip pixels, as the official resize does not)
            assert (expected - plain).abs().max() > 0.05


# ------------------------------------------------------------------------------------ data.crop


def _stripes(path: Path) -> None:
    """40x20: green outer quarters, red and blue in the middle half (what a centre crop keeps)."""
    from PIL import Image

    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10, 1] = a[:, 30:, 1] = 255
    a[:, 10:20, 0] = 255
    a[:, 20:30, 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def test_decode_crop_true_keeps_the_centre_and_false_squashes_the_whole_image(tmp_path):
    from cgantool.data.decode import DECODE_PIXEL_BUDGET, _decode_one, _PixelBudget

    f = tmp_path / "stripes.png"
    _stripes(f)
    budget = _PixelBudget(DECODE_PIXEL_BUDGET)
    crop = _decode_one(f, 8, 10**6, budget).astype(int)
    whole = _decode_one(f, 8, 10**6, budget, False).astype(int)
    assert crop.shape == whole.shape == (3, 8, 8)
    # crop: the middle 20x20, red on the left, blue on the right, hardly any green
    assert crop[0, :, 0].min() > 200 and crop[2, :, 7].min() > 200 and crop[1].mean() < 20
    # no crop: all 40 columns in 8 (aspect changed): green at both edges, half of the image green
    assert whole[1, :, 0].min() > 200 and whole[1, :, 7].min() > 200 and 100 < whole[1].mean() < 155
    assert whole[0, :, 3].min() > 150 and whole[2, :, 4].min() > 150
    assert np.array_equal(crop, _decode_one(f, 8, 10**6, budget, True))  # the default is crop = true


def test_data_crop_reaches_the_cache_and_its_key(tmp_path, monkeypatch):
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset
    from cgantool.data.sources import cache_dir

    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CGANTOOL_DECODE_WORKERS", "2")  # through the decode processes, as a real folder goes
    _stripes(tmp_path / "data" / "a" / "0.png")
    cropped = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8))
    whole = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8, crop=False))
    assert cropped.images[0, 1].float().mean() < 20 and whole.images[0, 1].float().mean() > 100
    keys = sorted((json.loads((e / "meta.json").read_text())["key"] for e in (cache_dir() / "data").glob("folder-8-*")),
                  key=lambda k: "crop" in k)
    assert len(keys) == 2
    assert "crop" not in keys[0] and keys[1]["crop"] is False  # crop = true keeps the keys entries had before
    again = load_dataset(DataConfig(source=str(tmp_path / "data"), resolution=8, crop=False))
    assert torch.equal(again.images, whole.images)
    assert len(list((cache_dir() / "data").glob("folder-8-*"))) == 2
