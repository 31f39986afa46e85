"""The trainer's rank hooks on one process (no group): per-rank checkpoint entries and their restore."""

from __future__ import annotations

import pytest
import torch

from spin.distributed import trainer_hooks as ranks
from spin.errors import UserError


def test_one_rank_state_round_trips_and_old_checkpoints_still_load():
    rng = {"torch": torch.random.get_rng_state()}
    entries = ranks.rank_state(rng, {"batches": 3.0}, world_size=1)
    assert entries["world_size"] == 1 and len(entries["rng_per_rank"]) == 1
    restored, acc = ranks.restore_rank_state({"rng": {"torch": "old"}, **entries}, 0, 1, "last.pt")
    assert torch.equal(restored["torch"], rng["torch"]) and acc == {"batches": 3.0}
    # A checkpoint from before ranks: one RNG state, no world size, no per-rank counters.
    assert ranks.restore_rank_state({"rng": {"torch": "old"}}, 0, 1, "last.pt") == ({"torch": "old"}, None)


def test_a_checkpoint_of_another_world_size_is_refused_with_the_number_to_use():
    state = {"rng": {}, "world_size": 2, "rng_per_rank": [{}, {}]}
    with pytest.raises(UserError, match="written by 2 rank.*distributed.num_workers=2"):
        ranks.restore_rank_state(state, 0, 1, "runs/x/last.pt")


def test_n_ranks_without_a_process_group_are_refused():
    with pytest.raises(RuntimeError, match="without a process group"):
        ranks.training_module(torch.nn.Linear(2, 2), torch.device("cpu"), False, world_size=2)
    model = torch.nn.Linear(2, 2)
    assert ranks.training_module(model, torch.device("cpu"), False) is model


def test_sync_fitting_on_several_ranks_is_refused_before_any_store_is_opened(tmp_path):
    from spin.config import TrainConfig
    from spin.distributed.rank_fitting import build_rank_fitting

    config = TrainConfig()
    config.fitting.mode = "sync"
    with pytest.raises(UserError, match="use fitting.mode=async"):
        build_rank_fitting(config, tmp_path / "fits.lmdb", {"synth": 4}, None, rank=0, world_size=2)
    assert not (tmp_path / "fits.lmdb").exists()


def test_round_totals_keep_counts_integers_on_one_rank():
    totals = ranks.round_totals({"batches": 3, "loss/total": 1.5, "steps_time": 0.25})
    assert totals == {"batches": 3, "loss/total": 1.5, "steps_time": 0.25}
    assert isinstance(totals["batches"], int)
