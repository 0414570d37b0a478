"""The GPU helpers of the benchmarks, checked on CPU: the utilisation sampler and the Inception stand-in."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from benchmarks._gpu import StandInInception, UtilSampler


def test_util_sampler_averages_what_it_read():
    values = itertools.cycle([20.0, 40.0, 90.0])
    with UtilSampler(lambda: next(values), period=0.001) as s:
        while len(s.samples) < 6:
            time.sleep(0.001)
    n = len(s.samples)
    assert n >= 6 and s.error is None
    assert s.samples[:3] == [20.0, 40.0, 90.0]
    assert s.mean == pytest.approx(round(sum(s.samples) / n, 1))
    assert s.median in (20.0, 40.0, 90.0)
    time.sleep(0.01)
    assert len(s.samples) == n  # the thread stopped with the block


def test_util_sampler_reports_no_figure_when_nothing_can_be_read():
    def unreadable() -> float:
        raise RuntimeError("no NVML")

    with UtilSampler(unreadable, period=0.001) as s:
        time.sleep(0.01)
    assert s.mean is None and s.median is None
    assert s.error == "RuntimeError: no NVML"


def test_stand_in_inception_gives_2048_d_pool_features_at_any_input_size():
    net = StandInInception()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    feats = net(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # after ReLU and average pooling
    assert not torch.equal(feats[0], feats[1])  # features depend on the image
    torch.testing.assert_close(net(images[:1]), feats[:1])  # eval mode: no batch statistics


def test_gpu_util_sampler_on_cpu_reads_nothing():
    from benchmarks._gpu import gpu_util_sampler

    with gpu_util_sampler(torch.device("cpu")) as s:
        time.sleep(0.01)
    assert s.samples == [] and s.mean is None and s.error is None
