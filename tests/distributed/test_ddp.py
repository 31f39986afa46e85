"""Two ranks in one gloo process group: DDP's averaged gradients equal one process on the global batch."""

from __future__ import annotations

import pytest
import torch
from conftest import run_ranks
from rank_programs import (
    batches,
    collectives_rank,
    ddp_rank,
    regressor,
    regressor_data,
    regressor_output,
    tiny_data,
    tiny_net,
    train,
)

from spin.distributed.ddp import (
    all_gather_objects,
    check_world_size,
    rank_from_env,
    sum_across_ranks,
    unwrap_model,
    wrap_model,
)
from spin.errors import UserError

WORLD = 2


def _global_steps(n: int, per_rank: int, steps: int) -> list[list[int]]:
    per = [batches(n, per_rank, steps, rank, WORLD) for rank in range(WORLD)]
    return [sum((per[rank][s] for rank in range(WORLD)), []) for s in range(steps)]


def _assert_same(left: dict, right: dict, atol: float) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name].float(), right[name].float(), atol=atol, rtol=1e-4), name


def _run(tmp_path, init_file, kind, per_rank, steps, mean_params=""):
    run_ranks(ddp_rank, WORLD, (WORLD, init_file, kind, per_rank, steps, str(tmp_path), mean_params))
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def test_two_ranks_match_one_process_on_the_global_batch(tmp_path, init_file):
    per_rank, steps = 4, 3
    ranks = _run(tmp_path, init_file, "tiny", per_rank, steps)
    _assert_same(ranks[0]["state"], ranks[1]["state"], atol=0)  # identical on every rank
    drawn = [i for r in ranks for step in r["indices"] for i in step]
    assert len(drawn) == WORLD * per_rank * steps == len(tiny_data()[0])  # one epoch ...
    assert sorted(drawn) == list(range(len(tiny_data()[0])))  # ... split disjointly, covered
    reference = tiny_net()
    inputs, targets = tiny_data()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    train(reference, lambda m, x: m(x), inputs, targets, _global_steps(len(inputs), per_rank, steps))
    _assert_same(ranks[0]["state"], reference.state_dict(), atol=1e-5)
    moved = max(float((start[k] - v).abs().max()) for k, v in reference.state_dict().items())
    assert moved > 1e-3  # the comparison is between trained weights, not two copies of the start


@pytest.mark.e2e
def test_two_ranks_of_the_regressor_match_one_process(tmp_path, init_file, body_files):
    per_rank, steps = 2, 2
    ranks = _run(tmp_path, init_file, "regressor", per_rank, steps, str(body_files.mean_params))
    _assert_same(ranks[0]["state"], ranks[1]["state"], atol=0)
    reference = regressor(str(body_files.mean_params))
    inputs, targets = regressor_data()
    train(reference, regressor_output, inputs, targets, _global_steps(len(inputs), per_rank, steps))
    _assert_same(ranks[0]["state"], reference.state_dict(), atol=1e-4)


def test_without_a_process_group_the_model_is_not_wrapped():
    model = tiny_net()
    assert wrap_model(model, torch.device("cpu"), sync_batchnorm=True) is model
    assert unwrap_model(model) is model


def test_torchrun_environment_is_read_and_checked():
    assert rank_from_env({}).world_size == 1
    info = rank_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (1, 4, 1, False)
    with pytest.raises(UserError, match="RANK=4 is outside WORLD_SIZE=4"):
        rank_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_resume_with_another_world_size_is_a_clear_error():
    check_world_size(None, 1, "last.pt")
    check_world_size(2, 2, "last.pt")
    with pytest.raises(UserError, match="written by 2 rank.*distributed.num_workers=2"):
        check_world_size(2, 4, "runs/x/last.pt")


def test_gather_and_sum_across_ranks(tmp_path, init_file):
    run_ranks(collectives_rank, WORLD, (WORLD, init_file, str(tmp_path)))
    results = [torch.load(tmp_path / f"collectives{r}.pt") for r in range(WORLD)]
    for rank, result in enumerate(results):
        assert [item["rank"] for item in result["gathered"]] == [0, 1]
        assert result["sums"] == {"samples": 9.0, "supervised_fit": 1.0}
        assert result["totals"] == {"batches": 5, "loss/total": 0.5, "steps_time": float(rank)}
        assert isinstance(result["totals"]["batches"], int)  # counts stay integers in the metrics
    assert all_gather_objects("alone") == ["alone"] and sum_across_ranks({"a": 2.0}) == {"a": 2.0}
