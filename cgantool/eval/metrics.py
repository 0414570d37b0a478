"""Metrics on feature arrays (NumPy, float64): FID, KID, Inception Score, precision/recall, density/coverage.

Pure functions; the conventions are clean-fid's (FID, KID), the original Inception Score's (10 splits),
Kynkäänniemi et al. 2019 (precision/recall, k = 3) and Naeem et al. 2020 (density/coverage, k = 5).
"""

from __future__ import annotations

import numpy as np
import torch


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] of features [N, F] (rows are samples), in float64."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues → 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½), the Fréchet distance of two Gaussians (FID).

    tr((S1 S2)^½) = sum of sqrt(eigenvalues of S1^½ S2 S1^½), a symmetric PSD matrix, so two symmetric
    eigendecompositions replace scipy.linalg.sqrtm (the same value, several times faster, stable when a
    covariance is singular).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018) as clean-fid computes it: the unbiased MMD² with the cubic kernel
    k(x, y) = (x·y / d + 1)³ over ``num_subsets`` random subsets of m = min(N1, N2, max_subset_size).

    Returns (mean, std) over the subsets; draws come from a local RNG seeded with ``seed``.
    """
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    d = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        x = f2[rng.choice(f2.shape[0], m, replace=False)]
        y = f1[rng.choice(f1.shape[0], m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        values[s] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return float(values.mean()), float(values.std())


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), computed per split of the rows of ``probs`` [N, C]; (mean, std)."""
    probs = np.asarray(probs, np.float64)
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None)))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _pairwise(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distances [len(a), len(b)], computed in row chunks with torch (float64)."""
    bt = torch.from_numpy(np.asarray(b, np.float64))
    out = [torch.cdist(torch.from_numpy(np.asarray(a[i : i + chunk], np.float64)), bt).numpy()
           for i in range(0, len(a), chunk)]
    return np.concatenate(out)


def _kth_neighbour_radius(feats: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the same set."""
    d = _pairwise(feats, feats)
    return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): a sample is covered by the other set's
    manifold if it lies within some point's k-NN radius there."""
    real_r, fake_r = _kth_neighbour_radius(real, k), _kth_neighbour_radius(fake, k)
    d = _pairwise(real, fake)  # [R, F]
    precision = float((d <= real_r[:, None]).any(axis=0).mean())
    recall = float((d <= fake_r[None, :]).any(axis=1).mean())
    return precision, recall


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), with k-NN balls around the real samples only."""
    real_r = _kth_neighbour_radius(real, k)
    d = _pairwise(real, fake)  # [R, F]
    inside = d <= real_r[:, None]
    density = float(inside.sum(axis=0).mean() / k)
    coverage = float((d.min(axis=1) <= real_r).mean())
    return density, coverage


def prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    precision, recall = precision_recall(real, fake, k_pr)
    density, coverage = density_coverage(real, fake, k_dc)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}
