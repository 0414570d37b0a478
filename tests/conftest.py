"""Shared fixtures: an isolated cache dir, the CLI runner, and one tiny trained run per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tiny, CPU-sized settings used by every end-to-end test.
TINY = [
    "--set", "model.g_channels=16", "--set", "model.d_channels=16",
    "--set", "train.d_steps_per_g_step=1", "--set", "data.num_images=256",
    "--set", "train.log_every=2", "--set", "train.sample_every=4", "--set", "train.checkpoint_every=4",
]


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Every test writes cgantool's cache into a fresh temporary folder, never ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CGANTOOL_CACHE", str(tmp_path_factory.mktemp("cgantool-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def invoke(runner, *args: str):
    from cgantool.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, runner):
    """A conditional sngan trained for 8 steps on shapes:16 through the real CLI; returns the run dir."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke(runner, "train", "--preset", "sngan", "--data", "shapes:16", "--steps", "8",
                    "--batch-size", "8", "--out", out, "--no-progress", "--device", "cpu", *TINY)
    assert result.exit_code == 0, result.output
    return out
