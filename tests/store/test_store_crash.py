"""A writer killed with SIGKILL mid-batch loses nothing it acknowledged, and the store stays valid."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from store import FitsStore
from store.verify import verify_store

BATCH = 2048

# Batch b writes fresh keys w/<b*BATCH + j> with loss b + 1; "ack b" is printed once it committed.
# A 1 MiB starting map makes the writer grow its map while it runs, so a kill can land there too.
WRITER = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    from store import FitsStore

    store = FitsStore(sys.argv[1], map_size=1 << 20)
    rng = np.random.default_rng(0)
    batch = 0
    while True:
        keys = [f"w/{{batch * {BATCH} + j}}" for j in range({BATCH})]
        store.put_if_better(keys, rng.standard_normal(({BATCH}, 72)), np.zeros(({BATCH}, 10)),
                            np.zeros(({BATCH}, 3)), np.full({BATCH}, batch + 1.0), step=batch)
        print("ack", batch, flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("acks_before_kill", [3, 12])
def test_sigkill_mid_batch_keeps_every_acknowledged_batch(tmp_path, acks_before_kill):
    path = tmp_path / "crash"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    acknowledged = -1
    try:
        for line in writer.stdout:
            acknowledged = int(line.split()[1])
            if acknowledged + 1 >= acks_before_kill:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert acknowledged + 1 == acks_before_kill

    report = verify_store(path, structure=True)
    assert report.ok, report.problems
    store = FitsStore(path)  # the writer's lock and reader slots are recovered on open
    for batch in range(acknowledged + 1):
        got = store.get([f"w/{batch * BATCH + j}" for j in range(BATCH)])
        assert got["present"].all(), batch
        assert (got["loss"] == batch + 1).all() and (got["step"] == batch).all()
    # the batch in flight at the kill is all there or not there at all
    in_flight = store.get([f"w/{(acknowledged + 1) * BATCH + j}" for j in range(BATCH)])["present"]
    assert in_flight.all() or not in_flight.any()
    assert len(store) in (BATCH * (acknowledged + 1), BATCH * (acknowledged + 2))
    put = store.put_if_better(["w/0"], np.zeros((1, 72)), np.zeros((1, 10)), np.zeros((1, 3)), [0.5])
    assert put.accepted[0]
    store.close()
    assert verify_store(path).ok
