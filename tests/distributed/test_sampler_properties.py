"""The rank-sharded sampler: deterministic, disjoint across ranks, covering each epoch, resume-exact."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.training.sampler import ResumableSampler


def _take(sampler: ResumableSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


shapes = st.integers(1, 4).flatmap(lambda world: st.tuples(st.just(world), st.integers(world, 40)))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), epoch=st.integers(0, 5))
def test_ranks_are_disjoint_and_their_union_is_the_epoch(shape, seed, epoch):
    world, n = shape
    samplers = [ResumableSampler(n, seed=seed, rank=r, world_size=world) for r in range(world)]
    per_rank = samplers[0].per_rank_epoch
    draws = [[s.draw(epoch * per_rank + i) for i in range(per_rank)] for s in samplers]
    indices = [index for rank in draws for index, _ in rank]
    assert len(set(indices)) == len(indices) == per_rank * world  # no sample twice in an epoch
    assert sorted(indices) == sorted(samplers[0].epoch_indices(epoch).tolist())  # union = the epoch
    assert n - len(indices) < world  # only the remainder of n / world is left out of an epoch
    seeds = [seed_ for rank in draws for _, seed_ in rank]
    assert len(set(seeds)) == len(seeds)  # augmentation seeds differ between ranks too


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_weighted_epochs_are_split_without_overlap_of_draws(shape, seed):
    world, n = shape
    weights = np.linspace(1.0, 2.0, n)
    samplers = [ResumableSampler(n, seed=seed, rank=r, world_size=world, weights=weights)
                for r in range(world)]
    per_rank = samplers[0].per_rank_epoch
    together = Counter(i for s in samplers for i, _ in _take(s, per_rank))
    assert together == Counter(samplers[0].epoch_indices(0).tolist())  # the epoch's multiset, split


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), start=st.integers(0, 120), length=st.integers(1, 30))
def test_resume_at_any_position_continues_the_same_stream(shape, seed, start, length):
    world, n = shape
    for rank in range(world):
        full = _take(ResumableSampler(n, seed=seed, rank=rank, world_size=world), start + length)
        resumed = _take(ResumableSampler(n, seed=seed, start=start, rank=rank, world_size=world), length)
        assert resumed == full[start:]


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_the_stream_is_a_function_of_seed_epoch_and_rank(shape, seed):
    world, n = shape
    rank = world - 1
    first = _take(ResumableSampler(n, seed=seed, rank=rank, world_size=world), 3 * n)
    again = _take(ResumableSampler(n, seed=seed, rank=rank, world_size=world), 3 * n)
    assert first == again
    other_seed = _take(ResumableSampler(n, seed=seed + 1, rank=rank, world_size=world), 3 * n)
    assert [s for _, s in first] != [s for _, s in other_seed]
