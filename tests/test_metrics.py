"""Metrics against direct SciPy/NumPy/clean-fid computations and hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from cgantool.eval.metrics import (
    density_coverage,
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
    prdc,
)


def _fid_scipy(mu1, s1, mu2, s2):
    """clean-fid's formula with scipy.linalg.sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("n, d", [(500, 64), (200, 128)])
def test_frechet_distance_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.5
    stats = (*feature_stats(a), *feature_stats(b))
    expected = _fid_scipy(*stats)
    assert abs(frechet_distance(*stats) - expected) <= 1e-6 * abs(expected)


def test_frechet_distance_near_singular_covariances():
    # N < d: both covariances are rank-deficient; the eigenvalue route stays real and agrees with sqrtm
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 96)), rng.normal(size=(40, 96)) + 0.1
    stats = (*feature_stats(a), *feature_stats(b))
    assert abs(frechet_distance(*stats) - _fid_scipy(*stats)) < 1e-4 * _fid_scipy(*stats)


def test_fid_of_identical_sets_is_zero_and_shift_is_squared_norm():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 16))
    assert abs(frechet_distance(*feature_stats(a), *feature_stats(a))) < 1e-8
    # shifting every feature by 0.5 in each of 16 dims moves the mean by ||v||² = 16 * 0.25 = 4
    assert abs(frechet_distance(*feature_stats(a), *feature_stats(a + 0.5)) - 4.0) < 1e-8


def test_kid_matches_clean_fid_when_subsets_are_the_whole_sets():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 32)), rng.normal(size=(60, 32)) + 0.2
    # m = N: every subset is a permutation of the whole set, and the unbiased MMD ignores the order
    mean, std = kernel_inception_distance(a, b, num_subsets=3, max_subset_size=60)
    assert abs(mean - kernel_distance(a, b, num_subsets=1, max_subset_size=60)) < 1e-12
    assert std < 1e-12


def test_kid_direct_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) * 1.5
    d, m = 8, 20
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    direct = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    mean, _ = kernel_inception_distance(x, y, num_subsets=1, max_subset_size=20)
    assert abs(mean - direct) < 1e-10


def test_inception_score_hand_cases():
    # 4 confident predictions over 4 distinct classes: KL = log 4 each → IS = 4
    assert abs(inception_score(np.eye(4), splits=1)[0] - 4.0) < 1e-9
    # uniform predictions: p(y|x) = p(y) → KL = 0 → IS = 1
    assert abs(inception_score(np.full((10, 5), 0.2), splits=1)[0] - 1.0) < 1e-9
    # two images, p1 = (0.9, 0.1), p2 = (0.1, 0.9): p(y) = (0.5, 0.5),
    # KL = 0.9 ln 1.8 + 0.1 ln 0.2 for each → IS = exp(0.9 ln 1.8 + 0.1 ln 0.2)
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert abs(inception_score(p, splits=1)[0] - math.exp(0.9 * math.log(1.8) + 0.1 * math.log(0.2))) < 1e-9
    mean, std = inception_score(np.tile(np.eye(4), (5, 1)), splits=5)  # every split sees all 4 classes
    assert abs(mean - 4.0) < 1e-9 and std < 1e-9


def test_prdc_identical_and_disjoint_sets():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 4))
    same = prdc(real, real.copy())
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert abs(same["density"] - 1.0) < 0.25  # each real point lies in its own ball and about k others'
    far = prdc(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_fake_on_part_of_the_real_manifold():
    rng = np.random.default_rng(6)
    real = rng.uniform(0, 1, size=(400, 2))
    fake = real[real[:, 0] < 0.5][:150] + 1e-4  # only the left half
    p, r = precision_recall(real, fake, k=3)
    assert p == 1.0 and r < 0.7


def test_density_coverage_by_hand():
    # real points 0, 1, 2, 3 on a line, k = 1: each radius is 1. fake = {0.5, 10}:
    # 0.5 lies in the balls of 0 and 1 → density = (2 + 0) / (1 * 2) = 1.0; coverage: reals with a fake within
    # radius: 0 (0.5) and 1 (0.5) → 2 / 4 = 0.5
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    density, coverage = density_coverage(real, fake, k=1)
    assert density == 1.0 and coverage == 0.5
    # precision: 0.5 is inside a real ball, 10 is not → 1/2. recall: fake radii (k=1) are both 9.5 → every
    # real point lies within 9.5 of fake 0.5 → 1.0
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
