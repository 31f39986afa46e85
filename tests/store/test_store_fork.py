"""A read-only FitsStore opened in a forked child (a DataLoader worker) while the parent holds the store."""

import os

import numpy as np
import pytest

from store import FitsStore


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_readonly_store_opens_in_forked_child_while_parent_holds_it(tmp_path):
    path = tmp_path / "fits.lmdb"
    parent = FitsStore(path)
    parent.put_if_better(["d/0"], np.ones((1, 72), np.float32), np.zeros((1, 10), np.float32),
                         np.zeros((1, 3), np.float32), np.array([5.0]))
    pid = os.fork()
    if pid == 0:  # child: exit status tells the parent what it read
        try:
            got = FitsStore(path, readonly=True).get(["d/0"])
            os._exit(0 if got["present"][0] and got["loss"][0] == 5.0 else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.get(["d/0"])["present"][0]
