"""3D pose metrics as SPIN reports them: MPJPE and PA-MPJPE (mm) on the 14 LSP joints, vertex error.

Inputs are metres; outputs are per-sample millimetres (average them for the dataset number).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayOrTensor = np.ndarray | torch.Tensor
# Right Hip and Left Hip in the 14 LSP-order joints: their midpoint is the pelvis for alignment.
LSP14_RIGHT_HIP, LSP14_LEFT_HIP = 2, 3


def _as_float64(x: ArrayOrTensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to(torch.float64)


def lsp14_pelvis(joints: torch.Tensor) -> torch.Tensor:
    """Mid-hip point (B,1,3) of 14 LSP-order joints (B,14,3)."""
    right, left = joints[:, LSP14_RIGHT_HIP:LSP14_RIGHT_HIP + 1], joints[:, LSP14_LEFT_HIP:LSP14_LEFT_HIP + 1]
    return 0.5 * (right + left)


def mpjpe(pred: ArrayOrTensor, gt: ArrayOrTensor) -> np.ndarray:
    """Mean per-joint position error after aligning the pelvises. pred, gt (B,14,3) m → (B,) mm."""
    pred, gt = _as_float64(pred), _as_float64(gt)
    error = ((pred - lsp14_pelvis(pred)) - (gt - lsp14_pelvis(gt))).norm(dim=-1).mean(dim=-1)
    return (1000.0 * error).numpy()


def procrustes_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity transform (scale, rotation, translation) of source (B,N,3) closest to target (B,N,3).

    Batched version of SPIN's `compute_similarity_transform` (Umeyama, reflection excluded).
    Returns the aligned source (B,N,3).
    """
    mu_s, mu_t = source.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    xs, xt = source - mu_s, target - mu_t
    var_s = (xs ** 2).sum(dim=(1, 2))
    k = xs.transpose(1, 2) @ xt  # (B,3,3)
    u, _, vh = torch.linalg.svd(k)
    v = vh.transpose(1, 2)
    z = torch.eye(3, dtype=source.dtype, device=source.device).repeat(source.shape[0], 1, 1)
    z[:, -1, -1] = torch.sign(torch.linalg.det(u @ v.transpose(1, 2)))
    rot = v @ z @ u.transpose(1, 2)  # maps source onto target: x_t ≈ s R x_s
    scale = torch.einsum("bii->b", rot @ k) / var_s
    return scale[:, None, None] * xs @ rot.transpose(1, 2) + mu_t


def pa_mpjpe(pred: ArrayOrTensor, gt: ArrayOrTensor) -> np.ndarray:
    """Reconstruction error after similarity Procrustes alignment. pred, gt (B,14,3) m → (B,) mm."""
    pred, gt = _as_float64(pred), _as_float64(gt)
    aligned = procrustes_align(pred, gt)
    return (1000.0 * (aligned - gt).norm(dim=-1).mean(dim=-1)).numpy()


def per_vertex_error(pred_vertices: ArrayOrTensor, gt_vertices: ArrayOrTensor,
                     pred_pelvis: ArrayOrTensor, gt_pelvis: ArrayOrTensor) -> np.ndarray:
    """Mean vertex distance after aligning pelvises. vertices (B,V,3) m, pelvis (B,1,3) m → (B,) mm."""
    pv, gv = _as_float64(pred_vertices), _as_float64(gt_vertices)
    error = ((pv - _as_float64(pred_pelvis)) - (gv - _as_float64(gt_pelvis))).norm(dim=-1).mean(dim=-1)
    return (1000.0 * error).numpy()
