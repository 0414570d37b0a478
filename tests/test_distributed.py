"""Data-parallel training with torchrun on CPU (gloo, 2 processes): the same global batch gives the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import invoke

ARGS = ["--preset", "infomax-gan", "--data", "shapes:16", "--batch-size", "8", "--device", "cpu", "--no-progress",
        "--set", "model.g_channels=8", "--set", "model.d_channels=8", "--set", "data.num_images=64",
        "--set", "train.sync_bn=true", "--set", "train.log_every=1", "--set", "train.d_steps_per_g_step=2",
        "--set", "optim.lr_decay=none", "--set", "train.checkpoint_every=2", "--set", "train.diffaug=color,translation",
        "--set", "loss.r1.weight=0.5",  # an input-gradient term: its share per rank must add up to one process's
        "--no-channels-last"]


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "cgantool",
           "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _losses(run) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("d/", "g/"))} for r in rows]


def _weights(run, prefix: str) -> dict[str, torch.Tensor]:
    from cgantool.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.safetensors").tensors(prefix)


def _assert_same_run(one, two, steps: int, updates: int, loss_tol: tuple[float, float] = (1e-4, 1e-5),
                     step: float = 2e-4, mean_tol: float = 2e-5, stats_rtol: float = 0.0) -> None:
    """Same logged losses (rank 0 alone writes metrics.jsonl, within ``loss_tol`` = (rel, abs)) and weights within
    ``updates`` Adam steps of ``step`` each; BatchNorm running statistics also within ``stats_rtol``."""
    l1, l2 = _losses(one), _losses(two)
    assert len(l1) == len(l2) == steps
    for a, b in zip(l1, l2):
        assert a.keys() == b.keys() and "d/infonce" in a and "d/r1" in a
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=loss_tol[0], abs=loss_tol[1]), k
    for prefix in ("G", "D"):
        w1, w2 = _weights(one, prefix), _weights(two, prefix)
        assert w1.keys() == w2.keys()
        for k in w1:
            assert w2[k].dtype == w1[k].dtype, k
            # Adam turns float noise in zero-mean gradients (conv biases before BN) into +-lr steps
            rtol = stats_rtol if "running_" in k else 0.0
            torch.testing.assert_close(w2[k], w1[k], atol=updates * step + 1e-5, rtol=rtol, msg=k)
        diffs = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in w1 if k.endswith(("weight", "original"))])
        assert diffs.mean() < mean_tol, prefix


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "two"
    r = _torchrun(*ARGS, "--steps", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_two_ranks_equal_one_process_with_the_same_global_batch(two_rank_run, runner, tmp_path):
    one = tmp_path / "one"
    r = invoke(runner, "train", *ARGS, "--steps", "3", "--out", one)
    assert r.exit_code == 0, r.output
    _assert_same_run(one, two_rank_run, steps=3, updates=3)


def test_two_ranks_equal_one_process_in_channels_last(runner, tmp_path):
    """The CPU default layout (NHWC) under torchrun: same losses and weights as one process."""
    args = [a for a in ARGS if a != "--no-channels-last"] + ["--channels-last", "--steps", "2"]
    two, one = tmp_path / "two", tmp_path / "one"
    r = _torchrun(*args, "--out", str(two))
    assert r.returncode == 0, r.stderr[-3000:]
    r1 = invoke(runner, "train", *args, "--out", one)
    assert r1.exit_code == 0, r1.output
    _assert_same_run(one, two, steps=2, updates=4)  # 2 G steps = 4 D updates


def test_two_rank_resume_equals_uninterrupted(two_rank_run, tmp_path):
    out = tmp_path / "part"
    assert _torchrun(*ARGS, "--steps", "2", "--out", str(out)).returncode == 0
    r = _torchrun(*ARGS, "--steps", "3", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    for prefix in ("G", "D"):
        w1, w2 = _weights(two_rank_run, prefix), _weights(out, prefix)
        for k in w1:
            torch.testing.assert_close(w2[k], w1[k], msg=k)


def test_global_batch_must_divide_by_the_processes(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    r = invoke(runner, "train", *ARGS, "--steps", "1", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "not divisible by the 3 processes" in r.output
    assert not (tmp_path / "x").exists()


def test_gather_keeps_only_the_local_gradient_single_process():
    from cgantool.engine.dist import DistInfo, gather_many, slice_rows

    x = torch.randn(4, 3, requires_grad=True)
    assert gather_many((x, None), DistInfo())[0] is x
    info = DistInfo(rank=1, world=2)
    assert info.local_slice(8) == slice(4, 8)
    torch.testing.assert_close(slice_rows(torch.arange(8), info), torch.arange(4, 8))


def _gather_many_worker(rank: int, port: int, out_dir: str) -> None:
    from dataclasses import dataclass

    import torch.distributed as tdist

    from cgantool.engine.dist import DistInfo, gather_many

    @dataclass
    class Out:
        logits: torch.Tensor
        feats: torch.Tensor | None

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, world=2)
        base = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) + 100 * rank
        img = base.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        out = Out(logits=torch.full((2,), float(rank), requires_grad=True), feats=None)
        labels = torch.tensor([rank, rank + 10])
        g_out, g_img, g_labels, g_none = gather_many((out, img, labels, None), info)
        (g_out.logits.sum() * 3 + (g_img * torch.arange(4.0).repeat_interleave(12).reshape(4, 3, 2, 2)).sum()).backward()
        torch.save({"logits": g_out.logits.detach(), "feats": g_out.feats, "img": g_img.detach(),
                    "labels": g_labels, "none": g_none, "img_grad": img.grad, "logit_grad": out.logits.grad},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        tdist.destroy_process_group()


def test_gather_many_packs_fields_and_keeps_the_local_gradient(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_many_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    expect_img = torch.cat([torch.arange(24.0).reshape(2, 3, 2, 2) + 100 * r for r in range(2)])
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")  # written by this test's own workers
        torch.testing.assert_close(got["logits"], torch.tensor([0.0, 0.0, 1.0, 1.0]))
        assert got["feats"] is None and got["none"] is None
        torch.testing.assert_close(got["img"], expect_img)
        torch.testing.assert_close(got["labels"], torch.tensor([0, 10, 1, 11]))
        # only this rank's rows carry gradient: d/d(img row i) = weight of global row rank*2 + i
        expect_grad = torch.arange(4.0)[rank * 2 : rank * 2 + 2].repeat_interleave(12).reshape(2, 3, 2, 2)
        torch.testing.assert_close(got["img_grad"], expect_grad)
        torch.testing.assert_close(got["logit_grad"], torch.full((2,), 3.0))


def _teardown_worker(rank: int, port: int, out_dir: str) -> None:
    import importlib

    import torch.distributed as tdist

    from cgantool.engine import dist as D

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    info = D.from_env()
    torch.ones(4).sum()  # any lazily started threads exist before the baseline
    baseline = len(os.listdir("/proc/self/task"))
    D.init(info, torch.device("cpu"))
    importlib.import_module("torch.distributed.nn.functional")  # as torch does lazily (building an optimizer)

    during = len(os.listdir("/proc/self/task"))
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = D.all_reduce_sum(x * (rank + 1))  # [3, 6] on both ranks
    (y * torch.tensor([1.0, 10.0]) * (rank + 1)).sum().backward()
    stop = D.any_true(info, rank == 1, torch.device("cpu"))
    D.barrier(info)
    D.shutdown()
    torch.save({"y": y.detach(), "grad": x.grad, "stop": stop, "baseline": baseline, "during": during,
                "after": len(os.listdir("/proc/self/task")), "initialized": tdist.is_initialized()},
               os.path.join(out_dir, f"rank{rank}.pt"))


def test_all_reduce_sum_gradient_and_shutdown_joins_the_gloo_threads(tmp_path):
    """shutdown() frees the process group: Gloo's threads end before interpreter exit (a late decref from one
    of them during finalization aborted rank 1 of a finished run now and then)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_teardown_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")  # written by this test's own workers
        torch.testing.assert_close(got["y"], torch.tensor([3.0, 6.0]))
        # d/dx_r of sum_r' (rank'+1) w . y = (r+1) * sum_r' (r'+1) w = (r+1) * 3 * [1, 10]
        torch.testing.assert_close(got["grad"], (rank + 1) * torch.tensor([3.0, 30.0]))
        assert got["stop"] is True and not got["initialized"]
        assert got["during"] > got["baseline"]  # the group's threads were running
        assert got["after"] == got["baseline"], got
