"""Start-up and round work of the trainer: imported static fits scored when the store opens,
`model.init_checkpoint`, mesh overlays per round, fit coverage and the fit-truth hook per round."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image

from spin.cli.train_run import rounds_table, scoring_line
from spin.models.checkpoints import project_to_spin_state
from spin.training.overlays import denormalise
from spin.training.round_images import OVERLAY_SIZE, overlay_rows
from spin.training.rounds import coverage_base, fit_coverage, fit_truth_metrics
from spin.training.trainer import Trainer
from store import UNSCORED_LOSS, FitsStore
from store.interchange import import_spin_npy


def _without_smpl(src, tmp_path, zero_rows=()):
    """A copy of the npz `src` without SMPL ground truth (the truth returned), images linked; the
    keypoints of `zero_rows` get confidence 0 (too few keypoints to score)."""
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    truth = np.concatenate([arrays["pose"], arrays["shape"]], axis=1).astype(np.float32)
    arrays["has_smpl"] = np.zeros_like(arrays["has_smpl"])
    arrays["pose"] = np.zeros_like(arrays["pose"])
    arrays["shape"] = np.zeros_like(arrays["shape"])
    for row in zero_rows:
        arrays["part"][row, :, 2] = 0
        arrays["openpose"][row, :, 2] = 0
    (tmp_path / "images").symlink_to(src.parent / "images")
    out = tmp_path / "no_smpl.npz"
    np.savez(out, **arrays)
    return out, truth


@pytest.fixture()
def imported_store(tmp_path, tiny_data):
    """Tiny data without SMPL GT and a store of its (perturbed) true fits, imported unscored."""
    train, truth = _without_smpl(tiny_data["train"], tmp_path, zero_rows=(0,))
    rng = np.random.default_rng(0)
    fits = truth + rng.normal(0, 0.01, truth.shape).astype(np.float32)
    np.save(tmp_path / "fits.npy", fits)
    store_path = tmp_path / "store"
    with FitsStore(store_path) as store:
        import_spin_npy(store, "a", tmp_path / "fits.npy")
        assert (store.get([f"a/{i}" for i in range(len(fits))])["loss"] == UNSCORED_LOSS).all()
    return {"a": train, "test": tiny_data["test"]}, store_path, len(fits)


def test_imported_unscored_fits_supervise_from_the_first_step(tmp_path, imported_store, tiny_train_config):
    data, store_path, rows = imported_store
    config = tiny_train_config(data, "off", tmp_path / "run", **{
        "store": f"'{store_path}'", "rounds.steps_per_round": 2, "rounds.overlay_images": 2,
        "rounds.eval_max_samples": 4, "data.batch_size": 6})
    calls = []
    seen = []
    with Trainer(config, tmp_path / "run", on_setup=lambda *a: calls.append(a),
                 on_step=lambda t: seen.append(bool(t.last_supervision.from_fit.any()))) as trainer:
        assert trainer.scoring["unscored"] == rows
        assert trainer.scoring["scored"] == rows - 1
        assert trainer.scoring["failed_by_reason"] == {"too_few_keypoints": 1}
        assert calls and calls[-1][1:] == (rows, rows)
        assert scoring_line(trainer.scoring) == (f"scored {rows - 1} of {rows} imported fits "
                                                 "(1 left unscored: too_few_keypoints 1)")
        (metrics,) = trainer.train()
        keys = [f"a/{i}" for i in range(rows)]
        stored = FitsStore(store_path, readonly=True).get(keys)
    assert seen[0], "no fit supervised the first step"
    assert stored["loss"][0] == UNSCORED_LOSS  # the failed one stays unscored
    assert (stored["loss"][1:] < config.fitting.smplify.threshold).all()
    assert (stored["source"] == "static").all() and np.isfinite(stored["cam_t"]).all()
    assert metrics["fitted_share"] is None and metrics["supervised_fit_frac"] > 0

    # Overlays: fixed training samples, the predicted and (all have a fit) the fitted mesh drawn.
    assert len(metrics["overlays"]) == 2
    dataset = trainer.data.train_datasets[0]
    for path, row in zip(metrics["overlays"], overlay_rows(len(dataset), 2), strict=True):
        drawn = np.asarray(Image.open(path))
        plain = Image.fromarray(denormalise(dataset.item(row, _identity())["img"]))
        plain = np.asarray(plain.resize((OVERLAY_SIZE, OVERLAY_SIZE), Image.BILINEAR))
        assert drawn.shape == plain.shape
        assert (np.abs(drawn.astype(int) - plain.astype(int)).max(axis=2) > 30).mean() > 0.01


def _identity():
    from spin.data.augment import AugmentParams

    return AugmentParams()


def test_a_second_start_has_nothing_left_to_score(tmp_path, imported_store, tiny_train_config):
    data, store_path, rows = imported_store
    config = tiny_train_config(data, "off", tmp_path / "one", **{"store": f"'{store_path}'"})
    with Trainer(config, tmp_path / "one") as trainer:
        assert trainer.scoring["scored"] == rows - 1
    config = tiny_train_config(data, "off", tmp_path / "two", **{"store": f"'{store_path}'"})
    with Trainer(config, tmp_path / "two") as trainer:
        assert trainer.scoring == {"unscored": 1, "scored": 0, "failed_by_reason": {"too_few_keypoints": 1}}


@pytest.mark.parametrize("layout", ["project", "spin"])
def test_init_checkpoint_starts_from_the_weights_with_a_fresh_optimiser(tmp_path, half_gt_data,
                                                                        tiny_train_config, layout):
    first = tiny_train_config(half_gt_data, "off", tmp_path / "first", **{
        "rounds.steps_per_round": 2, "rounds.overlay_images": 0, "rounds.eval_max_samples": 4})
    with Trainer(first, tmp_path / "first") as trainer:
        trainer.train()
        trained = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    checkpoint = tmp_path / "first" / "round_001" / "checkpoint.pt"
    if layout == "spin":
        spin_file = tmp_path / "spin_layout.pt"
        torch.save({"model": project_to_spin_state(torch.load(checkpoint, weights_only=False)["model"])},
                   spin_file)
        checkpoint = spin_file
    second = tiny_train_config(half_gt_data, "off", tmp_path / "second",
                               **{"model.init_checkpoint": f"'{checkpoint}'"})
    with Trainer(second, tmp_path / "second") as trainer:
        state = trainer.model.state_dict()
        assert trainer.step == 0 and not trainer.optimizer.state_dict()["state"]
        for key, value in trained.items():
            torch.testing.assert_close(state[key], value, msg=key)
    fresh = tiny_train_config(half_gt_data, "off", tmp_path / "fresh")
    with Trainer(fresh, tmp_path / "fresh") as trainer:
        assert not torch.equal(trainer.model.state_dict()["fc1.weight"], trained["fc1.weight"])


def test_init_checkpoint_of_another_architecture_is_one_clear_error(tmp_path, half_gt_data,
                                                                   tiny_train_config):
    from spin.errors import UserError

    first = tiny_train_config(half_gt_data, "off", tmp_path / "first", **{
        "rounds.steps_per_round": 1, "rounds.overlay_images": 0, "rounds.eval_max_samples": 4})
    with Trainer(first, tmp_path / "first") as trainer:
        trainer.train()
    other = tiny_train_config(half_gt_data, "off", tmp_path / "other", **{
        "model.hidden": 16, "model.init_checkpoint": f"'{tmp_path / 'first' / 'last.pt'}'"})
    with pytest.raises(UserError, match="model.hidden"):
        Trainer(other, tmp_path / "other")


def test_fit_coverage_counts_the_round_only():
    base = coverage_base({"offered": 100, "fitted": 90, "dropped": 8})
    round_two = fit_coverage({"offered": 180, "fitted": 166, "dropped": 12}, base)
    assert round_two == {"fits_offered_in_round": 80, "fits_fitted_in_round": 76, "fits_dropped_in_round": 4,
                         "fitted_share": pytest.approx(0.95)}
    assert fit_coverage({}, {}) == {"fitted_share": None}
    assert fit_coverage({"offered": 0, "fitted": 0, "dropped": 0}, {})["fitted_share"] is None


def test_rounds_table_shows_coverage_and_fit_truth_when_measured():
    from rich.console import Console

    def text(rounds):
        console = Console(width=200, record=True)
        console.print(rounds_table(rounds))
        return console.export_text()

    plain = [{"round": 1, "step": 4, "fitted_share": 0.975, "fits_dropped_in_round": 3}]
    out = text(plain)
    assert "97.5%" in out and "fits PA-" not in out
    out = text([{**plain[0], "fits_mpjpe": 61.25, "fits_pa_mpjpe": 42.5}])
    assert "fits PA-" in out and "61.2" in out and "42.5" in out
    assert "PCKh" not in out and "D" not in out.split()
    out = text([{**plain[0], "joint_rotation_error": 0.4321, "pckh": 0.625,
                 "extensions": {"adv/e_loss": 6.125, "adv/d_loss": 12.375, "adv/d_acc": 0.5625}}])
    assert "PCKh" in out and "0.432" in out and "62.5%" in out
    assert "6.125" in out and "12.375" in out and "56.2%" in out


def test_fit_truth_metrics_score_the_hidden_rows_fits_against_their_truth(tmp_path, body):
    from spin.data.synthetic import truth_path
    from store import FitsStore

    rng = np.random.default_rng(4)
    pose = (rng.normal(0, 0.2, (6, 72))).astype(np.float32)
    betas = rng.normal(0, 0.5, (6, 10)).astype(np.float32)
    annotations = tmp_path / "synthetic_train.npz"
    np.savez(truth_path(annotations), pose=pose, shape=betas)
    has_smpl = np.array([True, True, False, False, False, False])
    dataset = types.SimpleNamespace(name="synthetic_train",
                                    annotations=types.SimpleNamespace(path=annotations, has_smpl=has_smpl))
    with FitsStore(tmp_path / "fits") as store:
        keys = [f"synthetic_train/{i}" for i in (2, 3)]
        store.put_if_better(keys, pose[[2, 3]], betas[[2, 3]], np.tile([0, 0, 40.0], (2, 1)), [1.0, 1.0])
        exact = fit_truth_metrics(store, [dataset], body, 20.0)
        assert exact["fits_hidden"] == 4 and exact["fits_hidden_fitted"] == 2
        assert exact["fits_mpjpe"] < 1e-3 and exact["fits_pa_mpjpe"] < 1e-3
        wrong = pose[[4]].copy()
        wrong[0, 3:] += 0.5
        store.put_if_better(["synthetic_train/4"], wrong, betas[[4]], np.array([[0, 0, 40.0]]), [1.0])
        off = fit_truth_metrics(store, [dataset], body, 20.0)
        assert off["fits_hidden_fitted"] == 3 and off["fits_mpjpe"] > 5.0
    # datasets without hidden truth (real data) give no such metrics
    other = types.SimpleNamespace(name="lsp", annotations=types.SimpleNamespace(path=tmp_path / "lsp.npz",
                                                                                has_smpl=has_smpl))
    assert fit_truth_metrics(None, [other], body, 20.0) == {}


def test_spin_train_reports_the_scoring_and_the_coverage_column(tmp_path, imported_store, tiny_train_config):
    from rich.console import Console

    from spin.cli.train_run import run_training

    data, store_path, rows = imported_store
    config = tiny_train_config(data, "off", tmp_path / "run", **{
        "store": f"'{store_path}'", "rounds.steps_per_round": 1, "rounds.overlay_images": 0,
        "rounds.eval_max_samples": 4})
    console = Console(width=200, record=True, force_terminal=False)
    (metrics,) = run_training(config, tmp_path / "run", console=console)
    out = console.export_text()
    assert f"scored {rows - 1} of {rows} imported fits" in out
    assert "fitted" in out and "dropped" in out and metrics["supervised_fit_frac"] > 0
