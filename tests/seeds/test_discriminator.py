"""HMR's discriminator: shapes, linear outputs, and which inputs each judgement reads."""

from __future__ import annotations

import pytest
import torch

from spin.geometry import axis_angle_to_matrix
from spin.models.discriminator import NUM_OUTPUTS, HMRDiscriminator, body_rotmats


def random_bodies(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(n, 23, 3, generator=g))
    return rot, torch.randn(n, 10, generator=g)


def test_outputs_are_k_plus_two_linear_judgements():
    torch.manual_seed(0)
    d = HMRDiscriminator()
    rot, betas = random_bodies(7)
    out = d(rot, betas)
    assert out.shape == (7, NUM_OUTPUTS) == (7, 25) and torch.isfinite(out).all()
    # linear outputs (HMR's): no sigmoid clamps them, so scaled-up inputs leave [0, 1] and stay finite
    with torch.no_grad():
        big = d(rot * 1e3, betas * 1e3)
    assert torch.isfinite(big).all() and float(big.abs().max()) > 1.0


def test_architecture_sizes_match_hmr():
    d = HMRDiscriminator()
    assert [m.out_channels for m in d.embed if isinstance(m, torch.nn.Conv2d)] == [32, 32]
    assert d.joint_weight.shape == (23, 32)
    linears = [m for m in d.pose if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(23 * 32, 1024), (1024, 1024), (1024, 1)]
    shape = [m for m in d.shape if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in shape] == [(10, 5), (5, 1)]


@pytest.mark.parametrize("joint", [0, 11, 22])
def test_each_joint_discriminator_reads_only_its_joint(joint):
    torch.manual_seed(1)
    d = HMRDiscriminator()
    rot, betas = random_bodies(3, seed=2)
    moved = rot.clone()
    moved[:, joint] = axis_angle_to_matrix(torch.tensor([[0.4, -0.9, 0.3]])).expand(3, 3, 3)
    a, b = d(rot, betas), d(moved, betas)
    changed = (a - b).abs() > 1e-7
    others = [j for j in range(23) if j != joint]
    assert changed[:, joint].all() and not changed[:, others].any()
    assert changed[:, 23].all()  # the whole-pose judgement sees every joint
    assert not changed[:, 24].any()  # the shape judgement sees only betas


def test_shape_discriminator_reads_only_betas():
    torch.manual_seed(3)
    d = HMRDiscriminator()
    rot, betas = random_bodies(4, seed=4)
    a, b = d(rot, betas), d(rot, betas + 1.0)
    assert torch.equal(a[:, :24], b[:, :24]) and not torch.equal(a[:, 24], b[:, 24])


def test_body_rotmats_drops_the_global_orientation_and_rejects_other_counts():
    rot = axis_angle_to_matrix(torch.randn(2, 24, 3))
    assert torch.equal(body_rotmats(rot), rot[:, 1:])
    assert torch.equal(body_rotmats(rot[:, 1:]), rot[:, 1:])
    with pytest.raises(ValueError):
        body_rotmats(rot[:, :5])
    with pytest.raises(ValueError):
        HMRDiscriminator()(rot, torch.zeros(2, 10))
