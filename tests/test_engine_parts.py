"""Engine parts without a model: EMA, augmentations, latents, interpolation paths, registries."""

from __future__ import annotations

import pytest
import torch

from cgantool.augment import diff_augment, parse_policy, random_hflip
from cgantool.ema import make_ema, update_ema
from cgantool.errors import CgantoolError, ConfigError
from cgantool.interpolate import interpolate_keys, slerp, walk_positions
from cgantool.registry import Registry
from cgantool.sampling import latents


def test_ema_lerps_params_and_float_buffers_copies_int_buffers():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = make_ema(G)
    with torch.no_grad():
        G[0].weight.add_(1.0)
        G[1].running_mean.fill_(4.0)
        G[1].num_batches_tracked.fill_(7)
    before = ema[0].weight.clone()
    update_ema(ema, G, decay=0.75)
    # ema = 0.75 * ema + 0.25 * G = before + 0.25 * 1.0
    torch.testing.assert_close(ema[0].weight, before + 0.25, rtol=0, atol=1e-6)
    torch.testing.assert_close(ema[1].running_mean, torch.full((2,), 1.0), rtol=0, atol=1e-6)  # 0.75*0 + 0.25*4
    assert int(ema[1].num_batches_tracked) == 7
    update_ema(ema, G, decay=0.0)  # before ema_start_step: a copy
    torch.testing.assert_close(ema[0].weight, G[0].weight, rtol=0, atol=0)
    assert not any(p.requires_grad for p in ema.parameters())


def test_hflip_flips_about_half_and_exactly():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4).repeat(100, 1, 1, 1)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 60 < int(flipped.sum()) < 140  # 200 images, p = 1/2


def test_diffaugment_policies_are_deterministic_and_differentiable():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_()
    policy = parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # cutout zeroes a (16*0.5)^2 = 64-pixel square per image (fewer where it is clipped at the border)
    zeros = (diff_augment(torch.ones(8, 3, 16, 16), ["cutout"], torch.Generator().manual_seed(2)) == 0).all(1).flatten(1).sum(1)
    assert bool(((zeros > 0) & (zeros <= 64)).all())
    with pytest.raises(ConfigError, match="unknown DiffAugment policy"):
        parse_policy("color,rotate")


def test_latents_one_stream_per_image_and_truncation():
    a = latents(5, range(6), 8)
    b = latents(5, [3, 4, 5], 8)
    torch.testing.assert_close(a[3:], b, rtol=0, atol=0)  # image i depends on (seed, i) only
    assert not torch.equal(latents(6, range(6), 8), a)
    t = latents(5, range(50), 16, truncation=0.5)
    assert float(t.abs().max()) <= 0.5
    assert t.std() < a.std() + 1  # sanity: values are finite


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    # orthonormal unit vectors: slerp stays on the unit circle (lerp would shrink to norm 1/sqrt(2) at t = 1/2)
    e0, e1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(e0, e1, 0.5)
    torch.testing.assert_close(mid, torch.tensor([[2**-0.5, 2**-0.5]]), rtol=0, atol=1e-6)


def test_walk_positions_and_loop():
    # 3 keys, 4 frames per segment: 2 segments * 4 + the final key = 9 frames
    pos = walk_positions(3, 4, loop=False)
    assert len(pos) == 9 and pos[0] == (0, 1, 0.0) and pos[-1] == (1, 2, 1.0)
    looped = walk_positions(3, 4, loop=True)
    assert len(looped) == 12 and looped[-1][:2] == (2, 0)
    keys = torch.randn(3, 2, 5)
    frames = interpolate_keys(keys, 4, "slerp", loop=False)
    assert frames.shape == (9, 2, 5)
    assert torch.equal(frames[0], keys[0]) and torch.equal(frames[4], keys[1]) and torch.equal(frames[-1], keys[2])
    with pytest.raises(CgantoolError, match="at least two keys"):
        walk_positions(1, 4, loop=False)


def test_registry_suggests_names():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    reg.register("beta")(2)
    assert reg.get("beta") == 2 and reg.names() == ["alpha", "beta"]
    with pytest.raises(ConfigError) as e:
        reg.get("alpah")
    assert "did you mean 'alpha'" in e.value.hint and "alpha, beta" in e.value.hint


@pytest.mark.parametrize("reuse", [False, True])
def test_reuse_fake_saves_one_generator_forward_and_still_trains_g(reuse):
    from cgantool.config import resolve_config
    from cgantool.data import load_dataset
    from cgantool.engine.trainer import build_trainer

    cfg = resolve_config("sngan", sets=["model.g_channels=8", "model.d_channels=8", "data.num_images=64",
                                        "train.batch_size=4", "train.d_steps_per_g_step=2",
                                        f"train.reuse_fake={str(reuse).lower()}"], flags={"data.resolution": 16})
    t = build_trainer(cfg, load_dataset(cfg.data), torch.device("cpu"), None)
    calls = []
    t.gan.G.register_forward_hook(lambda m, i, o: calls.append(o.requires_grad))
    before = [p.detach().clone() for p in t.gan.G.parameters()]
    for i in range(2):
        t.d_step(keep_fake=reuse and i == 1)
    t.g_step()
    assert calls == ([False, True] if reuse else [False, False, True])
    assert any(not torch.equal(a, p) for a, p in zip(before, t.gan.G.parameters()))  # G was updated
    assert t._kept is None


def _sigma_estimate(p, weight) -> float:
    mat = weight.movedim(p.dim, 0).flatten(1)
    return float(p._u @ mat @ p._v)


def test_ema_of_spectral_norm_layers_keeps_sigma_right():
    """Averaging the power-iteration vectors u, v (what update_ema did) underestimates sigma of the averaged weight:
    with G alternating between two weights, averaged u, v read far below the true sigma. Refreshing them on the
    averaged weight keeps the estimate within a few percent; a loaded EMA G converges them exactly."""
    from torch.nn.utils.parametrizations import spectral_norm

    from cgantool.ema import _spectral_norms, refresh_spectral_norm

    torch.manual_seed(0)
    G = torch.nn.Sequential(spectral_norm(torch.nn.Linear(16, 16)), spectral_norm(torch.nn.Conv2d(4, 6, 3)))
    ema, averaged = make_ema(G), make_ema(G)  # averaged: every float buffer lerped, u and v included
    weights = [[torch.randn_like(orig) for _, orig in _spectral_norms(G)] for _ in range(2)]
    for step in range(40):
        with torch.no_grad():
            for (_, orig), new in zip(_spectral_norms(G), weights[step % 2]):
                orig.copy_(new)
            refresh_spectral_norm(G, iterations=50)  # G's own u, v: converged, as training keeps them
            update_ema(ema, G, decay=0.5)
            for a, b in zip(list(averaged.parameters()) + list(averaged.buffers()),
                            list(G.parameters()) + list(G.buffers())):
                a.lerp_(b, 0.5)

    def ratios(module):
        out = []
        for p, weight in _spectral_norms(module):
            true = float(torch.linalg.matrix_norm(weight.movedim(p.dim, 0).flatten(1), ord=2))
            out.append(_sigma_estimate(p, weight) / true)
        return out

    assert all(abs(r - 1) < 0.05 for r in ratios(ema)), ratios(ema)
    assert min(ratios(averaged)) < 0.8, ratios(averaged)  # the fault this guards against
    refresh_spectral_norm(ema, iterations=200)
    assert all(abs(r - 1) < 1e-4 for r in ratios(ema)), ratios(ema)
