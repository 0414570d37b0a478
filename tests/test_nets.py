"""Architectures: paper-width parameter counts (methods.md), shapes, the Mimicry / StudioGAN quirks, conditioning,
heads, gradients and errors. Paper-width models are only built and counted (no forward) except at 32 px."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cgantool.errors import ConfigError
from cgantool.losses import infonce_local_global_loss
from cgantool.nets import (
    BigGANDiscriminator,
    BigGANGenerator,
    Contrastive2CHeads,
    InfoMaxHeads,
    SNGANDiscriminator,
    SNGANGenerator,
    build_discriminator,
    build_generator,
    supported_resolutions,
)
from cgantool.nets.biggan import split_sizes
from cgantool.nets.layers import DBlock, SelfAttention, upsample2x


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------ parameter counts


def test_sngan_32px_paper_parameter_counts():
    # G: l1 128·4096 + 4096 = 528,384; each GBlock 256→256 = BN 512 + conv3x3 590,080 + BN 512 + conv3x3 590,080
    #    + conv1x1 65,792 = 1,246,976, three of them 3,740,928; BN 512; conv3x3 256→3 6,915 → 4,276,739.
    # D: optimized 3,584 + 147,584 + 512 = 151,680; DBlock down 2·147,584 + 16,512 = 311,680; two DBlocks
    #    295,168 each; SN-Linear 129 → 1,053,825.
    assert count(SNGANGenerator(32)) == 4_276_739
    assert count(SNGANDiscriminator(32)) == 1_053_825


@pytest.mark.parametrize("res, g, d", [(48, 4_878_083, 10_141_441), (64, 12_220_675, 10_141_441),
                                       (128, 32_150_787, 29_017_857)])
def test_sngan_paper_parameter_counts_other_resolutions(res, g, d):
    # methods.md "Shared backbone: SNGAN ResNet" (Mimicry's sngan_48 / _64 / _128)
    assert count(SNGANGenerator(res)) == g
    assert count(SNGANDiscriminator(res)) == d


def test_infomax_heads_add_exactly_561408_at_32px():
    # local: conv 128·128 + 128 = 16,512; two convs 128→1024: 2 · 132,096 → 280,704; global the same with
    # linears → 561,408. D 1,053,825 + 561,408 = 1,615,233 (methods.md "InfoMax-GAN").
    D = SNGANDiscriminator(32)
    heads = InfoMaxHeads(D.feature_dims["local"], D.feature_dims["h"], 1024)
    assert count(heads) == 561_408
    assert count(D) + count(heads) == 1_615_233


def test_contragan_paper_parameter_counts():
    # G: linear0 20→384·16 129,024; each GBlock = 4 bias-free cBN linears 148·384 (227,328) + 2 conv3x3
    #    384→384 (2,654,976) + conv1x1 147,840 = 3,030,144, three of them 9,090,432; attention 384:
    #    2·384·48 + 2·384·192 + 1 = 184,321; shared embedding 1,280; BN 768; conv3x3 384→3 10,371 → 9,416,196.
    # D: optimized 3→192 338,112; attention 192: 46,081; DBlock down 700,992; two DBlocks 663,936 each;
    #    SN-Linear 193 → 2,413,250; heads 192·512 + 512 + 10·512 = 103,936 → 2,517,186.
    G = BigGANGenerator(32, z_dim=80, num_classes=10)
    D = BigGANDiscriminator(32)
    heads = Contrastive2CHeads(D.feature_dims["h"], 10, 512)
    assert count(G) == 9_416_196
    assert count(heads) == 103_936
    assert count(D) + count(heads) == 2_517_186


# ---------------------------------------------------------------------------------- shapes and ranges


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
@pytest.mark.parametrize("res", [16, 32, 48, 64, 128])
def test_small_width_shapes_and_tanh_range(arch, res):
    torch.manual_seed(0)
    width = 16 if arch == "sngan" else 4
    G = build_generator(arch, resolution=res, z_dim=40, channels=width, num_classes=0)
    D = build_discriminator(arch, resolution=res, channels=width)
    last_conv = G.c_out if arch == "sngan" else G.conv_out
    pre = []
    handle = last_conv.register_forward_hook(lambda m, inp, o: pre.append(o))
    with torch.no_grad():
        x = G(G.sample_latent(2))
        out = D(x)
    handle.remove()
    assert x.shape == (2, 3, res, res)
    torch.testing.assert_close(x, torch.tanh(pre[0]), rtol=0, atol=1e-6)  # images = tanh(last conv)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.0
    assert out.logits.shape == (2,)
    assert out.h.shape == (2, D.feature_dims["h"])
    assert out.local.shape[:2] == (2, D.feature_dims["local"]) and out.local.dim() == 4


def test_sngan_32px_disc_output_shapes_at_paper_width():
    with torch.no_grad():
        out = SNGANDiscriminator(32)(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2,) and out.h.shape == (2, 128)
    assert out.local.shape == (2, 128, 8, 8)  # Mimicry InfoMax-GAN: 64 local positions at 32 px
    assert float(out.local.min()) >= 0.0  # post-ReLU (Mimicry's in-place ReLU)


def test_logits_are_the_final_linear_of_h():
    # h is the input of the final SN-Linear: logits = h W^T + b (eval: no power iteration between reads)
    torch.manual_seed(0)
    D = SNGANDiscriminator(16, channels=8).double().eval()
    with torch.no_grad():
        out = D(torch.randn(3, 3, 16, 16, dtype=torch.float64))
        exact(out.logits, out.h @ D.l_out.weight[0] + D.l_out.bias[0])
    assert float(out.h.min()) >= 0.0  # sum of ReLU features


def test_sample_latent_is_standard_normal_of_z_dim():
    G = SNGANGenerator(16, z_dim=7, channels=8)
    z1 = G.sample_latent(4, generator=torch.Generator().manual_seed(3))
    z2 = torch.randn(4, 7, generator=torch.Generator().manual_seed(3))
    exact(z1, z2)


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
def test_spectral_norm_is_estimated_on_the_initialised_weights(arch):
    # Every SN layer is re-initialised (Xavier / orthogonal) after wrapping; its u, v must be re-estimated, or an
    # eval-mode forward of a fresh model divides by a near-zero sigma. After the 15-iteration power method the
    # normalised weight's largest singular value is ~1 (orthogonal weights: exactly 1; Xavier: within a few %).
    torch.manual_seed(0)
    G = build_generator(arch, resolution=16, z_dim=40, channels=8, num_classes=3).eval()
    D = build_discriminator(arch, resolution=16, channels=8, num_classes=3).eval()
    heads = [InfoMaxHeads(8, 8, 16).eval(), Contrastive2CHeads(8, 3, 16).eval()]
    sigmas = []
    for net in (G, D, *heads):
        for m in net.modules():
            if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
                w = m.weight.detach()
                sigmas.append(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).double(), 2))
    assert len(sigmas) >= 12
    torch.testing.assert_close(torch.stack(sigmas), torch.ones(len(sigmas), dtype=torch.float64), rtol=0, atol=0.05)


def test_sngan_discriminator_without_spectral_norm():
    # use_sn=False (benchmarks/d_shape_speed.py --no-sn): same layers and parameter count, none of the 12 SN
    # layers (10 convs, output linear, projection embedding) parametrised; a weight is the raw, unnormalised
    # Parameter.
    sn_on, sn_off = SNGANDiscriminator(16, channels=8, num_classes=3), SNGANDiscriminator(16, channels=8, num_classes=3,
                                                                                           use_sn=False)
    parametrized = lambda net: sum(torch.nn.utils.parametrize.is_parametrized(m, "weight")  # noqa: E731
                                   for m in net.modules())
    assert parametrized(sn_on) == 12 and parametrized(sn_off) == 0
    assert count(sn_on) == count(sn_off)
    w = sn_off.l_out.weight
    assert isinstance(w, torch.nn.Parameter) and torch.linalg.matrix_norm(w.detach(), 2) != pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------ Mimicry / StudioGAN quirks


@pytest.mark.parametrize("relu_shortcut", [True, False])
def test_dblock_shortcut_sees_relu_of_input(relu_shortcut):
    # With the residual branch zeroed, an identity-shortcut DBlock returns its shortcut: ReLU(x) under the
    # in-place-ReLU behaviour of Mimicry / StudioGAN, the raw x under Chainer SNGAN's.
    block = DBlock(4, 4, downsample=False, use_sn=False, relu_shortcut=relu_shortcut).double()
    torch.nn.init.zeros_(block.c2.weight)
    torch.nn.init.zeros_(block.c2.bias)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    exact(block(x), F.relu(x) if relu_shortcut else x)


def test_backbones_use_the_relu_shortcut_and_their_hidden_widths():
    # Mimicry DBlock: first conv cin→cin; StudioGAN big_resnet DiscBlock: cin→cout (64 px: 80 → 160 at block 1)
    assert DBlock(4, 4, downsample=False).relu_shortcut  # the default is the official code's behaviour
    sngan, biggan = SNGANDiscriminator(64, channels=64), BigGANDiscriminator(64, channels=4)
    assert all(b.relu_shortcut for b in [*sngan.blocks[1:], *biggan.blocks[1:]])
    assert tuple(sngan.blocks[1].c1.weight.shape[:2]) == (4, 4)  # 64/16 → 64/16 (then c2 → 64/8 = 8)
    assert tuple(biggan.blocks[1].c1.weight.shape[:2]) == (8, 4)  # 1·4 → 2·4


def test_upsampling_modes():
    # bilinear, align_corners=False: output sample k sits at input coordinate (k + 0.5) / 2 - 0.5, clamped →
    # [0, 1] becomes [0, 0.25, 0.75, 1]; nearest repeats → [0, 0, 1, 1].
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(2, 2)[None, None]  # [1, 1, 2, 2]
    exact(upsample2x(x, "bilinear")[0, 0, 0], torch.tensor([0, 0.25, 0.75, 1], dtype=torch.float64))
    exact(upsample2x(x, "nearest")[0, 0, 0], torch.tensor([0, 0, 1, 1], dtype=torch.float64))
    with pytest.raises(ConfigError, match="unknown upsampling mode 'cubic'"):
        SNGANGenerator(16, channels=8, upsample="cubic")


def test_self_attention_matches_its_formula():
    torch.manual_seed(0)
    att = SelfAttention(16, use_sn=False).double()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    exact(att(x), x)  # gamma starts at 0: the identity
    with torch.no_grad():
        att.gamma.fill_(0.7)
    w = {n: getattr(att, n).weight[:, :, 0, 0] for n in ("theta", "phi", "g", "out")}
    theta = torch.einsum("oc,bchw->bohw", w["theta"], x).flatten(2)  # [B, 2, 16]
    phi = F.max_pool2d(torch.einsum("oc,bchw->bohw", w["phi"], x), 2).flatten(2)  # [B, 2, 4]
    g = F.max_pool2d(torch.einsum("oc,bchw->bohw", w["g"], x), 2).flatten(2)  # [B, 8, 4]
    a = torch.softmax(torch.einsum("bcp,bcq->bpq", theta, phi), dim=-1)  # [B, 16 queries, 4 keys]
    o = torch.einsum("bcq,bpq->bcp", g, a).reshape(2, 8, 4, 4)
    exact(att(x), x + 0.7 * torch.einsum("oc,bchw->bohw", w["out"], o))


def _input_size_of(module: torch.nn.Module, run) -> tuple[int, ...]:
    seen = []
    handle = module.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    run()
    handle.remove()
    return seen[0]


def test_attention_sits_at_half_resolution():
    torch.manual_seed(0)
    G = SNGANGenerator(32, channels=16, self_attention=True)
    z = torch.randn(2, 128)
    assert _input_size_of(G.attn, lambda: G(z)) == (2, 16, 16, 16)
    BG = BigGANGenerator(32, z_dim=80, channels=4, num_classes=3)  # StudioGAN CIFAR-10: after G block 2
    assert _input_size_of(BG.attn, lambda: BG(torch.randn(2, 80), torch.tensor([0, 2]))) == (2, 16, 16, 16)
    BD = BigGANDiscriminator(32, channels=4)  # after D block 1
    assert _input_size_of(BD.attn, lambda: BD(torch.randn(2, 3, 32, 32))) == (2, 8, 16, 16)
    BG64 = BigGANGenerator(64, z_dim=100, channels=2, num_classes=3)  # Tiny ImageNet config: after G block 3
    assert _input_size_of(BG64.attn, lambda: BG64(torch.randn(2, 100), torch.tensor([0, 1])))[2:] == (32, 32)
    assert BigGANGenerator(32, channels=4, attention_resolution=0).attn is None
    with pytest.raises(ConfigError, match="no block with 12 px output"):
        BigGANDiscriminator(32, channels=4, attention_resolution=12)


def test_z_chunks():
    assert split_sizes(80, 4) == [20, 20, 20, 20]  # StudioGAN CIFAR-10: 80 = 4 chunks of 20
    assert split_sizes(128, 5) == [26, 26, 26, 25, 25]  # 128 = 5 · 25 + 3: the first three one larger
    with pytest.raises(ConfigError, match="z_dim >= 4"):
        BigGANGenerator(32, z_dim=3, channels=4)


# -------------------------------------------------------------------------------------------- conditioning


def test_projection_term_is_embedding_dot_h():
    # logits = l_out(h) + <E[y], h>: changing only the label changes the logit by <E[y1] - E[y2], h>
    torch.manual_seed(0)
    for D in (SNGANDiscriminator(16, channels=8, num_classes=5),
              BigGANDiscriminator(16, channels=4, num_classes=5, projection=True)):
        D = D.double().eval()
        head = D.l_out if hasattr(D, "l_out") else D.linear_out
        x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
        y = torch.tensor([1, 4])
        out = D(x, y)
        E = D.embed.weight  # [5, C], spectral-normalised
        exact(out.logits, out.h @ head.weight[0] + head.bias[0] + (E[y] * out.h).sum(1))
        soft = F.one_hot(y, 5).double()  # a one-hot soft label is the integer label
        exact(D(x, soft).logits, out.logits)
        with pytest.raises(ValueError, match="pass labels"):
            D(x)


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
def test_conditional_generator_uses_labels(arch):
    torch.manual_seed(0)
    G = build_generator(arch, resolution=16, z_dim=40, channels=8 if arch == "sngan" else 2, num_classes=4)
    G = G.double().eval()
    z = torch.randn(1, 40, dtype=torch.float64).repeat(2, 1)
    with torch.no_grad():
        x = G(z, torch.tensor([0, 3]))
    assert float((x[0] - x[1]).abs().max()) > 1e-6  # same z, different class → a different image
    exact(G(z, F.one_hot(torch.tensor([0, 3]), 4).double()), x)  # one-hot soft labels = integer labels
    with pytest.raises(ValueError, match="pass labels"):
        G(z)


def test_contrastive_2c_heads():
    torch.manual_seed(0)
    heads = Contrastive2CHeads(6, 3, embed_dim=5).double().eval()
    h = torch.randn(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 2, 1])
    embed, proxy = heads(h, y)
    exact(embed, h @ heads.linear.weight.T + heads.linear.bias)  # one SN-Linear with bias, no MLP
    exact(proxy, heads.proxy.weight[y])


def test_infomax_heads_shapes_and_formula():
    torch.manual_seed(0)
    heads = InfoMaxHeads(6, 5, rkhs_dim=7).double().eval()
    local = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    h = torch.randn(3, 5, dtype=torch.float64)
    lp, gp = heads(local, h)
    assert lp.shape == (3, 7, 16) and gp.shape == (3, 7)

    def lin(m, v):  # a 1x1 conv is a linear map per position
        return v @ m.weight.reshape(m.weight.shape[0], -1).T + m.bias

    exact(gp, lin(heads.global_2, F.relu(lin(heads.global_1, h))) + lin(heads.global_sc, h))
    pos = local.flatten(2).transpose(1, 2)  # [B, 16, 6]
    expected = lin(heads.local_2, F.relu(lin(heads.local_1, pos))) + lin(heads.local_sc, pos)
    exact(lp, expected.transpose(1, 2))
    assert infonce_local_global_loss(lp, gp).shape == ()  # the layout the loss takes


# ----------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
def test_gradient_reaches_every_generator_parameter_through_d(arch):
    torch.manual_seed(0)
    kw = dict(resolution=16, channels=8 if arch == "sngan" else 2, num_classes=3)
    G = build_generator(arch, z_dim=40, **kw)
    D = build_discriminator(arch, **kw, **({"projection": True} if arch == "biggan" else {}))
    y = torch.tensor([0, 1, 2])
    D(G(torch.randn(3, 40), y), y).logits.sum().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    assert missing == []
    assert float(sum(p.grad.abs().sum() for p in G.parameters())) > 0.0


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_arch_and_resolution():
    with pytest.raises(ConfigError, match="unknown generator architecture 'stylegan'") as err:
        build_generator("stylegan")
    assert "biggan, sngan" in err.value.hint
    with pytest.raises(ConfigError, match="unknown discriminator architecture 'snganx'"):
        build_discriminator("snganx")
    with pytest.raises(ConfigError, match="no 40 px layout") as err:
        SNGANGenerator(40)
    assert "16, 32, 48, 64, 128" in err.value.hint
    with pytest.raises(ConfigError, match="no 256 px layout"):
        BigGANDiscriminator(256)
    with pytest.raises(ConfigError, match="projection discriminator needs class labels"):
        BigGANDiscriminator(32, channels=4, projection=True)
    assert supported_resolutions("biggan") == (16, 32, 48, 64, 128)
