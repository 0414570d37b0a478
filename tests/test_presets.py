"""The contrastive presets: each trains and samples from the CLI, terms compose, the contrastive gradient
reaches G, and a short run drives each method's loss the way the method intends."""

from __future__ import annotations

import math

import pytest
import torch

from cgantool.config import resolve_config
from cgantool.data import load_dataset
from cgantool.engine.trainer import build_trainer
from cgantool.engine.model import build_gan
from cgantool.errors import ConfigError
from cgantool.terms import Batch
from tests.conftest import TINY, invoke

PRESETS = ["sngan", "infomax-gan", "contragan", "dualcontrast"]
SMALL = ["model.g_channels=16", "model.d_channels=16", "data.num_images=256", "data.resolution=16"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_and_samples_from_the_cli(preset, runner, tmp_path):
    out = tmp_path / preset
    result = invoke(runner, "train", "--preset", preset, "--data", "shapes:16", "--steps", "2", "--batch-size", "4",
                    "--out", out, "--no-progress", "--device", "cpu", *TINY, "--set", "loss.infomax.rkhs_dim=64",
                    "--set", "loss.cond_2c.embed_dim=32")
    assert result.exit_code == 0, result.output
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert rows
    result = invoke(runner, "sample", out / "checkpoints" / "last.safetensors", "-n", "4", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").glob("0*.png"))) == 4


def test_presets_train_on_an_image_folder(runner, tmp_path):
    folder = tmp_path / "folder"
    assert invoke(runner, "data", "export", "shapes:16", folder, "-n", "40").exit_code == 0
    for preset in ("sngan", "infomax-gan", "contragan", "dualcontrast"):
        result = invoke(runner, "train", "--preset", preset, "--data", str(folder), "--steps", "1", "--batch-size", "4",
                        "--out", tmp_path / preset, "--no-progress", "--device", "cpu", *TINY,
                        "--set", "data.resolution=16", "--set", "loss.infomax.rkhs_dim=32",
                        "--set", "loss.cond_2c.embed_dim=16")
        assert result.exit_code == 0, result.output


def test_logged_terms_per_preset(runner, tmp_path):
    import json

    out = tmp_path / "combo"
    # contragan + InfoMax's InfoNCE + the dual contrastive adversarial loss: every term shows up in the log
    result = invoke(runner, "train", "--preset", "contragan", "--data", "shapes:16", "--steps", "2", "--batch-size", "4",
                    "--out", out, "--no-progress", "--device", "cpu", *TINY, "--set", "loss.infomax.weight=0.2",
                    "--set", "loss.infomax.rkhs_dim=32", "--set", "loss.adversarial=dual_contrastive",
                    "--set", "loss.cond_2c.embed_dim=32")
    assert result.exit_code == 0, result.output
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"d/adv", "d/cond_2c", "d/infonce", "g/adv", "g/cond_2c", "g/infonce"} <= row.keys()


def test_2c_without_labels_fails_validation():
    with pytest.raises(ConfigError, match="needs class labels"):
        resolve_config("sngan", sets=["loss.cond_2c.weight=1.0", "model.conditioning=none"])
    cfg = resolve_config("sngan", sets=["loss.cond_2c.weight=1.0"])  # 'auto' on unlabelled data
    with pytest.raises(ConfigError, match="needs class labels"):
        build_gan(cfg, {"num_classes": 0, "resolution": 16, "source": "folder"})
    with pytest.raises(ConfigError, match="no class labels"):
        build_gan(resolve_config("contragan"), {"num_classes": 0, "resolution": 32, "source": "folder"})


@pytest.mark.parametrize("preset, term", [("infomax-gan", "infomax"), ("contragan", "cond_2c")])
def test_generator_gets_the_contrastive_gradient(preset, term):
    torch.manual_seed(0)
    cfg = resolve_config(preset, sets=SMALL + ["loss.infomax.rkhs_dim=32", "loss.cond_2c.embed_dim=16"])
    gan = build_gan(cfg, {"num_classes": 20, "resolution": 16, "source": "shapes"})
    (t,) = [t for t in gan.terms if t.name == term]
    z = torch.randn(6, gan.G.z_dim)
    y = torch.randint(0, 20, (6,)) if gan.num_classes else None
    fake = gan.D(gan.G(z, y), y)
    loss = t.g_loss(gan.head(t), fake, None, Batch(real_c=None, fake_c=y))
    loss.backward()
    grads = [p.grad for p in gan.G.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    head_grads = [p.grad for p in gan.head(t).parameters()]
    assert all(g is not None for g in head_grads)  # back-propagated through D's heads


def _run(preset, steps, sets, d_only=False):
    torch.manual_seed(0)
    cfg = resolve_config(preset, sets=SMALL + ["train.batch_size=16", "train.d_steps_per_g_step=1"] + sets)
    t = build_trainer(cfg, load_dataset(cfg.data), torch.device("cpu"), None)
    history = []
    for _ in range(steps):
        d, _ = t.d_step()
        if not d_only:
            t.g_step()
        history.append({k: float(v.detach()) for k, v in d.items()})
    return history


def _mean(history, key, sl):
    values = [h[key] for h in history[sl]]
    return sum(values) / len(values)


def test_contragan_2c_loss_on_real_falls_below_chance():
    # B = 16 over 20 classes: with no structure every similarity is equal and L_2C ≈ ln(16) = 2.77
    h = _run("contragan", 250, ["model.z_dim=80", "loss.cond_2c.embed_dim=64", "train.ema_decay=0"])
    assert _mean(h, "cond_2c", slice(0, 25)) > math.log(16) - 0.1  # starts at chance
    assert _mean(h, "cond_2c", slice(-25, None)) < math.log(16) - 0.3


def test_infomax_nce_on_real_falls_below_chance():
    # weight 1 to read the NCE directly; chance = log(1 + (B-1) L) with B = 16, L = 4x4 positions = 5.48
    h = _run("infomax-gan", 200, ["loss.infomax.weight=1.0", "loss.infomax.rkhs_dim=64", "model.d_channels=32"],
             d_only=True)
    chance = math.log(1 + 15 * 16)
    assert abs(_mean(h, "infonce", slice(0, 5)) - chance) < 0.3  # starts near chance
    assert _mean(h, "infonce", slice(-10, None)) < chance - 0.6


def test_dualcontrast_d_loss_falls():
    # the dual contrastive D loss is 2 ln(1 + B) = 5.67 when D cannot tell real from fake; D learns to
    h = _run("dualcontrast", 60, [], d_only=True)
    assert _mean(h, "adv", slice(-10, None)) < 2 * math.log(17) - 1.0


def test_sngan_hinge_d_loss_falls():
    h = _run("sngan", 120, [], d_only=True)
    assert _mean(h, "adv", slice(-10, None)) < 1.0  # 2.0 when real and fake logits are both 0


def test_d2d_ce_term_composes_onto_contragan(runner, tmp_path):
    import json

    out = tmp_path / "reacgan-ish"
    result = invoke(runner, "train", "--preset", "contragan", "--data", "shapes:16", "--steps", "2", "--batch-size", "4",
                    "--out", out, "--no-progress", "--device", "cpu", *TINY, "--set", "loss.cond_2c.weight=0",
                    "--set", "loss.d2d_ce.weight=1.0", "--set", "loss.d2d_ce.embed_dim=16")
    assert result.exit_code == 0, result.output
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "d/d2d_ce" in row and "g/d2d_ce" in row and "d/cond_2c" not in row
    with pytest.raises(ConfigError, match="D2D-CE"):
        resolve_config("sngan", sets=["loss.d2d_ce.weight=1.0", "model.conditioning=none"])


def test_class_terms_replace_the_projection():
    cfg = resolve_config("sngan", sets=SMALL + ["loss.d2d_ce.weight=1.0", "loss.d2d_ce.embed_dim=8"])
    gan = build_gan(cfg, {"num_classes": 20, "resolution": 16, "source": "shapes"})
    assert gan.D.backbone.embed is None and "d2d_ce" in gan.D.heads  # no projection: D2D-CE conditions D
    plain = build_gan(resolve_config("sngan", sets=SMALL), {"num_classes": 20, "resolution": 16, "source": "shapes"})
    assert plain.D.backbone.embed is not None
