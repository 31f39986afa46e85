"""The batched per-sample optimisers (L-BFGS, Adam with budgets) used by SMPLify."""

from __future__ import annotations

import torch

from fitting_workers.smplify.adam import minimize_adam
from fitting_workers.smplify.lbfgs import minimize_lbfgs


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) -> (B,), minimum 0 at (1, 1)."""
    return (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2


def test_each_sample_converges_on_its_own_scale():
    torch.manual_seed(0)
    scales = torch.tensor([1e-2, 1.0, 1e4])[:, None]
    targets = torch.randn(3, 5)

    def fn(x):
        return (scales * (x - targets) ** 2).sum(dim=1)

    x = minimize_lbfgs(fn, torch.zeros(3, 5), max_iter=30)
    assert torch.allclose(x, targets, atol=1e-3)


def test_rosenbrock_per_sample():
    x0 = torch.tensor([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0]])
    x = minimize_lbfgs(rosenbrock, x0, max_iter=200)
    assert (rosenbrock(x) < 1e-6).all()


def test_a_nan_sample_leaves_the_others_alone():
    targets = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [-1.0, 0.5]])

    def fn(x):
        return ((x - targets) ** 2).sum(dim=1)

    x0 = torch.zeros(3, 2)
    x = minimize_lbfgs(fn, x0, max_iter=20)
    assert torch.allclose(x[[0, 2]], targets[[0, 2]], atol=1e-4)
    assert torch.equal(x[1], x0[1])


def test_a_sample_that_turns_nan_away_from_x0_still_descends():
    def fn(x):
        # Undefined beyond x = 0.5; the minimum of the defined part is at its edge region.
        return (x[:, 0] - 2.0) ** 2 + torch.log(0.5 - x[:, 0]).clamp_max(0.0) * 0.0

    x = minimize_lbfgs(fn, torch.zeros(2, 1), max_iter=50)
    assert torch.isfinite(x).all() and (x[:, 0] > 0.3).all() and (x[:, 0] <= 0.5).all()


def test_batched_adam_is_torch_adam():
    torch.manual_seed(1)
    targets = torch.randn(4, 3)

    def fn(x):
        return ((x - targets) ** 4).sum(dim=1)

    x0 = torch.zeros(4, 3)
    param = x0.clone().requires_grad_(True)
    adam = torch.optim.Adam([param], lr=0.05)
    for _ in range(12):
        adam.zero_grad()
        fn(param).sum().backward()
        adam.step()
    torch.testing.assert_close(minimize_adam(fn, x0, iters=12, lr=0.05), param.detach(), rtol=1e-5, atol=1e-6)


def test_budgets_stop_each_sample_on_its_own():
    targets = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])

    def fn(x):
        return ((x - targets) ** 2).sum(dim=1)

    x0 = torch.zeros(3, 2)
    budget = torch.tensor([0, 3, 20])
    for minimize in (lambda b: minimize_adam(fn, x0, iters=20, lr=0.1, budget=b),
                     lambda b: minimize_lbfgs(fn, x0, max_iter=20, budget=b)):
        x = minimize(budget)
        assert torch.equal(x[0], x0[0])
        short = minimize(torch.tensor([3, 3, 3]))
        torch.testing.assert_close(x[1], short[1])
        full = minimize(None)
        torch.testing.assert_close(x[2], full[2])
