"""The real Trainer on 2 ranks under Ray Train (CPU, gloo), through `spin train`'s own function:
async fitting from both ranks into one store, rank 0 alone writing the rounds, a rank killed with
SIGKILL restarted by Ray Train from last.pt."""

from __future__ import annotations

import json

import conftest
import pytest
import rank_programs
import torch
from conftest import rank_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
pytest.importorskip("ray.train", reason="Ray Train is not installed (pip install 'ray[train]')")

N_TRAIN, STEPS_PER_ROUND, PER_RANK = conftest.N_TRAIN, conftest.STEPS_PER_ROUND, conftest.PER_RANK


def _rank_indices(rank: int, draws: int, seed: int) -> set[int]:
    from spin.training.sampler import ResumableSampler

    sampler = iter(ResumableSampler(N_TRAIN, seed=seed, rank=rank, world_size=2))
    return {next(sampler)[0] for _ in range(draws)}


def test_two_ranks_with_async_fitting_fill_one_store_and_write_rounds_once(tmp_path, tiny_data, ray_local):
    from spin.cli.train_run import run_training
    from store import FitsStore

    run = tmp_path / "run"
    config = rank_config(tiny_data, run, "async")
    rounds = run_training(config, run)
    assert [r["round"] for r in rounds] == [1, 2]
    assert sorted(p.name for p in run.glob("round_*")) == ["round_001", "round_002"]
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 2 * STEPS_PER_ROUND and state["world_size"] == 2
    assert len(state["rng_per_rank"]) == 2 and not torch.equal(state["rng_per_rank"][0]["torch"],
                                                               state["rng_per_rank"][1]["torch"])
    metrics = json.loads((run / "round_002" / "metrics.json").read_text())
    assert metrics["fitting_mode"] == "async"
    draws = 2 * STEPS_PER_ROUND * PER_RANK
    mine = [_rank_indices(r, draws, config.seed) for r in (0, 1)]
    with FitsStore(run / "fits.lmdb", readonly=True) as store:
        assert [r["round"] for r in store.rounds()] == [1, 2]  # the rounds table, written by rank 0 once
        for rank in (0, 1):
            only = sorted(mine[rank] - mine[1 - rank])
            assert only, "the ranks' draws are not disjoint in the first epoch"
            fits = store.get([f"synth/{i}" for i in only])
            assert fits["present"].any(), f"no fit of rank {rank}'s samples reached the store"


def test_a_killed_rank_of_the_real_trainer_is_restarted_and_ends_as_an_uninterrupted_run(tmp_path, tiny_data,
                                                                                         ray_local):
    from spin.distributed.launch import launch

    extra = {"rounds.checkpoint_every": 2, "rounds.num_rounds": 1, "rounds.steps_per_round": 4}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    launch(rank_config(tiny_data, straight, "off", **extra), straight)
    marker, starts = tmp_path / "killed_once", tmp_path / "starts.txt"
    config = rank_config(tiny_data, killed, "off", **extra, **{"distributed.max_failures": 2})
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(rank_programs)  # ranks need not import the test folder
    try:
        launch(config, killed, factory=rank_programs.KillingTrainer(1, 3, str(marker), str(starts)))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(rank_programs)
    assert marker.exists()
    rank1_starts = [int(line.split()[1]) for line in starts.read_text().splitlines() if line.startswith("1 ")]
    assert rank1_starts == [0, 2]  # restarted once, from the last.pt of step 2
    a = torch.load(straight / "last.pt", weights_only=False)
    b = torch.load(killed / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    ma = json.loads((straight / "round_001" / "metrics.json").read_text())
    mb = json.loads((killed / "round_001" / "metrics.json").read_text())
    assert ma["mpjpe"] == mb["mpjpe"]
