"""Batched L-BFGS: B independent small problems minimised in lock-step, one history per sample.

SMPLify's batch loss is a sum of independent per-sample losses, so every sample gets its own
curvature history, its own backtracking (Armijo) line search and its own convergence flag, while
each function evaluation still runs the whole batch at once. Unlike torch.optim.LBFGS on the batch
sum, one hard sample neither shrinks the others' steps nor (with a NaN) poisons their history.

The loop is free of host syncs (for large batches on a GPU): it runs a fixed number of iterations
and line-search evaluations, finished samples are masked rather than branched on, and every
iteration writes the same ring slot of the curvature history for the whole batch (samples whose
pair is rejected store an inert pair with rho = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LbfgsSettings:
    """history: curvature pairs kept per sample; first_step: ‖Δx‖∞ of a sample's first (steepest-descent)
    step; max_step: cap on ‖Δx‖∞ of any step; armijo: sufficient-decrease constant; line_search_evals:
    batch evaluations per iteration (a sample still without sufficient decrease after them keeps its
    shrunken step and goes on backtracking in the next iteration, so a few hard samples do not cost
    the whole batch extra evaluations); min_step: a sample whose trial step ‖Δx‖∞ falls below this has
    stalled; rel_tolerance: a sample stops once an accepted step lowers its loss by less than this
    fraction (plus 1e-6 absolute)."""

    history: int = 10
    first_step: float = 0.1
    max_step: float = 1.0
    armijo: float = 1e-4
    line_search_evals: int = 1
    min_step: float = 1e-7
    rel_tolerance: float = 1e-6


def _evaluate(fn: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss `(B,)` and gradient `(B, P)`; non-finite samples read as +inf with zero gradient."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f = fn(x)
        (g,) = torch.autograd.grad(f.sum(), x)
    f, g = f.detach(), g.detach()
    bad = ~torch.isfinite(f) | ~torch.isfinite(g).all(dim=1)
    f = torch.where(bad, torch.full_like(f, float("inf")), f)
    g = torch.where(bad[:, None], torch.zeros_like(g), g)
    return f, g


def _two_loop(g: torch.Tensor, s_hist: torch.Tensor, y_hist: torch.Tensor, rho: torch.Tensor,
              gamma: torch.Tensor, order: list[int]) -> torch.Tensor:
    """H·g per sample `(B, P)` by the two-loop recursion; entries with rho = 0 are inert.

    s_hist, y_hist `(B, m, P)`, rho `(B, m)`, gamma `(B,)` initial scaling, order: slots oldest→newest.
    """
    q = g.clone()
    alphas: dict[int, torch.Tensor] = {}
    for i in reversed(order):
        alpha = rho[:, i] * (s_hist[:, i] * q).sum(dim=1)
        q = q - alpha[:, None] * y_hist[:, i]
        alphas[i] = alpha
    r = gamma[:, None] * q
    for i in order:
        beta = rho[:, i] * (y_hist[:, i] * r).sum(dim=1)
        r = r + s_hist[:, i] * (alphas[i] - beta)[:, None]
    return r


def minimize_lbfgs(fn: Objective, x0: torch.Tensor, max_iter: int, lr: float = 1.0,
                   settings: LbfgsSettings | None = None, budget: torch.Tensor | None = None) -> torch.Tensor:
    """Minimise each sample's loss `fn(x) (B,)` over its own row of x `(B, P)`; returns the final x.

    `fn` must compute row b of its output from row b of x only. `lr` scales every step (1 = plain
    L-BFGS). A sample whose loss is non-finite at x0 is left at x0. Runs `max_iter` iterations;
    a sample stops moving once it has converged (or stalled) or after `budget[b]` iterations
    (budget `(B,)` int, None = max_iter for all).
    """
    cfg = settings or LbfgsSettings()
    x = x0.detach().clone()
    batch, dim = x.shape
    if batch == 0 or max_iter <= 0:
        return x
    f, g = _evaluate(fn, x)
    active = torch.isfinite(f)
    s_hist = x.new_zeros(batch, cfg.history, dim)
    y_hist = x.new_zeros(batch, cfg.history, dim)
    rho = x.new_zeros(batch, cfg.history)
    has_curvature = torch.zeros(batch, dtype=torch.bool, device=x.device)
    gamma = x.new_ones(batch)
    order: list[int] = []
    step_next = x.new_full((batch,), lr)  # a sample's first trial step in the next iteration
    for it in range(max_iter):
        if budget is not None:
            active = active & (budget > it)
        direction = -_two_loop(g, s_hist, y_hist, rho, gamma, order)
        # Without curvature yet, a steepest-descent step of fixed size; with it, check descent.
        g_inf = g.abs().amax(dim=1).clamp_min(1e-30)
        steepest = -g * (cfg.first_step / g_inf)[:, None]
        slope = (g * direction).sum(dim=1)
        use_steepest = ~has_curvature | ~(slope < 0)
        direction = torch.where(use_steepest[:, None], steepest, direction)
        slope = torch.where(use_steepest, (g * steepest).sum(dim=1), slope)
        d_inf = direction.abs().amax(dim=1).clamp_min(1e-30)
        step = torch.minimum(step_next, cfg.max_step / d_inf)

        pending = active & (slope < 0)
        x_new, f_new, g_new = x, f, g
        accepted = torch.zeros_like(active)
        for _ls in range(cfg.line_search_evals):
            trial = torch.where(pending[:, None], x + step[:, None] * direction, x_new)
            f_trial, g_trial = _evaluate(fn, trial)
            ok = pending & (f_trial <= f + cfg.armijo * step * slope)
            x_new = torch.where(ok[:, None], trial, x_new)
            f_new = torch.where(ok, f_trial, f_new)
            g_new = torch.where(ok[:, None], g_trial, g_new)
            accepted = accepted | ok
            # Backtrack to the minimum of the quadratic through f(0), f'(0), f(step), within [0.1, 0.5]·step.
            curvature = f_trial - f - slope * step
            quadratic = -slope * step**2 / (2 * curvature.clamp_min(1e-30))
            shrunk = torch.where(torch.isfinite(f_trial) & (curvature > 0), quadratic, 0.1 * step)
            step = torch.where(pending & ~ok, shrunk.clamp(0.1 * step, 0.5 * step), step)
            pending = pending & ~ok

        step_next = torch.where(accepted, torch.full_like(step, lr), step)
        # A step shrunk to nothing means no progress along this direction: from a steepest-descent
        # direction the sample is done; a quasi-Newton direction means bad curvature, so restart.
        stalled = pending & (step * d_inf < cfg.min_step)
        active = active & ~(stalled & use_steepest)
        reset = stalled & ~use_steepest
        step_next = torch.where(reset, torch.full_like(step, lr), step_next)
        decrease = f - f_new
        converged = accepted & (decrease <= cfg.rel_tolerance * f_new.abs() + 1e-6)
        active = active & ~converged

        s = x_new - x
        y = g_new - g
        sy = (s * y).sum(dim=1)
        yy = (y * y).sum(dim=1)
        keep = accepted & (sy > 1e-10 * yy.sqrt() * s.norm(dim=1)) & (yy > 0)
        slot = len(order) if len(order) < cfg.history else order.pop(0)
        order.append(slot)
        s_hist[:, slot] = torch.where(keep[:, None], s, torch.zeros_like(s))
        y_hist[:, slot] = torch.where(keep[:, None], y, torch.zeros_like(y))
        rho[:, slot] = torch.where(keep, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
        gamma = torch.where(keep, sy / yy.clamp_min(1e-30), gamma)
        has_curvature = (has_curvature | keep) & ~reset
        # A restart forgets the sample's history (rho = 0 makes its pairs inert).
        rho = torch.where(reset[:, None], torch.zeros_like(rho), rho)
        x, f, g = x_new, f_new, g_new
    return x
