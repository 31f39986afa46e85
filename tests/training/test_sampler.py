"""The resumable sampler: a pure function of (seed, position), sharded, weighted, seeded draws."""

import itertools

import numpy as np

from spin.training.sampler import ResumableSampler, SeededDraws


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_resuming_at_a_position_continues_the_same_stream():
    full = _take(ResumableSampler(10, seed=3), 37)
    for start in (0, 1, 9, 10, 23):
        assert _take(ResumableSampler(10, seed=3, start=start), 37 - start) == full[start:]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    draws = [index for index, _ in _take(ResumableSampler(10, seed=1), 30)]
    for epoch in range(3):
        assert sorted(draws[epoch * 10:(epoch + 1) * 10]) == list(range(10))
    assert draws[:10] != draws[10:20]


def test_draw_seeds_are_unique_per_draw():
    seeds = [seed for _, seed in _take(ResumableSampler(5, seed=0), 50)]
    assert len(set(seeds)) == 50


def test_ranks_partition_each_epoch():
    samplers = [ResumableSampler(12, seed=5, rank=r, world_size=3) for r in range(3)]
    per_rank = [[i for i, _ in _take(sampler, 4)] for sampler in samplers]
    assert sorted(sum(per_rank, [])) == list(range(12))
    assert ResumableSampler(12, seed=5, rank=1, world_size=3).draw(2)[0] == per_rank[1][2]


def test_weights_set_the_mixture():
    weights = np.r_[np.full(10, 0.7 / 10), np.full(90, 0.3 / 90)]  # dataset A: 10 samples at 70 %
    draws = np.array([i for i, _ in _take(ResumableSampler(100, seed=0, weights=weights), 5000)])
    assert abs((draws < 10).mean() - 0.7) < 0.03


class _Noise:
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return index, float(np.random.rand())


def test_seeded_draws_make_augmentation_a_function_of_the_draw():
    data = SeededDraws(_Noise())
    state = np.random.get_state()[1].copy()
    assert data[(1, 42)] == data[(1, 42)] and data[(1, 42)] != data[(1, 43)]
    assert np.array_equal(np.random.get_state()[1], state)  # global generators restored
