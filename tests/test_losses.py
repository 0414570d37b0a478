"""Every loss against methods.md's check values, a hand-computed case, a straightforward loop
implementation, and one property (permutation invariance, a limit, a gradient sign)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cgantool.losses import (
    contrastive_2c_loss,
    data_to_data_cross_entropy,
    dual_contrastive_loss_d,
    dual_contrastive_loss_g,
    hinge_loss_d,
    hinge_loss_g,
    infonce_local_global_loss,
    nonsaturating_loss_d,
    nonsaturating_loss_g,
    r1_penalty_rows,
    xmc_contrastive_loss,
    xmc_word_region_loss,
)

f64 = torch.float64


def close(actual, expected, atol=1e-6):
    actual, expected = torch.as_tensor(actual, dtype=f64), torch.as_tensor(expected, dtype=f64)
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------- adversarial


def test_hinge_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0], dtype=f64)
    fake = torch.tensor([-2.0, 0.0, 1.0], dtype=f64)
    # real: relu(1-2)=0, relu(1-0.5)=0.5, relu(1+1)=2 → mean 2.5/3; fake: relu(1-2)=0, relu(1)=1, relu(2)=2 → mean 1
    close(hinge_loss_d(real, fake), 2.5 / 3 + 1.0)
    close(hinge_loss_g(fake), 1.0 / 3 * -(-2.0 + 0.0 + 1.0))  # -mean(fake) = 1/3


def test_nonsaturating_by_hand():
    real = torch.tensor([0.0, math.log(3.0)], dtype=f64)
    fake = torch.tensor([0.0], dtype=f64)
    # softplus(-0) = ln 2; softplus(-ln 3) = ln(1 + 1/3) = ln(4/3); mean = (ln 2 + ln 4/3) / 2; fake: ln 2
    close(nonsaturating_loss_d(real, fake), (math.log(2) + math.log(4 / 3)) / 2 + math.log(2))
    close(nonsaturating_loss_g(torch.tensor([math.log(3.0)], dtype=f64)), math.log(4 / 3))


def test_bf16_inputs_are_computed_in_fp32():
    x = torch.randn(8, 16).bfloat16()
    out = xmc_contrastive_loss(x, x)
    assert out.dtype == torch.float32
    # the same bf16 values, upcast by hand: identical result
    close(out, xmc_contrastive_loss(x.float(), x.float()), atol=0)


def test_autocast_does_not_lower_precision_and_float64_stays_float64():
    torch.manual_seed(2)
    a, b = torch.randn(16, 64), torch.randn(16, 64)
    local, glob = torch.randn(4, 32, 6), torch.randn(4, 32)
    exact = xmc_contrastive_loss(a, b), infonce_local_global_loss(local, glob)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # matmul/einsum would run in bf16 here
        under = xmc_contrastive_loss(a, b), infonce_local_global_loss(local, glob)
    for x, y in zip(under, exact):
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    assert xmc_contrastive_loss(a.double(), b.double()).dtype == f64


# ---------------------------------------------------------------------------------------------- InfoNCE


def test_infonce_mimicry_check_value():
    torch.manual_seed(1)
    local = torch.randn(5, 16, 9, dtype=f64)
    glob = torch.randn(5, 16, dtype=f64)
    close(infonce_local_global_loss(local, glob), 9.054776603917503, atol=1e-9)


def _infonce_loop(local, glob):
    """The closed form of methods.md, one anchor at a time."""
    B, _, L = local.shape
    total = 0.0
    for i in range(B):
        for k in range(L):
            pos = torch.exp(glob[i] @ local[i, :, k])
            neg = sum(torch.exp(glob[i] @ local[j, :, kk]) for j in range(B) if j != i for kk in range(L))
            total += -torch.log(pos / (pos + neg + L * math.exp(-10)))
    return total / (B * L)


def test_infonce_equals_loop_on_random_input():
    torch.manual_seed(3)
    local, glob = torch.randn(4, 6, 5, dtype=f64) * 0.5, torch.randn(4, 6, dtype=f64) * 0.5
    close(infonce_local_global_loss(local, glob), _infonce_loop(local, glob), atol=1e-10)


def test_infonce_equal_scores_is_log_of_candidates():
    # all scores 0: loss = log(1 + (B-1) L + L e^-10) (the anchor's own positions pinned at -10)
    B, L = 6, 7
    loss = infonce_local_global_loss(torch.zeros(B, 3, L, dtype=f64), torch.zeros(B, 3, dtype=f64))
    close(loss, math.log(1 + (B - 1) * L + L * math.exp(-10)), atol=1e-12)


def test_infonce_is_batch_permutation_invariant_and_has_gradients():
    torch.manual_seed(4)
    local = torch.randn(5, 8, 4, dtype=f64, requires_grad=True)
    glob = torch.randn(5, 8, dtype=f64, requires_grad=True)
    perm = torch.randperm(5)
    loss = infonce_local_global_loss(local, glob)
    close(infonce_local_global_loss(local[perm], glob[perm]), loss, atol=1e-12)
    loss.backward()
    assert local.grad.abs().sum() > 0 and glob.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- 2C


E = torch.tensor([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], dtype=f64)
PROXIES = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8]], dtype=f64)
Y = torch.tensor([0, 0, 1, 2])


def test_2c_check_values():
    # methods.md: t = 1 → 0.640580, t = 0.5 → 0.381999. By hand for sample 0 at t = 1: num = e^1 + e^0.8,
    # den = num + e^0 + e^0 → -log(4.94382 / 6.94382) = 0.33970; the four samples average to 0.64058.
    close(contrastive_2c_loss(E, PROXIES[Y], Y, temperature=1.0), 0.640580)
    close(contrastive_2c_loss(E, PROXIES[Y], Y, temperature=0.5), 0.381999)


def _2c_loop(embed, proxy, labels, t):
    e, p = F.normalize(embed, dim=1), F.normalize(proxy, dim=1)
    total = 0.0
    for i in range(len(e)):
        pos = torch.exp(e[i] @ p[i] / t)
        same = sum(torch.exp(e[i] @ e[k] / t) for k in range(len(e)) if k != i and labels[k] == labels[i])
        every = sum(torch.exp(e[i] @ e[k] / t) for k in range(len(e)) if k != i)
        total += -torch.log((pos + same) / (pos + every))
    return total / len(e)


def test_2c_equals_loop_and_is_permutation_invariant():
    torch.manual_seed(5)
    embed, proxy = torch.randn(9, 6, dtype=f64), torch.randn(9, 6, dtype=f64)
    labels = torch.randint(0, 3, (9,))
    loss = contrastive_2c_loss(embed, proxy, labels, temperature=0.3)
    close(loss, _2c_loop(embed, proxy, labels, 0.3), atol=1e-10)
    perm = torch.randperm(9)
    close(contrastive_2c_loss(embed[perm], proxy[perm], labels[perm], temperature=0.3), loss, atol=1e-12)
    # the original code's margin shifts every similarity alike: it cancels
    close(contrastive_2c_loss(embed, proxy, labels, temperature=0.3, margin=0.5), loss, atol=1e-12)


def test_2c_all_distinct_classes_uniform_similarity():
    # every sample its own class, every similarity equal: -log(1 / (1 + (B-1))) = log B
    B = 5
    embed = torch.ones(B, 4, dtype=f64)
    close(contrastive_2c_loss(embed, embed.clone(), torch.arange(B)), math.log(B), atol=1e-12)


# ---------------------------------------------------------------------------------------------- D2D-CE


def test_d2d_ce_by_hand_on_the_2c_example():
    # t = 0.5, m_p = 0.98, m_n = 0.02 on E / PROXIES / Y above. s(e_i, p_i) = 1, .8, 1, .8 → attraction
    # a = relu((.98 - s) / .5) = 0, .36, 0, .36. Off-diagonal cosines: e0e1 .8, e1e2 .6, all others 0, so
    # (s - .02) / .5 = 1.56, 1.16, -0.04. Row maxima M = 1.56, 1.56, 1.16, -0.04. Other-class negatives
    # after relu - M:  row 0: {e2, e3} → -1.56, -1.56;  row 1: {e2, e3} → -0.4, -1.56;
    # row 2: {e0, e1, e3} → -1.16, 0, -1.16;  row 3: {e0, e1, e2} → 0.04 three times.
    e, log = math.exp, math.log
    rows = [log(1 + 2 * e(-1.56)), 0.36 + log(e(-0.36) + e(-0.4) + e(-1.56)),
            log(2 + 2 * e(-1.16)), 0.36 + log(e(-0.36) + 3 * e(0.04))]
    close(data_to_data_cross_entropy(E, PROXIES[Y], Y), sum(rows) / 4, atol=1e-12)  # 0.958300...
    # the paper's equation (no row-max shift): negatives relu(s - m_n) / t = 0, 1.16, ...
    rows = [log(1 + 2), 0.36 + log(e(-0.36) + e(1.16) + 1), log(1 + 1 + e(1.16) + 1), 0.36 + log(e(-0.36) + 3)]
    close(data_to_data_cross_entropy(E, PROXIES[Y], Y, subtract_row_max=False), sum(rows) / 4, atol=1e-12)


def _d2d_loop(embed, proxy, labels, t=0.5, m_p=0.98, shift=True):
    """StudioGAN's Data2DataCrossEntropyLoss.forward, one anchor at a time (m_n = 1 - m_p)."""
    e, p = F.normalize(embed, dim=1), F.normalize(proxy, dim=1)
    total = 0.0
    for i in range(len(e)):
        others = [j for j in range(len(e)) if j != i]
        sims = [(e[i] @ e[j] + m_p - 1) / t for j in others]
        row_max = max(sims).detach() if shift else 0.0
        neg = sum(torch.exp(F.relu(s) - row_max) for j, s in zip(others, sims) if labels[j] != labels[i])
        pos_attr = F.relu((m_p - e[i] @ p[i]) / t)
        total += pos_attr + torch.log(torch.exp(-pos_attr) + neg)
    return total / len(e)


@pytest.mark.parametrize("shift", [True, False])
def test_d2d_ce_equals_loop_and_is_permutation_invariant(shift):
    torch.manual_seed(8)
    embed, proxy = torch.randn(10, 6, dtype=f64), torch.randn(10, 6, dtype=f64)
    labels = torch.randint(0, 3, (10,))
    loss = data_to_data_cross_entropy(embed, proxy, labels, temperature=0.3, m_p=0.9, m_n=0.1, subtract_row_max=shift)
    close(loss, _d2d_loop(embed, proxy, labels, t=0.3, m_p=0.9, shift=shift), atol=1e-10)
    perm = torch.randperm(10)
    permuted = data_to_data_cross_entropy(embed[perm], proxy[perm], labels[perm], temperature=0.3, m_p=0.9,
                                          m_n=0.1, subtract_row_max=shift)
    close(permuted, loss, atol=1e-12)


def test_d2d_ce_one_class_batch_is_only_the_positive_margin_term():
    # every sample of one class: all negatives are false negatives and removed, so each row is
    # a_i + log(exp(-a_i)) = 0 whatever the similarities — the loss is 0 and has no gradient.
    torch.manual_seed(9)
    embed = torch.randn(6, 5, dtype=f64, requires_grad=True)
    loss = data_to_data_cross_entropy(embed, torch.randn(6, 5, dtype=f64), torch.zeros(6, dtype=torch.long))
    close(loss, 0.0, atol=1e-12)
    loss.backward()
    close(embed.grad.abs().sum(), 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- dual contrastive


def test_dual_contrastive_b1_is_twice_softplus():
    r, f = torch.tensor([0.7], dtype=f64), torch.tensor([-0.4], dtype=f64)
    close(dual_contrastive_loss_d(r, f), 2 * F.softplus(f - r).item(), atol=1e-12)
    close(dual_contrastive_loss_g(r, f), 2 * F.softplus(r - f).item(), atol=1e-12)


def _dual_loop(r, f):
    real = sum(-torch.log(torch.exp(r[i]) / (torch.exp(r[i]) + torch.exp(f).sum())) for i in range(len(r))) / len(r)
    fake = sum(-torch.log(torch.exp(-f[j]) / (torch.exp(-f[j]) + torch.exp(-r).sum())) for j in range(len(f))) / len(f)
    return real + fake


def test_dual_contrastive_equals_loop_and_accepts_column_logits():
    torch.manual_seed(6)
    r, f = torch.randn(7, dtype=f64), torch.randn(7, dtype=f64)
    close(dual_contrastive_loss_d(r, f), _dual_loop(r, f), atol=1e-10)
    close(dual_contrastive_loss_g(r, f), _dual_loop(f, r), atol=1e-10)
    close(dual_contrastive_loss_d(r[:, None], f[:, None]), _dual_loop(r, f), atol=1e-10)


def test_dual_contrastive_g_pushes_fake_logits_up():
    torch.manual_seed(7)
    for _ in range(20):
        r = torch.randn(8, dtype=f64) * 3
        f = (torch.randn(8, dtype=f64) * 3).requires_grad_()
        dual_contrastive_loss_g(r, f).backward()
        assert bool((f.grad <= 0).all())  # dL_G / d(fake logits) <= 0
        f2 = f.detach().clone().requires_grad_()
        dual_contrastive_loss_d(r, f2).backward()
        assert bool((f2.grad >= 0).all())  # D pushes fake logits down


# ---------------------------------------------------------------------------------------------- R1


def test_r1_by_hand_for_a_linear_and_a_quadratic_d():
    x = torch.randn(4, 3, 2, 2, dtype=f64, requires_grad=True)
    w = torch.randn(12, dtype=f64)
    rows = r1_penalty_rows(x.flatten(1) @ w, x)  # grad = w; computed in float32, as every loss here
    assert rows.dtype == torch.float32
    torch.testing.assert_close(rows.double(), torch.full((4,), 0.5 * float(w @ w), dtype=f64), rtol=1e-6, atol=0)
    quad = 0.5 * x.pow(2).flatten(1).sum(1) * 3.0  # grad = 3 x
    torch.testing.assert_close(r1_penalty_rows(quad, x).double(), 4.5 * x.detach().pow(2).flatten(1).sum(1),
                               rtol=1e-6, atol=0)


def test_r1_rows_not_computed_from_the_input_add_nothing_and_d_gets_a_gradient():
    from cgantool.nets.sngan import SNGANDiscriminator

    torch.manual_seed(0)
    D = SNGANDiscriminator(resolution=16, channels=8)
    x = torch.randn(3, 3, 16, 16, requires_grad=True)
    logits = D(x).logits
    rows = r1_penalty_rows(logits, x)
    other = torch.randn(5)  # e.g. other processes' gathered logits: constants here
    torch.testing.assert_close(r1_penalty_rows(torch.cat([logits, other]), x), rows)
    by_loop = []
    for i in range(3):  # one image at a time (D's spectral norm is frozen in eval mode)
        xi = x.detach()[i:i + 1].clone().requires_grad_(True)
        D.eval()
        (g,) = torch.autograd.grad(D(xi).logits.sum(), xi)
        by_loop.append(0.5 * g.pow(2).sum())
    D.eval()
    torch.testing.assert_close(r1_penalty_rows(D(x).logits, x), torch.stack(by_loop), rtol=1e-4, atol=1e-7)
    rows.mean().backward()  # double backward through spectral norm reaches D's weights
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------- XMC-GAN


def _xmc_inputs():
    torch.manual_seed(11)
    regions = torch.randn(4, 9, 8, dtype=f64)
    words = torch.randn(4, 6, 8, dtype=f64)
    a = torch.randn(10, 12, dtype=f64)
    b = torch.randn(10, 12, dtype=f64)
    mask = torch.arange(6)[None] < torch.tensor([4, 6, 3, 5])[:, None]
    return regions, words, a, b, mask


def test_xmc_check_values_from_official_code():
    regions, words, a, b, mask = _xmc_inputs()
    close(xmc_contrastive_loss(a, b, temperature=0.1), 10.660953771608458, atol=1e-9)
    close(xmc_word_region_loss(regions, words, mask), 5.411990853361637, atol=1e-9)


def test_xmc_contrastive_chance_and_degenerate_batch():
    # all rows identical: every logit equal → each CE is log B, the two directions sum to 2 log B
    B = 6
    close(xmc_contrastive_loss(torch.ones(B, 3, dtype=f64), torch.ones(B, 3, dtype=f64)), 2 * math.log(B), atol=1e-12)
    close(xmc_contrastive_loss(torch.randn(1, 3, dtype=f64), torch.randn(1, 3, dtype=f64)), 0.0, atol=1e-12)


def _word_region_loop(regions, words, mask, rho1=5.0, rho2=5.0, tau=0.02):
    B = regions.shape[0]
    S = torch.zeros(B, B, dtype=f64)
    for k in range(B):
        r = F.normalize(regions[k], dim=-1)  # [R, D]
        for i in range(B):
            terms = []
            for t in range(words.shape[1]):
                if not mask[i, t]:
                    continue
                w = words[i, t]
                alpha = torch.softmax(rho1 * (r @ F.normalize(w, dim=0)), dim=0)  # over regions
                c = (alpha[:, None] * r).sum(0)
                terms.append(rho2 * F.cosine_similarity(w, c, dim=0))
            S[k, i] = torch.logsumexp(torch.stack(terms), 0) / (rho2 * tau)
    target = torch.arange(B)
    return F.cross_entropy(S, target) + F.cross_entropy(S.T, target)


def test_word_region_equals_loop_and_ignores_padding():
    regions, words, _, _, mask = _xmc_inputs()
    loss = xmc_word_region_loss(regions, words, mask)
    close(loss, _word_region_loop(regions, words, mask), atol=1e-9)
    garbled = words.clone()
    garbled[~mask] = torch.randn(int((~mask).sum()), 8, dtype=f64) * 100  # padded words change
    close(xmc_word_region_loss(regions, garbled, mask), loss, atol=1e-12)


def test_word_region_aligned_is_lower_than_permuted():
    torch.manual_seed(12)
    words = torch.randn(6, 5, 16, dtype=f64)
    mask = torch.ones(6, 5, dtype=torch.bool)
    regions = torch.cat([words, torch.randn(6, 4, 16, dtype=f64) * 0.1], dim=1)  # each image holds its words
    aligned = xmc_word_region_loss(regions, words, mask)
    shuffled = xmc_word_region_loss(regions[torch.tensor([1, 2, 3, 4, 5, 0])], words, mask)
    assert aligned < 0.1 < shuffled


@pytest.mark.parametrize("fn", [infonce_local_global_loss])
def test_losses_are_finite_for_large_scores(fn):
    local, glob = torch.full((3, 4, 2), 30.0), torch.full((3, 4), 30.0)
    assert torch.isfinite(fn(local, glob))
