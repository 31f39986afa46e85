"""The fast evaluation paths give SMPLify the fits of the exact math: the joints basis vs the full
mesh forward, and the stacked-GEMM GMM vs the per-component formula."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fitting_workers.smplify import SMPLify, SmplifyConfig
from fitting_workers.smplify.priors import MaxMixturePrior, load_gmm
from fitting_workers.smplify.synthetic import make_problems


class FullForwardJoints(torch.nn.Module):
    """A body whose `joints` is the full smplx forward's (the exact math the fast path replaces)."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.inner = body

    def forward(self, pose, betas):
        return self.inner(pose, betas)

    def joints(self, pose, betas):
        return self.inner(pose, betas).joints


def test_default_mode_fits_equal_with_the_full_forward(body, body_files):
    problems = make_problems(body, 6, seed=3)
    args = (problems.keypoints, problems.init_pose, problems.init_betas, problems.init_cam_t)
    fast = SMPLify(body, body_files.prior, SmplifyConfig()).fit(*args)
    full = SMPLify(FullForwardJoints(body), body_files.prior, SmplifyConfig()).fit(*args)
    assert not fast.failed.any()
    np.testing.assert_array_equal(fast.failure, full.failure)
    np.testing.assert_allclose(fast.pose, full.pose, atol=2e-3)
    np.testing.assert_allclose(fast.betas, full.betas, atol=2e-3)
    np.testing.assert_allclose(fast.cam_t, full.cam_t, atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(fast.loss, full.loss, rtol=1e-3, atol=1e-3)


def _per_component_nll(prior: MaxMixturePrior, body_pose: torch.Tensor) -> torch.Tensor:
    diff = body_pose.unsqueeze(1) - prior.means  # (B, M, 69)
    whitened = torch.einsum("bmi,mij->bmj", diff, prior.precision_factor)
    return 0.5 * (whitened**2).sum(dim=-1) + prior.log_weight_terms


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.05, 2.0))
def test_gmm_equals_the_per_component_formula(body_files, seed, scale):
    gmm = load_gmm(body_files.prior)
    prior = MaxMixturePrior(gmm["means"], gmm["covars"], gmm["weights"])
    pose = scale * torch.randn(5, 69, generator=torch.Generator().manual_seed(seed))
    pose.requires_grad_()
    ours = prior.component_nll(pose)
    (grad,) = torch.autograd.grad(prior(pose).sum(), pose)
    pose_ref = pose.detach().clone().requires_grad_()
    ref = _per_component_nll(prior, pose_ref)
    (grad_ref,) = torch.autograd.grad(ref.min(dim=1).values.sum(), pose_ref)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-3)
