"""Metrics on feature arrays: FID, KID, Inception Score, precision/recall, density/coverage.

Pure functions on NumPy arrays (rows are samples), computed in float64. Conventions:

- FID, KID: clean-fid 0.1.35 (``cleanfid/fid.py``: ``frechet_distance``, ``kernel_distance``);
- IS: Salimans et al. 2016 as in openai/improved-gan and StyleGAN2-ADA's ``metrics/inception_score.py``
  (10 splits cut at ``i * N // splits``);
- precision/recall: Kynkäänniemi et al. 2019 (k = 3); density/coverage: Naeem et al. 2020 (k = 5), both
  with the strict ``<`` of the ``prdc`` package (clovaai/generative-evaluation-prdc).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import rel_entr


def _as_f64(x) -> np.ndarray:
    """A NumPy float64 view/copy of an array or tensor."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_feats(feats: np.ndarray, name: str, min_rows: int = 2) -> None:
    if feats.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array [N, F], got shape {feats.shape}")
    if feats.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {feats.shape[0]}")


# ---------------------------------------------------------------------------------------------------------- FID


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] (``np.cov(rowvar=False)``, as clean-fid) of features [N, F]."""
    feats = _as_f64(feats)
    _check_feats(feats, "feats")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root [F, F] of a symmetric PSD matrix; tiny negative eigenvalues (round-off) → 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance of two Gaussians (FID, Heusel et al. 2017):

        d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

    mu [F], sigma [F, F]. tr((S1 S2)^½) = sum_i sqrt(lambda_i(S1^½ S2 S1^½)): S1 S2 is similar to the
    symmetric PSD matrix S1^½ S2 S1^½, so two symmetric eigendecompositions replace clean-fid's
    ``scipy.linalg.sqrtm(S1 @ S2)`` — the same value, faster, and real even when a covariance is singular
    (no eps retry needed).
    """
    mu1, mu2, sigma1, sigma2 = (_as_f64(a) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)  # [F, F]
    middle = root1 @ sigma2 @ root1  # [F, F], symmetric PSD
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


# ---------------------------------------------------------------------------------------------------------- KID


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cubic polynomial kernel k(x, y) = (x·y / d + 1)³ between rows of a [m, d] and b [n, d] → [m, n]."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def kernel_inception_distance(feats1, feats2, num_subsets: int = 100, max_subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018) as clean-fid's ``kernel_distance``: (mean, std) over ``num_subsets`` subsets.

    Each subset draws m = min(N1, N2, max_subset_size) rows without replacement, first x from feats2 then y from
    feats1, and takes the unbiased MMD² with the cubic kernel:

        MMD² = [sum_{i!=j} k(x_i,x_j) + sum_{i!=j} k(y_i,y_j)] / (m (m-1)) - 2 sum_{i,j} k(x_i,y_j) / m²

    The draws come from ``np.random.RandomState(seed)``, so the mean equals clean-fid's value after
    ``np.random.seed(seed)`` (clean-fid draws from NumPy's global RNG and returns the mean only).
    """
    f1, f2 = _as_f64(feats1), _as_f64(feats2)
    _check_feats(f1, "feats1")
    _check_feats(f2, "feats2")
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        x = f2[rng.choice(f2.shape[0], m, replace=False)]  # [m, d]
        y = f1[rng.choice(f1.shape[0], m, replace=False)]  # [m, d]
        a = _poly_kernel(x, x) + _poly_kernel(y, y)  # [m, m]
        b = _poly_kernel(x, y)  # [m, m]
        values[s] = ((a.sum() - np.trace(a)) / (m - 1) - b.sum() * 2 / m) / m
    return float(values.mean()), float(values.std())


# ----------------------------------------------------------------------------------------------- Inception Score


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): (mean, std) over ``splits`` chunks of the rows of ``probs``.

    probs [N, C] are softmax class probabilities p(y|x) (rows sum to 1; pass softmax(logits), not logits).
    Chunk i holds rows [i N // splits, (i + 1) N // splits) (openai/improved-gan, StyleGAN2-ADA); per chunk

        IS = exp( mean_x KL(p(y|x) || p(y)) ),   p(y) = mean of the chunk's rows,

    with 0 · log 0 = 0.
    """
    probs = _as_f64(probs)
    _check_feats(probs, "probs", min_rows=1)
    n = probs.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of rows ({n}), got {splits}")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs must be probabilities (non-negative rows summing to 1); apply softmax to logits")
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]  # [n_i, C]
        marginal = part.mean(axis=0, keepdims=True)  # [1, C] p(y)
        kl = rel_entr(part, marginal).sum(axis=1)  # [n_i] KL(p(y|x) || p(y))
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ------------------------------------------------------------------------ precision / recall, density / coverage


def _row_chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def _kth_nn_radii(feats: torch.Tensor, ks: tuple[int, ...], chunk: int) -> dict[int, torch.Tensor]:
    """For each k: distance [N] of every row to its k-th nearest row of the same set (itself counts as the 0th,
    as the ``prdc`` package and StyleGAN2-ADA's ``kthvalue(k + 1)``). Memory O(chunk · N)."""
    kmax = max(ks)
    if feats.shape[0] <= kmax:
        raise ValueError(f"k = {kmax} needs more than {kmax} samples, got {feats.shape[0]}")
    radii: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for rows in _row_chunks(feats.shape[0], chunk):
        d = torch.cdist(feats[rows], feats)  # [c, N]
        nearest = torch.topk(d, kmax + 1, dim=1, largest=False, sorted=True).values  # [c, kmax + 1]
        for k in ks:
            radii[k].append(nearest[:, k])
    return {k: torch.cat(v) for k, v in radii.items()}


def prdc(real, fake, k_pr: int = 3, k_dc: int = 5, chunk: int = 1024,
         device: torch.device | str = "cpu") -> dict[str, float]:
    """Precision, recall (k = ``k_pr``) and density, coverage (k = ``k_dc``) of fake [F, D] against real [R, D].

    With B_k(x) the ball around x of radius = distance to x's k-th nearest neighbour in its own set:
      precision = share of fakes inside some B_kpr(real)            (Kynkäänniemi et al. 2019)
      recall    = share of reals inside some B_kpr(fake)
      density   = (1 / (k_dc F)) sum_fake #{real : fake in B_kdc(real)}   (Naeem et al. 2020)
      coverage  = share of reals whose B_kdc(real) holds some fake
    "Inside" is strict (d < radius), as the ``prdc`` package; k_pr = k_dc = k gives that package's
    ``compute_prdc(real, fake, k)``. Distances are torch.cdist in float64, ``chunk`` rows at a time, so
    memory stays O(chunk · max(R, F)) (10k × 10k works).
    """
    real_np, fake_np = _as_f64(real), _as_f64(fake)
    _check_feats(real_np, "real")
    _check_feats(fake_np, "fake")
    if real_np.shape[1] != fake_np.shape[1]:
        raise ValueError(f"real and fake features differ in width: {real_np.shape[1]} vs {fake_np.shape[1]}")
    real_t = torch.from_numpy(real_np).to(device)  # [R, D]
    fake_t = torch.from_numpy(fake_np).to(device)  # [F, D]
    real_r = _kth_nn_radii(real_t, (k_pr, k_dc), chunk)  # k → [R]
    fake_r = _kth_nn_radii(fake_t, (k_pr,), chunk)[k_pr]  # [F]

    fake_in_real_pr = torch.zeros(fake_t.shape[0], dtype=torch.bool, device=device)  # [F]
    fake_ball_count = torch.zeros(fake_t.shape[0], dtype=torch.float64, device=device)  # [F]
    real_in_fake_pr, real_covered = [], []
    for rows in _row_chunks(real_t.shape[0], chunk):
        d = torch.cdist(real_t[rows], fake_t)  # [c, F]
        r_pr, r_dc = real_r[k_pr][rows, None], real_r[k_dc][rows, None]  # [c, 1]
        fake_in_real_pr |= (d < r_pr).any(dim=0)
        fake_ball_count += (d < r_dc).sum(dim=0)
        real_in_fake_pr.append((d < fake_r[None, :]).any(dim=1))  # [c]
        real_covered.append(d.min(dim=1).values < r_dc[:, 0])  # [c]
    return {
        "precision": float(fake_in_real_pr.double().mean()),
        "recall": float(torch.cat(real_in_fake_pr).double().mean()),
        "density": float(fake_ball_count.sum() / (k_dc * fake_t.shape[0])),
        "coverage": float(torch.cat(real_covered).double().mean()),
    }


def precision_recall(real, fake, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls; see :func:`prdc`."""
    out = prdc(real, fake, k_pr=k, k_dc=k, chunk=chunk)
    return out["precision"], out["recall"]


def density_coverage(real, fake, k: int = 5, chunk: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with k-NN balls around the real samples; see :func:`prdc`."""
    out = prdc(real, fake, k_pr=k, k_dc=k, chunk=chunk)
    return out["density"], out["coverage"]
