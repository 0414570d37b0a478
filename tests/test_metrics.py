"""Metrics against direct SciPy/NumPy/clean-fid computations and hand-derived cases (float64 throughout)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from cgantool.eval.metrics import (
    density_coverage,
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    prdc,
    precision_recall,
)


def close(actual, expected, rtol=0.0, atol=1e-9):
    """assert_close on Python floats / arrays, compared in float64."""
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=rtol, atol=atol)


def _stats_pair(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.5  # correlated, shifted
    return (*feature_stats(a), *feature_stats(b))


def _fid_sqrtm(mu1, s1, mu2, s2):
    """clean-fid's formula, directly: ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)).real."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


# ---------------------------------------------------------------------------------------------------------- FID


def test_feature_stats_by_hand():
    # rows (0, 0), (2, 2): mean (1, 1); unbiased variance ((-1)² + 1²) / (2 - 1) = 2, covariance 2 as well
    mu, sigma = feature_stats(np.array([[0.0, 0.0], [2.0, 2.0]]))
    close(mu, [1.0, 1.0])
    close(sigma, [[2.0, 2.0], [2.0, 2.0]])


@pytest.mark.parametrize("n, d, seed", [(500, 64, 0), (400, 256, 1)])
def test_frechet_distance_matches_scipy_sqrtm(n, d, seed):
    stats = _stats_pair(n, d, seed)
    close(frechet_distance(*stats), _fid_sqrtm(*stats), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n, d, seed", [(40, 96, 2), (100, 200, 3)])
def test_frechet_distance_near_singular_covariances(n, d, seed):
    # N < d: both covariances have rank N - 1 < d; the eigenvalue route stays real and agrees with sqrtm
    stats = _stats_pair(n, d, seed)
    close(frechet_distance(*stats), _fid_sqrtm(*stats), rtol=1e-6, atol=0)


def test_frechet_distance_matches_clean_fid_function():
    from cleanfid.fid import frechet_distance as cleanfid_frechet_distance

    mu1, s1, mu2, s2 = _stats_pair(300, 48, 4)
    with warnings.catch_warnings():  # clean-fid passes sqrtm's deprecated `disp`
        warnings.simplefilter("ignore")
        expected = float(cleanfid_frechet_distance(mu1, s1, mu2, s2))
    close(frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-6, atol=0)


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    # commuting covariances: tr((S1 S2)^½) = sum sqrt(s1_i s2_i), so
    # FID = ||mu1 - mu2||² + sum (sqrt(s1_i) - sqrt(s2_i))² = (1 + 4) + ((1 - 2)² + (2 - 3)²) = 7
    mu1, mu2 = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    close(frechet_distance(mu1, s1, mu2, s2), 7.0, atol=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_squared_norm():
    a = np.random.default_rng(5).normal(size=(300, 16))
    close(frechet_distance(*feature_stats(a), *feature_stats(a)), 0.0, atol=1e-9)
    # adding 0.5 to each of 16 features moves the mean by ||v||² = 16 · 0.25 = 4 and leaves the covariance
    close(frechet_distance(*feature_stats(a), *feature_stats(a + 0.5)), 4.0, atol=1e-9)
    # N < d: exact value 0; round-off only in the 56-dim null space (sqrt of ~1e-16 eigenvalues each)
    b = np.random.default_rng(6).normal(size=(40, 96))
    close(frechet_distance(*feature_stats(b), *feature_stats(b)), 0.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------- KID


def test_kid_equals_clean_fid_kernel_distance_with_the_same_rng():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(80, 32)), rng.normal(size=(70, 32)) + 0.2
    np.random.seed(11)  # clean-fid draws its subsets from NumPy's global RNG
    expected = kernel_distance(a, b, num_subsets=5, max_subset_size=50)
    mean, _ = kernel_inception_distance(a, b, num_subsets=5, max_subset_size=50, seed=11)
    close(mean, expected, rtol=1e-12, atol=0)


def test_kid_direct_unbiased_mmd_on_whole_sets():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) * 1.5
    d, m = 8, 20
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    # unbiased MMD²: off-diagonal means of k(x, x') and k(y, y'), minus twice the mean of k(x, y)
    direct = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    # m = N: every subset is a permutation of the whole set, which the estimator ignores → std 0
    mean, std = kernel_inception_distance(x, y, num_subsets=4, max_subset_size=20)
    close(mean, direct, rtol=1e-12, atol=0)
    close(std, 0.0, atol=1e-12)


def test_kid_is_reproducible_from_its_seed():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    assert kernel_inception_distance(a, b, 10, 30, seed=3) == kernel_inception_distance(a, b, 10, 30, seed=3)
    assert kernel_inception_distance(a, b, 10, 30, seed=3) != kernel_inception_distance(a, b, 10, 30, seed=4)


# ----------------------------------------------------------------------------------------------- Inception Score


def test_inception_score_hand_cases():
    # 4 confident predictions over 4 distinct classes: p(y) = 1/4 each, KL = log 4 per image → IS = 4
    close(inception_score(np.eye(4), splits=1), (4.0, 0.0))
    # uniform predictions: p(y|x) = p(y) → KL = 0 → IS = 1
    close(inception_score(np.full((10, 5), 0.2), splits=1), (1.0, 0.0))
    # two images over 2 classes, p1 = (0.9, 0.1), p2 = (0.1, 0.9): p(y) = (0.5, 0.5);
    # KL(p1 || p(y)) = 0.9 ln(0.9 / 0.5) + 0.1 ln(0.1 / 0.5) = 0.9 ln 1.8 + 0.1 ln 0.2 = KL(p2 || p(y))
    # → IS = exp(0.9 ln 1.8 + 0.1 ln 0.2) = 1.8^0.9 · 0.2^0.1 ≈ 1.3920
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    close(inception_score(p, splits=1)[0], 1.8**0.9 * 0.2**0.1)


def test_inception_score_split_boundaries_follow_the_original():
    # 10 one-hot rows with classes [0,1,2, 0,1,2, 0,1,2,3], splits = 3: chunks [0,3) [3,6) [6,10) (i·N // splits)
    # hold 3, 3 and 4 equally frequent distinct classes → IS 3, 3, 4 (a chunk of k distinct one-hots scores k);
    # mean 10/3, std sqrt(((1/3)² · 2 + (2/3)²) / 3) = sqrt(2) / 3.  (np.array_split would cut [0,4) [4,7) [7,10).)
    probs = np.eye(4)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 3]]
    close(inception_score(probs, splits=3), (10 / 3, math.sqrt(2) / 3))


def test_inception_score_rejects_logits_and_bad_splits():
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.array([[2.0, -1.0], [0.5, 3.0]]), splits=1)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.eye(4), splits=5)


# ------------------------------------------------------------------------ precision / recall, density / coverage


def _prdc_direct(real, fake, k_pr, k_dc):
    """The ``prdc`` package's definitions with full distance matrices (scipy cdist) and np.partition."""
    def radii(x, k):
        return np.partition(cdist(x, x), k, axis=1)[:, k]  # k-th neighbour; column 0 is the point itself

    d = cdist(real, fake)  # [R, F]
    r_pr, r_dc, f_pr = radii(real, k_pr), radii(real, k_dc), radii(fake, k_pr)
    return {
        "precision": (d < r_pr[:, None]).any(axis=0).mean(),
        "recall": (d < f_pr[None, :]).any(axis=1).mean(),
        "density": (d < r_dc[:, None]).sum(axis=0).mean() / k_dc,
        "coverage": (d.min(axis=1) < r_dc).mean(),
    }


def test_prdc_matches_direct_computation_and_ignores_chunking():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(150, 6))
    fake = rng.normal(size=(120, 6)) * 1.3 + 0.3
    expected = _prdc_direct(real, fake, 3, 5)
    for chunk in (7, 1024):  # several chunks with a ragged last one, and a single chunk
        got = prdc(real, fake, k_pr=3, k_dc=5, chunk=chunk)
        close([got[k] for k in expected], [expected[k] for k in expected], atol=1e-12)
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1  # a case where every branch matters


def test_prdc_identical_sets():
    # every fake coincides with a real and vice versa → precision = recall = coverage = 1. Density: with distinct
    # pairwise distances, real j's k-ball strictly holds itself and its k - 1 nearest (the k-th sits on the
    # boundary, excluded by "<"), so the fakes inside all balls number R · k → density = R k / (k F) = 1
    real = np.random.default_rng(11).normal(size=(200, 4))
    got = prdc(real, real.copy())
    close([got["precision"], got["recall"], got["density"], got["coverage"]], [1.0, 1.0, 1.0, 1.0], atol=1e-12)


def test_prdc_disjoint_far_clusters_are_all_zero():
    real = np.random.default_rng(12).normal(size=(100, 4))
    got = prdc(real, real + 100.0)  # every cross distance is ≥ 200 - a few; every radius is a few units
    close([got["precision"], got["recall"], got["density"], got["coverage"]], [0.0, 0.0, 0.0, 0.0], atol=0)


def test_fake_on_one_of_two_real_clusters_by_hand():
    # 1-d, integer coordinates (distances are exact). A = {0, 1, 3, 6, 10, 15, 21}, B = A + 1000; real = A ∪ B,
    # fake = A. k_pr = 3, k_dc = 5:
    # precision: each fake lies on a real copy (distance 0 < radius) → 1
    # recall: reals of A lie on a fake (0 < fake radius); reals of B are ≥ 979 from any fake, fake 3-NN radii
    #   are ≤ 15 → 7 / 14 = 0.5;  coverage likewise 7 / 14 = 0.5
    # density: sorted distances from each a in A to A (5-th entry = radius, strict "<" keeps entries 0..4):
    #   0: [0,1,3,6,10,|15] 1: [0,1,2,5,9,|14] 3: [0,2,3,3,7,|12] 6: [0,3,4,5,6,|9] 10: [0,4,5,7,9,|10]
    #   15: [0,5,6,9,12,|14] 21: [0,6,11,15,18,|20] → 5 fakes in each of 7 balls, none in B's balls
    #   → density = 35 / (5 · 7) = 1
    a = np.array([0, 1, 3, 6, 10, 15, 21], dtype=np.float64)[:, None]
    real, fake = np.concatenate([a, a + 1000]), a.copy()
    got = prdc(real, fake, k_pr=3, k_dc=5)
    close([got["precision"], got["recall"], got["density"], got["coverage"]], [1.0, 0.5, 1.0, 0.5], atol=1e-12)


def test_small_case_by_hand_with_k_1():
    # real {0, 1, 2, 3}: 1-NN radius 1 each. fake {0.5, 0.6, 10}: 1-NN radii 0.1, 0.1, 9.4.
    # precision: 0.5 and 0.6 lie within 1 of real 0 (and 1); 10 does not → 2/3
    # recall: real r is covered by fake f if |r - f| < radius(f): by 10 (radius 9.4): 1, 2, 3 (9, 8, 7); real 0 is
    #   0.5 and 0.6 from the others (radius 0.1) and 10 from fake 10 → 3/4
    # density (k = 1): 0.5 in balls of 0 and 1 (0.5, 0.5; 1.5 to real 2), 0.6 in balls of 0 and 1 (0.6, 0.4),
    #   10 in none → (2 + 2 + 0) / (1 · 3) = 4/3
    # coverage: reals with a fake closer than 1: 0 and 1 → 2/4
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [0.6], [10.0]])
    got = prdc(real, fake, k_pr=1, k_dc=1)
    close([got["precision"], got["recall"], got["density"], got["coverage"]], [2 / 3, 3 / 4, 4 / 3, 1 / 2])
    close(precision_recall(real, fake, k=1), (2 / 3, 3 / 4))
    close(density_coverage(real, fake, k=1), (4 / 3, 1 / 2))


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(ValueError, match="more than 5 samples"):
        prdc(np.zeros((5, 2)), np.ones((10, 2)))
