"""HMR's adversarial prior: the encoder loss tracks the bank, its graph reaches only the encoder, resume."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from spin.adversarial import AdversarialConfig, AdversarialPrior, discriminator_loss, encoder_adversarial_loss
from spin.data.pose_bank import synthetic_pose_bank
from spin.errors import UserError
from spin.geometry import axis_angle_to_matrix

BATCH = 32


@pytest.fixture(scope="module")
def bank():
    return synthetic_pose_bank(512, seed=5)


def make_prior(bank, seed: int = 0, **overrides) -> AdversarialPrior:
    torch.manual_seed(seed)
    return AdversarialPrior(AdversarialConfig(enabled=True, **overrides), bank=copy.deepcopy(bank))


def perturbed(bank, n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n bank bodies with Gaussian noise of std `noise` on every axis-angle and beta: (n,24,3,3), (n,10)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(bank), (n,), generator=g)
    pose = torch.from_numpy(bank.pose)[rows] + noise * torch.randn(n, 72, generator=g)
    betas = torch.from_numpy(bank.betas)[rows] + 2 * noise * torch.randn(n, 10, generator=g)
    return axis_angle_to_matrix(pose.reshape(n, 24, 3)), betas


def judged(prior: AdversarialPrior, rot: torch.Tensor, betas: torch.Tensor) -> float:
    with torch.no_grad():
        return float(encoder_adversarial_loss(prior.discriminator(rot[:, 1:], betas)))


def test_least_squares_losses_on_hand_made_judgements():
    ones, zeros = torch.ones(4, 25), torch.zeros(4, 25)
    assert float(encoder_adversarial_loss(ones)) == 0.0 and float(encoder_adversarial_loss(zeros)) == 25.0
    assert float(discriminator_loss(ones, zeros)) == 0.0 and float(discriminator_loss(zeros, ones)) == 50.0
    half = torch.full((2, 25), 0.5)
    assert float(discriminator_loss(half, half)) == pytest.approx(25 * 0.25 * 2)


def test_encoder_loss_falls_toward_the_bank_and_rises_away(bank):
    prior = make_prior(bank)  # the default lr
    for step in range(30):
        rot, betas = perturbed(bank, BATCH, 0.5, seed=step)
        prior.step([rot], [betas])
    noises = (0.0, 0.25, 0.5, 1.0)
    by_noise = {noise: judged(prior, *perturbed(bank, 256, noise, seed=1000)) for noise in noises}
    assert by_noise[0.0] < by_noise[0.25] < by_noise[0.5] < by_noise[1.0]


def test_discriminator_learns_to_tell_bank_from_fakes(bank):
    prior = make_prior(bank)  # the default lr
    metrics = [prior.step(*perturbed(bank, BATCH, 0.8, seed=s))[1] for s in range(25)]
    first, last = metrics[0], metrics[-1]
    assert float(last["adv/d_loss"]) < float(first["adv/d_loss"])
    assert float(last["adv/d_acc"]) > float(first["adv/d_acc"]) + 0.1
    for m in metrics:
        for key in ("adv/d_real_acc", "adv/d_fake_acc", "adv/d_acc"):
            assert 0.0 <= float(m[key]) <= 1.0
        assert float(m["adv/d_loss"]) >= 0 and float(m["adv/e_loss"]) >= 0


def test_encoder_loss_is_weighted_and_its_graph_reaches_only_the_predictions(bank):
    prior = make_prior(bank, weight=0.25)
    rot, betas = perturbed(bank, BATCH, 0.5, seed=0)
    rot.requires_grad_(True)
    loss, metrics = prior.step([rot], [betas])
    assert float(loss.detach()) == pytest.approx(0.25 * float(metrics["adv/e_loss"]))
    grads_before = [p.grad.clone() for p in prior.discriminator.parameters()]
    loss.backward()
    assert rot.grad is not None and rot.grad.abs().sum() > 0
    for p, before in zip(prior.discriminator.parameters(), grads_before, strict=True):
        assert torch.equal(p.grad, before) and p.requires_grad


def test_every_iteration_is_a_fake_and_the_real_batch_is_the_training_batch(bank):
    rot, betas = perturbed(bank, BATCH, 0.5, seed=3)
    one, three = make_prior(bank, seed=7), make_prior(bank, seed=7)
    loss_one, _ = one.step([rot], [betas])
    loss_three, _ = three.step([rot, rot, rot], [betas, betas, betas])
    # three identical iterations = the same fake distribution: same update, same loss
    assert float(loss_three) == pytest.approx(float(loss_one), rel=1e-5)
    assert one.bank.state_dict()["rng"] == three.bank.state_dict()["rng"]
    stacked = make_prior(bank, seed=7)
    loss_stacked, _ = stacked.step(torch.stack([rot, rot, rot]), torch.stack([betas, betas, betas]))
    assert float(loss_stacked) == pytest.approx(float(loss_one), rel=1e-5)


def test_state_dict_round_trip_gives_an_identical_next_step(bank):
    prior = make_prior(bank, seed=0)
    for s in range(3):
        prior.step(*perturbed(bank, BATCH, 0.5, seed=s))
    buffer = io.BytesIO()
    torch.save(prior.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_prior(bank, seed=123)  # other initial weights and a fresh sampler
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for s in (10, 11):
        rot, betas = perturbed(bank, BATCH, 0.5, seed=s)
        (a, ma), (b, mb) = prior.step([rot], [betas]), resumed.step([rot], [betas])
        assert torch.equal(a, b) and all(torch.equal(ma[k], mb[k]) for k in ma)
    for p, q in zip(prior.discriminator.parameters(), resumed.discriminator.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_with_another_bank_size_is_refused(bank):
    prior = make_prior(bank)
    other = AdversarialPrior(AdversarialConfig(enabled=True), bank=synthetic_pose_bank(16, seed=5))
    with pytest.raises(UserError, match="adversarial.bank"):
        other.load_state_dict(prior.state_dict())


@pytest.mark.parametrize("key,value", [("lr", 0.0), ("weight", -1.0), ("bank_size", 0), ("real_batch", -1)])
def test_invalid_config_names_its_key(key, value):
    with pytest.raises(UserError, match=f"adversarial.{key}"):
        AdversarialConfig(**{key: value})
