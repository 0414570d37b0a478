"""R1 through the trainer (`loss.r1`, on in `dualcontrast`): StyleGAN2's lazy schedule (`every`), its N x weight,
its place in the logs and an exact resume. The penalty's formula is tested in test_losses.py, its multi-process
sum in test_distributed.py."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import invoke

COMMON = ["--preset", "dualcontrast", "--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu",
          "--set", "model.g_channels=8", "--set", "model.d_channels=8", "--set", "data.num_images=64",
          "--set", "optim.lr_decay=none", "--set", "train.log_every=1", "--set", "train.sample_every=100"]


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_lazy_r1_runs_on_one_d_update_in_n_weighted_n_times(runner, tmp_path):
    one = ["--set", "train.d_steps_per_g_step=1"]
    r = invoke(runner, "train", *COMMON, *one, "--steps", "4", "--set", "loss.r1.every=2", "--out", tmp_path / "lazy")
    assert r.exit_code == 0, r.output
    r = invoke(runner, "train", *COMMON, *one, "--steps", "1", "--set", "loss.r1.every=1", "--out", tmp_path / "each")
    assert r.exit_code == 0, r.output
    lazy, each = _rows(tmp_path / "lazy"), _rows(tmp_path / "each")
    assert ["d/r1" in row for row in lazy] == [True, False, True, False]  # D updates 0, 2 of 0..3
    assert all("d/adv" in row for row in lazy)
    # D update 0 of both runs sees the same weights and batch: the lazy value is gamma x 2 x the penalty
    assert lazy[0]["d/r1"] == pytest.approx(2 * each[0]["d/r1"], rel=1e-5)


def test_lazy_r1_resumes_on_the_runs_own_d_update_clock(runner, tmp_path):
    """R1 every 3 D updates at 2 D steps per G step: a run stopped at step 2 (4 D updates) and resumed must put
    R1 on updates 6 and not on 4 and 7 (as a clock restarted at 0 would): the same weights as the run in one go."""
    sets = [*COMMON, "--set", "train.d_steps_per_g_step=2", "--set", "loss.r1.every=3",
            "--set", "train.checkpoint_every=2"]
    assert invoke(runner, "train", *sets, "--steps", "4", "--out", tmp_path / "whole").exit_code == 0
    assert invoke(runner, "train", *sets, "--steps", "2", "--out", tmp_path / "half").exit_code == 0
    r = invoke(runner, "train", "--out", tmp_path / "half", "--resume", "--steps", "4", "--no-progress", "--device", "cpu")
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "whole" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "half" / "checkpoints" / "last.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = [["d/r1" in row for row in _rows(tmp_path / run)] for run in ("half", "whole")]
    assert logged[0] == logged[1]
