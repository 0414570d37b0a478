"""Issue 29 item 2 (text parts): the builtin text encoder's pretraining shows progress on stderr, and a short run
pretrains in proportion to its length unless text.pretrain_steps is set."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch

from cgantool.config import resolve_config
from cgantool.text.pretrain import MIN_STEPS, PretrainProgress, pretrain_steps
from tests.conftest import ROOT

# The smoke test (a 2-step xmcgan run at tiny widths), made lighter where it does not touch pretraining.
XMC_SMOKE = ["--preset", "xmcgan", "--data", "shapes:32", "--steps", "2", "--set", "model.g_channels=8",
             "--set", "model.d_channels=8", "--device", "cpu", "--batch-size", "8", "--set", "data.num_images=256",
             "--set", "text.pretrain_batch_size=16", "--set", "loss.xmc.image_encoder=none"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """A cache of its own per test, so the pretraining really runs (subprocesses inherit it)."""
    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path_factory.mktemp("cache")))


def _train(tmp_path, name: str, *extra: str) -> str:
    """``python -m cgantool train`` with stderr sent to a file (not a terminal); returns what it wrote there."""
    err = tmp_path / f"{name}.stderr"
    with open(err, "w") as f:
        done = subprocess.run([sys.executable, "-m", "cgantool", "train", *XMC_SMOKE, "--out", str(tmp_path / name),
                               *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, timeout=900,
                              env={**os.environ, "COLUMNS": "200"})
    text = err.read_text()
    assert done.returncode == 0, text
    return text


def test_short_xmcgan_run_pretrains_briefly_with_progress_on_stderr(tmp_path):
    from cgantool.checkpoint import load_checkpoint

    text = _train(tmp_path, "run")
    lines = text.splitlines()
    (start,) = [line for line in lines if line.startswith("pretraining the builtin text encoder")]
    assert f"{MIN_STEPS} steps, not text.pretrain_steps = 600, for a 2-step run" in start
    (end,) = [line for line in lines if line.startswith("pretrained the text encoder:")]
    assert end.startswith(f"pretrained the text encoder: {MIN_STEPS} steps in ") and "loss " in end
    assert "\x1b[" not in text  # plain lines in a file, no bar
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert ckpt.data_info["text"]["pretrain_steps"] == MIN_STEPS  # what was run is recorded


def test_explicit_pretrain_steps_are_used_as_given(tmp_path):
    text = _train(tmp_path, "run", "--set", "text.pretrain_steps=3")
    (start,) = [line for line in text.splitlines() if line.startswith("pretraining the builtin text encoder")]
    assert "(3 steps;" in start and "not text.pretrain_steps" not in start
    assert "pretrained the text encoder: 3 steps in " in text


def test_pretrain_steps_rule():
    def steps(train_steps: int, *sets: str) -> int:
        return pretrain_steps(resolve_config("xmcgan", sets=[f"train.steps={train_steps}", *sets]))[0]

    assert steps(2) == MIN_STEPS == 20
    assert steps(100) == 50
    assert steps(1200) == steps(100_000) == 600  # full pretraining from 1,200 GAN steps
    assert steps(2, "text.pretrain_steps=600") == 600  # set explicitly: used as given
    assert steps(2, "text.pretrain_steps=0") == 0
    assert steps(100, "text.pretrain_steps=30") == 30
    assert pretrain_steps(resolve_config("xmcgan", sets=["train.steps=1200"]))[1] == ""


def test_progress_lines_when_stderr_is_a_file():
    out = io.StringIO()
    with PretrainProgress(3, interval=0.0, stream=out) as progress:
        for i in range(3):
            progress.step(torch.tensor(3.0 - i))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("pretraining the text encoder: step 1/3 (") and "ETA" in lines[0]
    assert "loss 3.000" in lines[0] and len(lines) == 4
    assert lines[-1].startswith("pretrained the text encoder: 3 steps in ") and lines[-1].endswith("loss 1.000")


def test_progress_is_silent_off_rank_0(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    out = io.StringIO()
    with PretrainProgress(2, interval=0.0, stream=out) as progress:
        progress.step(torch.tensor(1.0))
        progress.step(torch.tensor(1.0))
    assert out.getvalue() == ""


def test_progress_bar_in_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with PretrainProgress(3, interval=0.0, stream=out) as progress:
        for _ in range(3):
            progress.step(torch.tensor(2.0))
    text = out.getvalue()
    assert "pretraining text encoder" in text and "3/3" in text  # the rich bar
    assert "pretraining the text encoder: step" not in text  # no plain lines beside it
    assert text.rstrip().endswith("pretrained the text encoder: 3 steps in 0s, loss 2.000")
