"""safetensors checkpoints: round trip of weights, optimizer state and metadata; bad files are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from cgantool.checkpoint import load_checkpoint, save_checkpoint, unflatten_optimizer
from cgantool.config import resolve_config
from cgantool.errors import CheckpointError


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))


def test_round_trip_weights_optimizer_metadata(tmp_path):
    cfg = resolve_config("contragan", sets=["train.batch_size=7"])
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    path = tmp_path / "c.safetensors"
    info = {"resolution": 16, "class_names": ["a", "b"], "num_classes": 2}
    save_checkpoint(path, config=cfg, step=42, data_info=info, modules={"G": model}, optimizers={"opt_G": opt},
                    rng={"noise": torch.Generator().manual_seed(3).get_state()}, metrics={"fid": 1.5},
                    state={"data_position": 99})
    ckpt = load_checkpoint(path)
    assert ckpt.config == cfg and ckpt.preset == "contragan" and ckpt.step == 42
    assert ckpt.data_info == info and ckpt.metrics == {"fid": 1.5} and ckpt.state["data_position"] == 99
    loaded = ckpt.tensors("G")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # optimizer: a fresh Adam loaded from the file continues exactly like the original
    model2 = _model()
    model2.load_state_dict(loaded)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt2.load_state_dict(unflatten_optimizer(ckpt.tensors("opt_G"), ckpt.state["opt_G.param_groups"]))
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(torch.ones(5, 4)).sum().backward()
        o.step()
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    assert torch.equal(ckpt.tensors("rng")["noise"], torch.Generator().manual_seed(3).get_state())
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed away


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(CheckpointError, match="not a cgantool checkpoint"):
        load_checkpoint(bad)


def test_foreign_safetensors(tmp_path):
    other = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="safetensors file but not a cgantool checkpoint"):
        load_checkpoint(other)


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "new.safetensors"
    save_file({"G.w": torch.zeros(2)}, str(path), metadata={"format": "cgantool", "format_version": "99"})
    with pytest.raises(CheckpointError, match="newer cgantool"):
        load_checkpoint(path)


def test_damaged_metadata(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"G.w": torch.zeros(2)}, str(path),
              metadata={"format": "cgantool", "format_version": "1", "config": json.dumps({"nope": 1})})
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_a_checkpoint_written_before_the_architecture_step_still_samples(runner, tmp_path):
    """tests/data/sngan-16px-before-0.2.safetensors was written by commit 7986aac (before terms owned their config
    sections and the engine was split): a 2-step width-4 sngan on shapes:16, kept as bytes."""
    from cgantool.checkpoint import load_checkpoint
    from tests.conftest import ROOT, invoke

    old = ROOT / "tests" / "data" / "sngan-16px-before-0.2.safetensors"
    ckpt = load_checkpoint(old)
    assert (ckpt.preset, ckpt.step, ckpt.config.model.conditioning) == ("sngan", 2, "class")
    assert ckpt.config.loss.cond_2c.weight == 0.0 and ckpt.config.model.g_channels == 4
    result = invoke(runner, "sample", old, "-n", "4", "--class", "red_circle", "--out", tmp_path / "s", "--device", "cpu")
    assert result.exit_code == 0, result.output
    from PIL import Image

    images = sorted((tmp_path / "s").glob("0*.png"))
    assert len(images) == 4 and all(Image.open(p).size == (16, 16) for p in images)
    info = invoke(runner, "info", old)
    assert info.exit_code == 0 and "sngan" in info.output


def test_files_follow_the_umask_as_cp_would(tmp_path):
    import os
    import stat

    import torch

    from cgantool.files import atomic_write

    old = os.umask(0o022)
    try:
        path = tmp_path / "w.safetensors"
        from safetensors.torch import save_file

        atomic_write(path, lambda tmp: save_file({"x": torch.zeros(2)}, str(tmp)))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # safetensors alone writes 0600
        os.umask(0o077)
        atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("x"))
        assert stat.S_IMODE((tmp_path / "c.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)
