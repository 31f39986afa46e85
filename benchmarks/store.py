"""Fits store throughput and size next to SPIN's in-memory dictionary, measured in the same run.

    .venv/bin/python benchmarks/store.py                 # 1,000,000 records
    .venv/bin/python benchmarks/store.py --records 100000 --dir /mnt/nvme/tmp

Builds a store of N records the way `spin fits import` / `spin fits init` fill one (index order,
large batches), then times random 64-key batch reads and random `put_if_better` batches (half of
the candidates better than what is stored) against a numpy array dictionary doing SPIN's work
(index; compare losses; assign). Writes are durable commits (fsync per batch), so their rate
depends on the disk under --dir; the same batches without fsync show what the code itself costs,
and a last row runs 16 concurrent callers through the store actor's merged commits. Rates are
wall clock (best of three) with the CPU-time rate beside them: on a shared machine the CPU-time
column is what one idle core would do. Also reports bytes per record on disk, for the in-order
build and for a build whose keys arrive in random order (before and after a repacking snapshot).

Targets (issue 3): reads ≥ 200,000 fits/s, batched writes ≥ 50,000 fits/s, ≤ 512 bytes/record.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name shadows the `store`
# package; drop it so that `import store` finds the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from store import FitsStore  # noqa: E402

READ_BATCH = 64
WRITE_BATCHES = (64, 256, 1024)
BUILD_BATCH = 65536


def _keys(indices: np.ndarray) -> list[str]:
    return [f"h36m/{i}" for i in indices]


def _offer(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    return {
        "pose": rng.standard_normal((count, 72)).astype(np.float32),
        "betas": rng.standard_normal((count, 10)).astype(np.float32),
        "cam_t": rng.standard_normal((count, 3)).astype(np.float32),
    }


def build(path: Path, records: int, order: np.ndarray, rng: np.random.Generator) -> float:
    """Fill `path` with `records` fits in the given index order; returns seconds."""
    started = time.perf_counter()
    with FitsStore(path) as store:
        for start in range(0, records, BUILD_BATCH):
            indices = order[start : start + BUILD_BATCH]
            fits = _offer(rng, len(indices))
            store.put_if_better(
                _keys(indices), fits["pose"], fits["betas"], fits["cam_t"], rng.uniform(50, 150, len(indices))
            )
    return time.perf_counter() - started


def timed(function, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call, each the best of three runs of `repeats` calls.

    CPU time (this process) is what the code costs; wall time adds waiting for the disk and, on a
    shared machine, for other processes.
    """
    wall = cpu = np.inf
    for _ in range(3):
        started, started_cpu = time.perf_counter(), time.process_time()
        for i in range(repeats):
            function(i)
        wall = min(wall, (time.perf_counter() - started) / repeats)
        cpu = min(cpu, (time.process_time() - started_cpu) / repeats)
    return wall, cpu


def time_writes(
    store: FitsStore, spin_fits: np.ndarray, spin_loss: np.ndarray, batch: int, rng: np.random.Generator
) -> tuple[tuple[float, float], tuple[float, float]]:
    """put_if_better of random candidates vs SPIN's compare-and-assign: ((store wall, store CPU),
    (numpy wall, numpy CPU)) seconds per batch."""
    n = len(spin_loss)
    repeats = max(20, 8192 // batch)
    sets = [rng.integers(0, n, batch) for _ in range(repeats)]
    keys = [_keys(indices) for indices in sets]
    offers = [_offer(rng, batch) for _ in range(repeats)]
    losses = [rng.uniform(0, 200, batch) for _ in range(repeats)]  # about half beat the stored 50..150

    def store_write(i: int) -> None:
        j = i % repeats
        fits = offers[j]
        store.put_if_better(keys[j], fits["pose"], fits["betas"], fits["cam_t"], losses[j], step=i)

    def numpy_write(i: int) -> None:
        j = i % repeats
        indices, loss, fits = sets[j], losses[j], offers[j]
        better = loss < spin_loss[indices]
        spin_loss[indices[better]] = loss[better]
        spin_fits[indices[better], :72] = fits["pose"][better]
        spin_fits[indices[better], 72:] = fits["betas"][better]

    return timed(store_write, repeats), timed(numpy_write, repeats)


def time_group_commit(path: Path, n: int, rng: np.random.Generator, callers: int = 16) -> float:
    """Fits/s when `callers` threads each offer batches of 64 to the store actor's class at once.

    `StoreWriter` is what `StoreWriterActor` runs (Ray calls it from concurrent threads); batches
    that arrive while a commit is running are merged into the next transaction.
    """
    import threading

    from fitting_workers.store_actor import StoreWriter

    writer = StoreWriter(str(path))
    rounds = 8
    work = [
        [(rng.integers(0, n, 64), _offer(rng, 64), rng.uniform(0, 200, 64)) for _ in range(rounds)]
        for _ in range(callers)
    ]

    def caller(batches: list) -> None:
        for indices, fits, loss in batches:
            writer.put_if_better(_keys(indices), fits["pose"], fits["betas"], fits["cam_t"], loss)

    threads = [threading.Thread(target=caller, args=(batches,)) for batches in work]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return callers * rounds * 64 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temp dir)")
    parser.add_argument("--skip-random-build", action="store_true", help="skip the random-order size check")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.records
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="store-bench-") as tmp:
        path = Path(tmp) / "fits"
        seconds = build(path, n, np.arange(n), rng)
        data_bytes = (path / "data.mdb").stat().st_size
        print(
            f"store: {n:,} records in {path.parent} ({seconds:.1f} s to build in index order, "
            f"{n / seconds:,.0f} fits/s in batches of {BUILD_BATCH})"
        )

        # SPIN's dictionary: one (N, 82) float array per dataset plus the losses, indexed by sample.
        spin_fits = np.zeros((n, 82), np.float32)
        spin_loss = np.full(n, 100.0)
        reader = FitsStore(path, readonly=True)
        read_sets = [rng.integers(0, n, READ_BATCH) for _ in range(500)]
        read_keys = [_keys(indices) for indices in read_sets]
        store_read = timed(lambda i: reader.get(read_keys[i % 500]), 500)
        numpy_read = timed(lambda i: (spin_fits[read_sets[i % 500]], spin_loss[read_sets[i % 500]]), 500)
        reader.close()
        rows = [("read", READ_BATCH, store_read, numpy_read)]
        for sync in (True, False):
            store = FitsStore(path, sync=sync)
            for batch in WRITE_BATCHES:
                store_time, numpy_time = time_writes(store, spin_fits, spin_loss, batch, rng)
                rows.append(("put_if_better" if sync else "  no fsync", batch, store_time, numpy_time))
            store.close()

        print(
            f"\n{'operation':<14}{'batch':>6}{'store fits/s':>14}{'(CPU time)':>12}{'numpy fits/s':>15}"
            f"{'numpy/store':>12}{'store ms/batch':>16}"
        )
        for name, batch, (store_wall, store_cpu), (numpy_wall, _) in rows:
            print(
                f"{name:<14}{batch:>6}{batch / store_wall:>14,.0f}{batch / store_cpu:>12,.0f}"
                f"{batch / numpy_wall:>15,.0f}{store_wall / numpy_wall:>12.0f}{store_wall * 1e3:>16.3f}"
            )
        grouped = time_group_commit(path, n, rng)
        print(f"{'store actor, 16 callers x 64, merged commits':<44}{grouped:>14,.0f}  (durable)")
        numpy_bytes = spin_fits.nbytes + spin_loss.nbytes
        print(
            f"\nbytes per record: store {data_bytes / n:.0f} on disk (data.mdb {data_bytes / 2**20:.0f} MiB, "
            f"in-order build); SPIN's numpy dictionary {numpy_bytes / n:.0f} in memory"
        )

        if not args.skip_random_build:
            shuffled = Path(tmp) / "shuffled"
            build(shuffled, n, rng.permutation(n), rng)
            plain = (shuffled / "data.mdb").stat().st_size
            with FitsStore(shuffled, readonly=True) as copy:
                snap = copy.snapshot(Path(tmp) / "snap")
                packed = copy.snapshot(Path(tmp) / "packed", repack=True)
            print(
                f"random-order build: {plain / n:.0f} bytes per record; compacting snapshot "
                f"{(snap / 'data.mdb').stat().st_size / n:.0f}; repacked snapshot "
                f"{(packed / 'data.mdb').stat().st_size / n:.0f}"
            )
    print("writes are durable commits (fsync) unless marked 'no fsync'; numpy/store compares wall times")
    print("targets: reads >= 200,000 fits/s, batched writes >= 50,000 fits/s, <= 512 bytes per record")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
