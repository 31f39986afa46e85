"""`spin.distributed.launch`: one rank in-process, or N ranks under Ray Train's TorchTrainer with the
engine's failure handling; a rank killed mid-run is restarted, resumes from last.pt, and the run
ends in the state of an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from conftest import workers_conftest
from rank_programs import ToyTrainer, batches, tiny_data, tiny_net, train

from spin.distributed.config import DistributedConfig
from spin.distributed.launch import _user_error_in, check_fresh_run_dir, launch, should_resume
from spin.errors import UserError

STEPS, PER_RANK = 6, 2


def _reference(world: int) -> dict:
    """One process over the global batches of `world` ranks."""
    model = tiny_net()
    inputs, targets = tiny_data()
    per = [batches(len(inputs), PER_RANK, STEPS, rank, world) for rank in range(world)]
    train(model, lambda m, x: m(x), inputs, targets,
          [sum((per[r][s] for r in range(world)), []) for s in range(STEPS)])
    return model.state_dict()


def _assert_state(path, expected: dict) -> None:
    state = torch.load(path)
    assert state["step"] == STEPS
    for name, value in expected.items():
        assert torch.allclose(state["model"][name], value, atol=1e-5), name


def test_one_rank_runs_in_this_process(tmp_path):
    launch({"steps": STEPS, "per_rank": PER_RANK}, tmp_path / "run", factory=ToyTrainer)
    _assert_state(tmp_path / "run" / "last.pt", _reference(1))


def test_a_new_run_over_an_old_one_and_a_resume_without_checkpoint_are_refused(tmp_path):
    with pytest.raises(UserError, match="has no last.pt to resume from"):
        check_fresh_run_dir(tmp_path, resume=True)
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(UserError, match="already holds a run"):
        check_fresh_run_dir(tmp_path, resume=False)
    assert should_resume(tmp_path, resume=False)  # what a restarted rank sees


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_killed_rank_is_restarted_and_the_run_ends_as_an_uninterrupted_one(tmp_path):
    pytest.importorskip("ray.train", reason="Ray Train is not installed (pip install 'ray[train]')")
    import rank_programs
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(rank_programs)  # ranks need not import the test folder
    marker = tmp_path / "rank1_killed"
    config = {"steps": STEPS, "per_rank": PER_RANK, "die": {"rank": 1, "step": 3, "marker": str(marker)}}
    run = tmp_path / "run"
    try:
        launch(config, run, factory=ToyTrainer,
               distributed=DistributedConfig(num_workers=2, cpus_per_worker=1, max_failures=2, timeout_s=120))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(rank_programs)
    assert marker.exists()  # rank 1 did die
    starts = [int(line.split()[0]) for line in (run / "starts_rank1.txt").read_text().splitlines()]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 2  # restarted once, from last.pt
    _assert_state(run / "last.pt", _reference(2))
    workers_conftest.assert_no_ray_processes()


def test_a_resume_on_another_number_of_ranks_is_refused_before_any_rank_starts(tmp_path):
    import ray

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 4, "world_size": 2, "model": tiny_net().state_dict()}, run / "last.pt")
    with pytest.raises(UserError, match="written by 2 rank.*this run has 3.*num_workers=2.*init_checkpoint"):
        launch({"steps": STEPS, "per_rank": PER_RANK}, run, resume=True, factory=ToyTrainer,
               distributed=DistributedConfig(num_workers=3, cpus_per_worker=0.5))
    assert not ray.is_initialized()  # refused in the driver: no cluster started, no rank


def test_a_rank_user_error_comes_back_as_the_sentence():
    pytest.importorskip("ray.train", reason="Ray Train is not installed (pip install 'ray[train]')")
    from ray.train.v2.api.exceptions import WorkerGroupError

    mistake = UserError("Dataset file data/x.npz does not exist; check data.train.")
    failed = WorkerGroupError("rank 1 failed", {0: RuntimeError("peer gone"), 1: mistake})
    assert _user_error_in(failed) is mistake
    assert _user_error_in(WorkerGroupError("oom", {0: MemoryError()})) is None


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_one_rank_of_the_real_trainer_runs_in_this_process(tmp_path, tiny_data):
    from conftest import rank_config

    run = tmp_path / "run"
    config = rank_config(tiny_data, run, "off", **{"distributed.num_workers": 1, "rounds.num_rounds": 1,
                                                    "rounds.steps_per_round": 2})
    rounds = launch(config, run)
    assert [r["round"] for r in rounds] == [1]
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 2 and state["world_size"] == 1
    assert torch.equal(state["rng_per_rank"][0]["torch"], state["rng"]["torch"])
