"""SMPLify's pose and shape priors, batched: the max-mixture GMM, the elbow/knee angle prior, β².

The GMM is read from SMPLify's pickle layout (`means` (M, 69), `covars` (M, 69, 69), `weights` (M,);
M = 8 for `gmm_08.pkl`) and evaluated as SPIN's `MaxMixturePrior.merged_log_likelihood`:
min over components of ½·dᵀΣ⁻¹d − log(w / ((2π)^(69/2)·√(|Σ| / min|Σ|))). The precisions are
factored once (Σ⁻¹ = L·Lᵀ), so every evaluation is one batched matmul over all components.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch

from spin.errors import UserError

# Body-pose (69) indices of the left elbow, right elbow, left knee, right knee rotations about
# their bending axis, and the sign that makes the unnatural bending direction positive (SPIN).
ANGLE_PRIOR_INDICES = (52, 55, 9, 12)
ANGLE_PRIOR_SIGNS = (1.0, -1.0, -1.0, -1.0)


def load_gmm(path: str | Path) -> dict[str, np.ndarray]:
    """`means` (M, D), `covars` (M, D, D), `weights` (M,) as float64 from an SMPLify GMM pickle.

    Reads Python-2 pickles of SMPLify (latin-1 strings). Raises UserError naming the file when it is
    missing, unreadable, lacks a key or has inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"GMM prior file {path} does not exist; pass SMPLify's gmm_08.pkl to --prior "
                        "or leave --prior out to use the synthetic body model's GMM.")
    try:
        with path.open("rb") as handle:
            raw = pickle.load(handle, encoding="latin1")
    except Exception as err:  # any unpickling failure is the file's fault
        raise UserError(f"GMM prior file {path} is not a readable pickle ({type(err).__name__}); "
                        "pass SMPLify's gmm_08.pkl.") from None
    if not isinstance(raw, dict):
        raise UserError(f"GMM prior file {path} does not hold a dict with means/covars/weights; "
                        "pass SMPLify's gmm_08.pkl.")
    gmm = {}
    for key in ("means", "covars", "weights"):
        if key not in raw:
            raise UserError(f"GMM prior file {path} has no '{key}'; pass SMPLify's gmm_08.pkl layout "
                            "(means (M,69), covars (M,69,69), weights (M,)).")
        gmm[key] = np.asarray(raw[key], dtype=np.float64)
    means, covars, weights = gmm["means"], gmm["covars"], gmm["weights"].reshape(-1)
    m, d = means.shape if means.ndim == 2 else (0, 0)
    if means.ndim != 2 or d != 69 or covars.shape != (m, d, d) or weights.shape != (m,) or m == 0:
        raise UserError(f"GMM prior file {path} has means {means.shape}, covars {covars.shape}, weights "
                        f"{weights.shape}; expected (M,69), (M,69,69), (M,).")
    if not all(np.isfinite(a).all() for a in (means, covars, weights)) or (weights <= 0).any():
        raise UserError(f"GMM prior file {path} holds NaN/Inf values or non-positive weights; "
                        "regenerate or replace the file.")
    gmm["weights"] = weights
    return gmm


class MaxMixturePrior(torch.nn.Module):
    """SMPLify's GMM pose prior (max-mixture approximation of the negative log-likelihood).

    `forward(body_pose (B, 69)) -> (B,)`. Buffers: `means` (M, 69), `precision_factor` (M, 69, 69)
    with precision = factor · factorᵀ, `log_weight_terms` (M,) = −log(SPIN's nll weights).
    """

    means: torch.Tensor
    precision_factor: torch.Tensor
    log_weight_terms: torch.Tensor

    def __init__(self, means: np.ndarray, covars: np.ndarray, weights: np.ndarray,
                 source: str = "GMM prior") -> None:
        super().__init__()
        dim = means.shape[1]
        precisions = np.linalg.inv(covars)
        # Symmetrise before factoring: inv() of a symmetric matrix is symmetric only up to rounding.
        precisions = 0.5 * (precisions + np.swapaxes(precisions, 1, 2))
        try:
            factor = np.linalg.cholesky(precisions)
        except np.linalg.LinAlgError:
            raise UserError(f"{source} has a covariance that is not positive definite; "
                            "replace the file with a valid SMPLify GMM.") from None
        signs, logdets = np.linalg.slogdet(covars)
        if (signs <= 0).any():
            raise UserError(f"{source} has a covariance with non-positive determinant; "
                            "replace the file with a valid SMPLify GMM.")
        # SPIN: nll_weight = w / ((2π)^(D/2) · sqrt(det Σ / min det Σ)); logs avoid det over/underflow.
        log_terms = -np.log(weights) + 0.5 * dim * math.log(2 * math.pi) + 0.5 * (logdets - logdets.min())
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))
        self.register_buffer("precision_factor", torch.as_tensor(factor, dtype=torch.float32))
        self.register_buffer("log_weight_terms", torch.as_tensor(log_terms, dtype=torch.float32))
        # (x − μ_m)ᵀ L_m = xᵀ L_m − μ_mᵀ L_m: all components as one (69, M·69) GEMM and a constant.
        stacked = np.ascontiguousarray(factor.transpose(1, 0, 2).reshape(dim, -1))
        self.register_buffer("stacked_factor", torch.as_tensor(stacked, dtype=torch.float32),
                             persistent=False)
        offsets = np.einsum("mi,mij->mj", means, factor).reshape(1, -1)
        self.register_buffer("whitened_means", torch.as_tensor(offsets, dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_pickle(cls, path: str | Path) -> MaxMixturePrior:
        """Build the prior from an SMPLify GMM pickle (see `load_gmm`)."""
        gmm = load_gmm(path)
        return cls(gmm["means"], gmm["covars"], gmm["weights"], source=f"GMM prior file {path}")

    def component_nll(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Per-component ½·dᵀΣ⁻¹d − log(nll weight) `(B, M)` for body_pose `(B, 69)`."""
        whitened = torch.addmm(self.whitened_means, body_pose, self.stacked_factor, beta=-1.0)  # (B, M·69)
        num = self.means.shape[0]
        return 0.5 * whitened.square().view(-1, num, self.means.shape[1]).sum(dim=-1) + self.log_weight_terms

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Max-mixture negative log-likelihood `(B,)` of body_pose `(B, 69)`."""
        return self.component_nll(body_pose).min(dim=1).values


def angle_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """SPIN's elbow/knee prior Σ exp(s·θ)² over the four bending angles, per sample `(B,)`."""
    signs = body_pose.new_tensor(ANGLE_PRIOR_SIGNS)
    return (torch.exp(body_pose[:, list(ANGLE_PRIOR_INDICES)] * signs) ** 2).sum(dim=-1)


def shape_prior(betas: torch.Tensor) -> torch.Tensor:
    """Σ β² per sample `(B,)`."""
    return (betas**2).sum(dim=-1)
