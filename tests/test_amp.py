"""bf16 autocast of the training step (train.cpu_amp on CPU; the same code path as train.amp on CUDA)."""

from __future__ import annotations

import json

import pytest
import torch

from cgantool.errors import ConfigError
from tests.conftest import invoke
from tests.test_distributed import ARGS as DDP_ARGS, _assert_same_run, _torchrun, _weights
from tests.test_xmc import XMC_TINY

IMAGE_PRESETS = ["sngan", "contragan", "infomax-gan", "dualcontrast"]


def _trainer(preset: str, amp: str):
    from cgantool.config import resolve_config
    from cgantool.data import load_dataset
    from cgantool.engine.trainer import build_trainer

    cfg = resolve_config(preset, sets=["model.g_channels=8", "model.d_channels=8", "data.num_images=64",
                                       "train.batch_size=8", f"train.cpu_amp={amp}"], flags={"data.resolution": 16})
    return build_trainer(cfg, load_dataset(cfg.data), torch.device("cpu"), None)


def _conv_output_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_cpu_bf16_runs_convolutions_in_bf16_and_keeps_losses_weights_and_grads_fp32(preset):
    t = _trainer(preset, "bf16")
    g_convs, d_convs = _conv_output_dtypes(t.gan.G), _conv_output_dtypes(t.gan.D)
    d_losses, d_total = t.d_step()
    g_losses, g_total = t.g_step()
    assert g_convs and d_convs and set(g_convs) == set(d_convs) == {torch.bfloat16}
    for losses in (d_losses, g_losses):
        assert len(losses) >= 1
        for name, value in losses.items():
            assert value.dtype == torch.float32 and torch.isfinite(value), name
    assert d_total.dtype == g_total.dtype == torch.float32
    for net in (t.gan.G, t.gan.D):
        for name, p in net.named_parameters():
            assert p.dtype == torch.float32, name
            assert p.grad is None or p.grad.dtype == torch.float32, name


def test_cpu_amp_is_off_by_default_and_validated():
    t = _trainer("sngan", "none")
    assert t.cfg.train.cpu_amp == "none"
    convs = _conv_output_dtypes(t.gan.D)
    t.d_step()
    assert convs and set(convs) == {torch.float32}
    from cgantool.config import resolve_config

    with pytest.raises(ConfigError, match="cpu_amp"):
        resolve_config("sngan", sets=["train.cpu_amp=fp16"])


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_cpu_bf16_losses_track_fp32_from_the_same_start(preset):
    """Same seed, same batches: three full steps in bf16 stay within bf16's rounding of the fp32 losses."""
    runs = {}
    for amp in ("none", "bf16"):
        t = _trainer(preset, amp)
        rows = []
        for _ in range(3):
            d, _ = t.d_step()
            g, _ = t.g_step()
            rows.append({**{f"d/{k}": v.item() for k, v in d.items()}, **{f"g/{k}": v.item() for k, v in g.items()}})
        runs[amp] = rows
    for fp32, bf16 in zip(runs["none"], runs["bf16"]):
        assert fp32.keys() == bf16.keys()
        for k in fp32:
            assert bf16[k] == pytest.approx(fp32[k], rel=3e-2, abs=3e-2), k
    # and bf16 really changed the arithmetic (the test would pass trivially if autocast were a no-op)
    assert any(runs["none"][0][k] != runs["bf16"][0][k] for k in runs["none"][0])


def test_two_rank_bf16_run_tracks_one_fp32_process(runner, tmp_path):
    """gloo gathers the bf16 D outputs and sums fp32 grads; losses and weights stay close to the fp32 run."""
    args = [a for a in DDP_ARGS if a != "--no-channels-last"] + ["--steps", "3"]
    two, one = tmp_path / "two", tmp_path / "one"
    r = _torchrun(*args, "--set", "train.cpu_amp=bf16", "--out", str(two))
    assert r.returncode == 0, r.stderr[-3000:]
    r1 = invoke(runner, "train", *args, "--out", one)
    assert r1.exit_code == 0, r1.output
    # bf16 rounding: losses within 2%, each of the 6 D updates moves a weight by up to 2 lr, BN statistics 2%
    _assert_same_run(one, two, steps=3, updates=6, loss_tol=(2e-2, 2e-2), step=2 * 2e-4, mean_tol=2e-4,
                     stats_rtol=2e-2)


def test_xmcgan_trains_in_cpu_bf16_close_to_fp32(runner, tmp_path):
    runs = {}
    for amp in ("none", "bf16"):
        out = tmp_path / amp
        r = invoke(runner, "train", "--preset", "xmcgan", "--data", "shapes:16", "--steps", "2", "--batch-size", "8",
                   "--out", out, "--no-progress", "--device", "cpu", *XMC_TINY, "--set", f"train.cpu_amp={amp}")
        assert r.exit_code == 0, r.output
        runs[amp] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert all(w.dtype == torch.float32 for w in _weights(out, "G").values() if w.is_floating_point())
    fp32, bf16 = runs["none"][0], runs["bf16"][0]
    terms = [k for k in fp32 if k.startswith(("d/", "g/"))]
    assert any("xmc" in k or "word" in k or "sent" in k for k in terms), terms
    for k in terms:
        assert bf16[k] == pytest.approx(fp32[k], rel=5e-2, abs=5e-2), k
