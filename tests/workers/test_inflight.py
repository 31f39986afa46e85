"""The pool's bounded in-flight bookkeeping (`InflightQueue`), without Ray and without clocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fitting_workers.inflight import InflightQueue, Pending


def fill(queue: InflightQueue, batches: list[list[int]]) -> list[bool]:
    """Dispatch each batch to the free actor the queue picks; False where there was no room."""
    placed = []
    for token, batch in enumerate(batches):
        actor = queue.free_actor()
        placed.append(actor is not None)
        if actor is None:
            queue.drop(batch)
        else:
            queue.dispatched(token, Pending(batch, actor))
    return placed


def test_at_most_max_inflight_per_actor_then_drops_counted_in_jobs():
    queue = InflightQueue(num_actors=2, max_inflight=2, max_retries=1)
    assert fill(queue, [[0] * 4] * 6) == [True] * 4 + [False] * 2
    assert queue.queue_depth == 4 and queue.dropped == 8 and queue.queued_jobs == 16
    assert [state.inflight for state in queue.actors] == [2, 2]


def test_least_busy_actor_first_rotating_among_equals():
    queue = InflightQueue(num_actors=3, max_inflight=2, max_retries=0)
    picks = []
    for token in range(3):
        actor = queue.free_actor()
        picks.append(actor)
        queue.dispatched(token, Pending([1], actor))
    assert sorted(picks) == [0, 1, 2]  # spread before any actor gets a second batch
    queue.finished(1)  # frees the actor holding token 1
    assert queue.free_actor() == picks[1]


def test_restarting_and_dead_actors_get_no_work():
    queue = InflightQueue(num_actors=2, max_inflight=1, max_retries=1)
    queue.actors[0].restarting = True
    assert queue.free_actor() == 1
    queue.actors[1].alive = False
    assert queue.free_actor() is None and queue.may_get_room() and queue.any_restarting()
    queue.actors[0].alive = False
    assert not queue.may_get_room()


def test_a_lost_batch_is_retried_once_then_dropped():
    queue = InflightQueue(num_actors=1, max_inflight=1, max_retries=1)
    queue.dispatched("a", Pending([1, 2, 3], 0))
    assert queue.lost(queue.finished("a")) is True
    retry = queue.next_retry()
    assert retry is not None and retry.attempt == 1 and queue.retried == 3
    queue.dispatched("b", retry)
    assert queue.lost(queue.finished("b")) is False
    assert queue.dropped == 3 and queue.next_retry() is None and queue.queue_depth == 0


def test_retries_wait_for_room_and_are_dropped_when_no_actor_is_left():
    queue = InflightQueue(num_actors=1, max_inflight=1, max_retries=2)
    queue.dispatched("busy", Pending([0], 0))
    queue.retry.append(Pending([1, 1], 0, attempt=1))
    assert queue.next_retry() is None and len(queue.retry) == 1  # no room yet: it waits
    queue.actors[0].alive = False
    assert queue.next_retry() is None and queue.dropped == 2 and not queue.retry


def test_abandon_forgets_everything_and_counts_its_jobs():
    queue = InflightQueue(num_actors=2, max_inflight=2, max_retries=1)
    fill(queue, [[0] * 3, [0] * 2])
    queue.retry.append(Pending([0], 0))
    assert queue.abandon() == 6 and queue.queue_depth == 0
    assert all(state.inflight == 0 for state in queue.actors)


@pytest.mark.parametrize("args", [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_bad_bounds_are_refused(args):
    with pytest.raises(ValueError):
        InflightQueue(*args)


@given(actors=st.integers(1, 4), bound=st.integers(1, 3),
       ops=st.lists(st.tuples(st.sampled_from(["submit", "finish", "lose"]), st.integers(1, 5)), max_size=60))
def test_no_actor_ever_holds_more_than_the_bound_and_every_job_is_accounted(actors, bound, ops):
    queue = InflightQueue(actors, bound, max_retries=1)
    submitted = finished = 0
    token = 0
    for op, size in ops:
        if op == "submit":
            submitted += size
            actor = queue.free_actor()
            if actor is None:
                queue.drop([0] * size)
            else:
                queue.dispatched(token, Pending([0] * size, actor))
                token += 1
        elif queue.inflight:
            pending = queue.finished(next(iter(queue.inflight)))
            if op == "finish":
                finished += len(pending.batch)
            else:
                queue.lost(pending)
        while (pending := queue.next_retry()) is not None:
            queue.dispatched(token, pending)
            token += 1
        assert all(0 <= state.inflight <= bound for state in queue.actors)
    assert submitted == finished + queue.dropped + queue.queued_jobs
