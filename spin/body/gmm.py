"""Gaussian mixture pose prior: a deterministic EM fit and SMPLify's pickle layout."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spin.errors import UserError


@dataclass
class PoseGMM:
    """means (K, D), covars (K, D, D), weights (K,) — SMPLify's gmm_08.pkl has K=8, D=69."""

    means: np.ndarray
    covars: np.ndarray
    weights: np.ndarray

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) log density of the mixture."""
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        log_p = _component_log_probs(t(x), t(self.means), t(self.covars), t(self.weights))
        return torch.logsumexp(log_p, dim=1).numpy()


def _component_log_probs(x: torch.Tensor, means: torch.Tensor, covars: torch.Tensor, weights: torch.Tensor):
    """(N, K) log(weight_k · N(x | mean_k, covar_k)); all components in one batched solve."""
    d = x.shape[1]
    chol = torch.linalg.cholesky(covars)  # (K, D, D)
    precision = torch.cholesky_inverse(chol)
    diff = x[None] - means[:, None]  # (K, N, D)
    maha = ((diff @ precision) * diff).sum(-1)  # (K, N)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    return (torch.log(weights)[:, None] - 0.5 * (maha + logdet[:, None] + d * math.log(2 * math.pi))).T


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(x[rng.choice(len(x), p=d2 / d2.sum())])
    return np.array(centers)


def fit_gmm(
    x: np.ndarray, n_components: int, rng: np.random.Generator, iterations: int = 40, reg: float = 1e-3
) -> PoseGMM:
    """Full-covariance EM from a k-means++ start; deterministic for a given rng state.

    x (N, D). ``reg`` is added to every covariance diagonal so no component collapses. Runs in
    torch float64 (batched over components; torch's thread setting applies).
    """
    threads = torch.get_num_threads()
    # Many tiny 69x69 factorisations: extra threads only contend (badly so on a busy machine).
    torch.set_num_threads(1)
    try:
        return _fit_gmm(x, n_components, rng, iterations, reg)
    finally:
        torch.set_num_threads(threads)


def _fit_gmm(
    x: np.ndarray, n_components: int, rng: np.random.Generator, iterations: int, reg: float
) -> PoseGMM:
    x_np = np.asarray(x, dtype=np.float64)
    n, d = x_np.shape
    means_np = _kmeans_pp_init(x_np, n_components, rng)
    xt = torch.as_tensor(x_np)
    means = torch.as_tensor(means_np)
    # A few hard k-means steps give EM a sensible start.
    for _ in range(5):
        labels = torch.cdist(xt, means).argmin(1)
        counts = torch.bincount(labels, minlength=n_components).to(xt.dtype)
        sums = torch.zeros_like(means).index_add_(0, labels, xt)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
    eye = torch.eye(d, dtype=xt.dtype)
    centred = xt - xt.mean(0)
    covars = (centred.T @ centred / (n - 1) + reg * eye).expand(n_components, d, d).clone()
    weights = torch.full((n_components,), 1.0 / n_components, dtype=xt.dtype)
    for _ in range(iterations):
        log_p = _component_log_probs(xt, means, covars, weights)
        resp = torch.softmax(log_p, dim=1)  # (N, K)
        nk = resp.sum(0) + 1e-10
        weights = nk / n
        means = (resp.T @ xt) / nk[:, None]
        diff = xt[None] - means[:, None]  # (K, N, D)
        covars = (diff * resp.T[..., None]).transpose(1, 2) @ diff / nk[:, None, None] + reg * eye
    return PoseGMM(means=means.numpy(), covars=covars.numpy(), weights=weights.numpy())


def save_gmm(gmm: PoseGMM, path: str | Path) -> Path:
    """Write SMPLify's layout: a pickled dict with 'means', 'covars', 'weights' (float64)."""
    path = Path(path)
    with open(path, "wb") as fh:
        pickle.dump(
            {
                "means": gmm.means.astype(np.float64),
                "covars": gmm.covars.astype(np.float64),
                "weights": gmm.weights.astype(np.float64),
            },
            fh,
            protocol=2,
        )
    return path


def load_gmm(path: str | Path) -> PoseGMM:
    """Read a SMPLify-layout GMM pickle (e.g. gmm_08.pkl); UserError naming the file if it is not one."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Pose prior file {path} does not exist; pass SMPLify's gmm_08.pkl with --prior.")
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="latin1")
        means = np.asarray(data["means"], dtype=np.float64)
        covars = np.asarray(data["covars"], dtype=np.float64)
        weights = np.asarray(data["weights"], dtype=np.float64)
    except Exception as exc:
        raise UserError(f"Pose prior file {path} is not a GMM pickle with means/covars/weights.") from exc
    k, d = means.shape if means.ndim == 2 else (0, 0)
    if k == 0 or covars.shape != (k, d, d) or weights.shape != (k,):
        raise UserError(
            f"Pose prior file {path} has inconsistent shapes: means {means.shape}, covars {covars.shape}, "
            f"weights {weights.shape}."
        )
    return PoseGMM(means=means, covars=covars, weights=weights)
