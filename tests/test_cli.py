"""The CLI as users see it: train → sample end to end, resume equality, and every bad-input case
(one `error:` line, a `hint:`, exit code 2, no traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, invoke


def assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert sum(line.startswith("error:") for line in lines) == 1, result.output
    assert any(line.startswith("hint:") for line in lines), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_help_and_version(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("train", "sample", "presets", "config", "data", "info"):
        assert command in result.output
    assert invoke(runner, "--version").output.startswith("cgantool ")


def test_tiny_run_layout(tiny_run):
    ckpts = tiny_run / "checkpoints"
    assert (ckpts / "last.safetensors").exists()
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_0000004.safetensors", "step_0000008.safetensors"]
    assert (tiny_run / "samples" / "step_0000008.png").exists()
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert {"d/adv", "g/adv", "img_per_s", "lr_g"} <= rows[-1].keys()
    assert "train" in (tiny_run / "config.toml").read_text()


def test_sample_writes_grid_and_pngs(tiny_run, runner, tmp_path):
    out = tmp_path / "s"
    result = invoke(runner, "sample", tiny_run / "checkpoints" / "last.safetensors", "-n", "10", "--out", out)
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("0*.png"))
    assert len(pngs) == 10 and pngs[0].name == "0000.png"
    assert Image.open(pngs[0]).size == (16, 16)
    assert (out / "grid.png").exists()
    # never written into a non-empty folder silently
    assert_usage_error(invoke(runner, "sample", tiny_run / "checkpoints" / "last.safetensors", "-n", "2", "--out", out),
                       "not empty")


def test_sample_images_do_not_depend_on_batch_size(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    invoke(runner, "sample", ckpt, "-n", "5", "--batch-size", "5", "--out", tmp_path / "a", "--seed", "3")
    invoke(runner, "sample", ckpt, "-n", "5", "--batch-size", "2", "--out", tmp_path / "b", "--seed", "3")
    for i in range(5):
        a = np.asarray(Image.open(tmp_path / "a" / f"{i:04d}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"{i:04d}.png"))
        # the same z per image; batching may only move a pixel by one level (float summation order)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_resume_equals_uninterrupted(runner, tmp_path):
    common = ["--preset", "sngan", "--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu", *TINY,
              "--set", "train.checkpoint_every=3", "--set", "optim.lr_decay=none"]  # linear decay depends on --steps
    whole = invoke(runner, "train", *common, "--steps", "6", "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    half = invoke(runner, "train", *common, "--steps", "3", "--out", tmp_path / "half")
    assert half.exit_code == 0, half.output
    more = invoke(runner, "train", "--out", tmp_path / "half", "--resume", "--steps", "6", "--no-progress", "--device", "cpu")
    assert more.exit_code == 0, more.output
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "whole" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "half" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_channels_last_is_a_runtime_option(runner, tmp_path):
    """--channels-last changes the memory layout only: same losses, same checkpoint keys, plain G loads it."""
    from cgantool.checkpoint import load_checkpoint
    from cgantool.engine.model import load_generator

    common = ["--preset", "sngan", "--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu", *TINY,
              "--steps", "2", "--set", "train.log_every=1"]
    assert invoke(runner, "train", *common, "--no-channels-last", "--out", tmp_path / "a").exit_code == 0
    r = invoke(runner, "train", *common, "--channels-last", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    rows = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in "ab"]
    for ra, rb in zip(*rows):
        assert rb["d/adv"] == pytest.approx(ra["d/adv"], rel=1e-4) and rb["g/adv"] == pytest.approx(ra["g/adv"], rel=1e-4)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.safetensors")
    assert ckpt.tensors("G").keys() == load_checkpoint(tmp_path / "a" / "checkpoints" / "last.safetensors").tensors("G").keys()
    load_generator(ckpt)


def test_resume_refuses_a_changed_config(tiny_run, runner):
    result = invoke(runner, "train", "--out", tiny_run, "--resume", "--preset", "sngan", "--data", "shapes:16",
                    "--set", "optim.lr_g=0.5", "--no-progress")
    assert_usage_error(result, "optim.lr_g")


def test_existing_run_dir_is_not_overwritten(tiny_run, runner):
    before = (tiny_run / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    result = invoke(runner, "train", "--data", "shapes:16", "--steps", "1", "--out", tiny_run, "--no-progress")
    assert_usage_error(result, "already exists", "--resume", "--force")
    assert (tiny_run / "checkpoints" / "last.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "--preset", "contragn"], ["unknown preset 'contragn'", "did you mean 'contragan'"]),
        (["train", "--set", "train.batch_size=0"], ["train.batch_size"]),
        (["train", "--set", "model.g_chanels=3"], ["model.g_chanels", "model.g_channels"]),
        (["train", "--data", "/nonexistent/images"], ["data not found"]),
        (["train", "--preset", "contragan", "--data", "{flat}", "--steps", "1"], ["no class labels"]),
        (["train", "--set", "loss.cond_2c.weight=1", "--set", "model.conditioning=none", "--steps", "1"], ["needs class labels"]),
        (["sample", "{notckpt}"], ["not a cgantool checkpoint"]),
        (["sample", "/nonexistent.safetensors"], ["checkpoint not found"]),
        (["info", "{notckpt}"], ["not a cgantool checkpoint"]),
        (["config", "show", "--preset", "nope"], ["unknown preset"]),
    ],
)
def test_bad_input_is_one_line_exit_2(runner, tmp_path, args, fragments):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(flat / "a.png")
    notckpt = tmp_path / "model.safetensors"
    notckpt.write_bytes(b"\x80\x04garbage")
    args = [a.format(flat=flat, notckpt=notckpt) for a in args]
    result = invoke(runner, *args, "--out", tmp_path / "run") if args[0] == "train" else invoke(runner, *args)
    assert_usage_error(result, *fragments)


def test_class_options(tiny_run, runner, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.safetensors"
    assert invoke(runner, "sample", ckpt, "-n", "2", "--class", "red_circle", "--out", tmp_path / "a").exit_code == 0
    assert_usage_error(invoke(runner, "sample", ckpt, "--class", "red_circel", "--out", tmp_path / "b"),
                       "unknown class 'red_circel'", "red_circle")
    assert_usage_error(invoke(runner, "sample", ckpt, "--class", "99", "--out", tmp_path / "c"), "out of range")


def test_info_json(tiny_run, runner):
    # `--json FILE` (- = stdout) in info, eval and compare alike (issue 29 item 14): the bare flag became `--json -`
    result = invoke(runner, "info", tiny_run / "checkpoints" / "last.safetensors", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["preset"] == "sngan" and doc["step"] == 8 and doc["resolution"] == 16
    assert doc["conditioning"] == "class" and "red_circle" in doc["class_names"]


def test_config_show_is_toml_on_stdout(runner):
    import tomllib

    result = invoke(runner, "config", "show", "--preset", "infomax-gan", "--set", "train.batch_size=3")
    assert result.exit_code == 0, result.output
    doc = tomllib.loads(result.stdout)
    assert doc["loss"]["infomax"]["weight"] == 0.2 and doc["train"]["batch_size"] == 3
    schema = json.loads(invoke(runner, "config", "schema").stdout)
    assert "properties" in schema and "train" in schema["properties"]


def test_presets_listing(runner):
    result = invoke(runner, "presets")
    assert result.exit_code == 0
    for name in ("sngan", "infomax-gan", "contragan", "dualcontrast"):
        assert name in result.output
    shown = invoke(runner, "presets", "contragan")
    assert shown.exit_code == 0 and "StudioGAN" in shown.stdout
    import tomllib

    from cgantool.config import config_to_dict, resolve_config

    # stdout is exactly the preset's resolved config as TOML (the description a comment): it can be saved and reused
    assert tomllib.loads(shown.stdout) == config_to_dict(resolve_config("contragan"))


def test_data_export_round_trip(runner, tmp_path):
    out = tmp_path / "exp"
    result = invoke(runner, "data", "export", "shapes:16", out, "-n", "30")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    files = {row["file"] for row in lines}
    assert len(files) == 30 and all((out / f).exists() for f in files)
    assert all("/" in f for f in files)  # class sub-folders
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset

    again = load_dataset(DataConfig(source=str(out / "captions.jsonl"), resolution=16))
    assert len(again) == 30 and all(len(c) >= 1 for c in again.captions)


def _train_args(out, steps="6"):
    return ["train", "--data", "shapes:16", "--steps", steps, "--batch-size", "4", "--out", out, "--no-progress",
            "--device", "cpu", *TINY, "--set", "train.checkpoint_every=2", "--set", "optim.lr_decay=none"]


def test_ctrl_c_writes_a_resumable_checkpoint(runner, tmp_path, monkeypatch):
    import signal

    from cgantool.engine import loop

    original = loop.Trainer.g_step
    calls = {"n": 0}

    def g_step(self):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C during step 3
        return original(self)

    monkeypatch.setattr(loop.Trainer, "g_step", g_step)
    out = tmp_path / "run"
    result = invoke(runner, *_train_args(out))
    assert result.exit_code == 130, result.output
    assert "interrupted at step 3" in result.output and "--resume" in result.output
    assert "Traceback" not in result.output
    from cgantool.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == 3
    monkeypatch.setattr(loop.Trainer, "g_step", original)
    resumed = invoke(runner, "train", "--out", out, "--resume", "--no-progress", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == 6


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(runner, tmp_path, monkeypatch):
    import torch

    from cgantool.engine import loop

    original = loop.Trainer.d_step
    calls = {"n": 0}

    def d_step(self, **kw):
        losses, total = original(self, **kw)
        calls["n"] += 1
        return losses, total * torch.nan if calls["n"] == 3 else total

    monkeypatch.setattr(loop.Trainer, "d_step", d_step)
    out = tmp_path / "run"
    result = invoke(runner, *_train_args(out))
    assert result.exit_code == 1, result.output
    assert "NaN or inf before step 4" in result.output and "Traceback" not in result.output
    from cgantool.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == 2  # the last good one
    assert not (out / "checkpoints" / "step_0000004.safetensors").exists()


def test_every_option_and_argument_has_help_text():
    import typer

    from cgantool.cli import app

    root = typer.main.get_command(app)
    missing = []
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None) or {name: command}
        for sub, cmd in subcommands.items():
            for param in cmd.params:
                if param.name != "help" and not (getattr(param, "help", None) or "").strip():
                    missing.append(f"{name} {sub if sub != name else ''} {param.name}".replace("  ", " "))
    assert not missing, missing
