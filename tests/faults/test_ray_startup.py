"""A local Ray that does not start in time (a loaded machine) is retried, then one clear sentence.

Ray's own start-up raises "The current node timed out during startup" after a fixed 30 s; the
overload itself is not reproduced here: `ray.init` is replaced by one that fails as Ray does.
"""

from __future__ import annotations

import pytest
import ray

from fitting_workers import runtime
from fitting_workers.config import FittingConfig
from spin.errors import UserError

RAY_TIMEOUT = ("The current node timed out during startup. This could happen because some of the raylet "
               "failed to startup or the GCS has become overloaded.")


@pytest.fixture()
def fake_ray(monkeypatch):
    """ray.init answering from `script` (an exception to raise, or None to succeed), in order."""
    calls = {"init": 0, "shutdown": 0, "script": []}

    def init(**kwargs):
        calls["init"] += 1
        assert kwargs["address"] == "local"
        outcome = calls["script"].pop(0) if calls["script"] else None
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv(runtime.GCS_PORT_WAIT_ENV, raising=False)
    return calls


def test_a_start_that_times_out_is_one_sentence_naming_the_setting(fake_ray):
    fake_ray["script"] = [Exception(RAY_TIMEOUT)] * 5
    with pytest.raises(UserError) as caught:
        runtime.start_ray(start_timeout_s=0)
    message = str(caught.value)
    assert "\n" not in message and "fitting.start_timeout_s" in message
    assert "within 0 s" in message and "timed out during startup" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert fake_ray["init"] == 1 and fake_ray["shutdown"] == 1  # the half-started Ray is stopped


def test_a_start_that_times_out_is_retried_within_the_bound(fake_ray, monkeypatch):
    fake_ray["script"] = [Exception(RAY_TIMEOUT), Exception(RAY_TIMEOUT), None]
    assert runtime.start_ray(start_timeout_s=60) is True
    assert fake_ray["init"] == 3 and fake_ray["shutdown"] == 2
    import os

    assert os.environ[runtime.GCS_PORT_WAIT_ENV] == "60"  # Ray's GCS port wait gets the same bound


def test_another_start_failure_is_not_retried(fake_ray):
    fake_ray["script"] = [RuntimeError("Failed to start the GCS server.\nlong log follows")]
    with pytest.raises(UserError, match=r"Failed to start the GCS server\.\)") as caught:
        runtime.start_ray(start_timeout_s=60)
    assert "\n" not in str(caught.value) and fake_ray["init"] == 1


def test_start_timeout_must_be_positive():
    with pytest.raises(UserError, match="fitting.start_timeout_s"):
        FittingConfig(start_timeout_s=0)
    assert FittingConfig().start_timeout_s == runtime.DEFAULT_START_TIMEOUT_S
