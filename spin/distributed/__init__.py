"""Scale-out: data-parallel trainer ranks (DDP under Ray Train or torchrun) beside the fitting actors.

`config` (the `distributed:` config section), `ddp` (process groups, model wrapping), `placement`
(Ray Train scaling and the node budget), `launch` (one entry for 1 or N ranks), `remote_reads`
(fit reads for ranks on nodes without the LMDB store), `rank_fitting` (one store writer, a fitting
pool per rank) and `trainer_hooks` (what the `Trainer` calls; no-ops on one rank, the only module
of this package the trainer imports).
"""
