"""Architectures: paper-width parameter counts (methods.md), shapes, conditioning, gradients."""

from __future__ import annotations

import pytest
import torch

from cgantool.errors import ConfigError
from cgantool.nets import (
    BigGANDiscriminator,
    BigGANGenerator,
    Contrastive2CHeads,
    InfoMaxHeads,
    SNGANDiscriminator,
    SNGANGenerator,
    build_generator,
)


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("res, g, d", [(32, 4_276_739, 1_053_825), (48, 4_878_083, 10_141_441),
                                       (64, 12_220_675, 10_141_441), (128, 32_150_787, 29_017_857)])
def test_sngan_paper_parameter_counts(res, g, d):
    assert count(SNGANGenerator(res)) == g
    assert count(SNGANDiscriminator(res)) == d


def test_infomax_heads_add_exactly_561408_at_32px():
    D = SNGANDiscriminator(32)
    heads = InfoMaxHeads(D.feature_dims["local"], D.feature_dims["h"], 1024)
    assert count(heads) == 561_408 and count(D) + count(heads) == 1_615_233


def test_contragan_paper_parameter_counts():
    G = BigGANGenerator(32, z_dim=80, num_classes=10)
    D = BigGANDiscriminator(32)
    heads = Contrastive2CHeads(D.feature_dims["h"], 10, 512)
    assert count(G) == 9_416_196
    assert count(D) + count(heads) == 2_517_186


@pytest.mark.parametrize("res", [16, 32, 64])
def test_sngan_shapes_and_range(res):
    torch.manual_seed(0)
    G, D = SNGANGenerator(res, channels=16), SNGANDiscriminator(res, channels=16)
    x = G(torch.randn(3, 128))
    assert x.shape == (3, 3, res, res) and float(x.detach().abs().max()) <= 1.0
    out = D(x)
    assert out.logits.shape == (3,) and out.h.shape == (3, 16) and out.local.dim() == 4
    assert float(out.local.min()) >= 0.0  # Mimicry: the last block sees ReLU'd features


def test_sngan_32px_local_features_are_8x8():
    out = SNGANDiscriminator(32)(torch.randn(2, 3, 32, 32))
    assert out.local.shape == (2, 128, 8, 8) and out.h.shape == (2, 128)


def test_conditional_generator_and_projection_discriminator_use_labels():
    torch.manual_seed(0)
    G = SNGANGenerator(16, channels=16, num_classes=5)
    D = SNGANDiscriminator(16, channels=16, num_classes=5).eval()  # eval: no power iteration between calls
    for p in G.parameters():  # class embeddings start at gain 1 / bias 0; make them differ
        if p.dim() == 2 and p.shape[0] == 5:
            torch.nn.init.normal_(p)
    z = torch.randn(2, 128).repeat(2, 1)
    y = torch.tensor([0, 1, 2, 3])
    G.eval()
    x = G(z, y)
    assert not torch.allclose(x[0], x[2])
    x = torch.randn(1, 3, 16, 16).repeat(2, 1, 1, 1)
    out = D(x, torch.tensor([0, 4]))
    assert not torch.allclose(out.logits[0], out.logits[1])
    # soft labels: a one-hot row equals the integer label
    soft = torch.nn.functional.one_hot(torch.tensor([0, 4]), 5).float()
    torch.testing.assert_close(D(x, soft).logits, out.logits, rtol=0, atol=1e-5)


def test_biggan_soft_labels_match_hard_labels():
    torch.manual_seed(0)
    G = BigGANGenerator(16, channels=8, num_classes=4).eval()
    z, y = torch.randn(3, 80), torch.tensor([0, 2, 3])
    soft = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(G(z, soft), G(z, y), rtol=0, atol=1e-5)
    assert G(z, y).shape == (3, 3, 16, 16)


def test_gradient_reaches_generator_through_discriminator():
    G, D = SNGANGenerator(16, channels=8), SNGANDiscriminator(16, channels=8)
    D(G(torch.randn(2, 128))).logits.sum().backward()
    assert all(p.grad is not None for p in G.parameters())


def test_unknown_arch_and_resolution():
    with pytest.raises(ConfigError, match="unknown generator architecture 'stylegan'"):
        build_generator("stylegan")
    with pytest.raises(ConfigError, match="no 40 px layout"):
        SNGANGenerator(40)
