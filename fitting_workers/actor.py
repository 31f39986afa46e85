"""The fitting actor: SMPLify built once per process, batches fitted and written to the store writer.

`FittingActor` is a plain class (usable in-process too); the pool wraps it with `ray.remote` (see
`remote_actor_class`). When Ray restarts a dead actor it runs `__init__` again, so a restarted
actor rebuilds its body model and SMPLify from the same `BodyFiles`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import ray

from fitting_workers.counts import FitCounts
from fitting_workers.fit_path import CandidateStore, fit_and_offer, smplify_fitter
from fitting_workers.jobs import BatchOutcome, FitJobBatch, error_line
from fitting_workers.smplify import SmplifyConfig

if TYPE_CHECKING:
    from spin.body.files import BodyFiles

HEALTH_GROUP = "health"


def connect_store_writer(name: str, path: str | None) -> CandidateStore:
    """The store writer actor `name` as a `RemoteFitsStore` (looked up inside the fitting actor)."""
    from fitting_workers.store_actor import RemoteFitsStore

    return RemoteFitsStore(ray.get_actor(name), path)


class FittingActor:
    """Fits job batches with SMPLify and offers every batch's candidates to the store in one call.

    body_files: the SMPL model, extra joint regressor and GMM prior to build from; smplify_config:
    iterations, weights, threshold; torch_threads: intra-op threads of this process; device: `cpu`
    or `cuda`; store: where the candidates go, a store (`RemoteFitsStore`) or a function without
    arguments that connects to one (so that Ray need not keep a pickled actor handle among the
    constructor arguments, which a restart could lose).
    """

    def __init__(
        self,
        body_files: BodyFiles,
        smplify_config: SmplifyConfig,
        torch_threads: int,
        device: str,
        store: CandidateStore | Callable[[], CandidateStore],
    ) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process (in-process use after other torch work)
            pass
        self._store = store if hasattr(store, "put_if_better") else store()
        self._threshold = float(smplify_config.threshold)
        self._device = device
        self._fitter = self._build_fitter(body_files, smplify_config, device)
        self._incarnation = uuid.uuid4().hex
        self._node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def _build_fitter(self, body_files: BodyFiles, config: SmplifyConfig, device: str):
        """The fit function `batch -> FitResult` (numpy pose, betas, cam_t, loss, failed)."""
        from fitting_workers.smplify import SMPLify
        from spin.body import BodyModel

        body = BodyModel.from_file(body_files.model, joint_regressor_extra=body_files.joint_regressor_extra)
        return smplify_fitter(SMPLify(body.to(device), body_files.prior, config, device=device))

    @ray.method(concurrency_group=HEALTH_GROUP)
    def ping(self) -> dict:
        """Answered on its own thread, so it returns at once even while a batch is being fitted."""
        return {"pid": os.getpid(), "node_id": self._node_id, "incarnation": self._incarnation,
                "device": self._device}

    def fit_batch(self, batch: FitJobBatch) -> BatchOutcome:
        """Fit a batch and offer its usable fits to the store in one `put_if_better` (one transaction).

        Errors come back in the outcome, never as an exception; on an error nothing of the batch
        was written. Fits SMPLify flags as failed are not offered (see `fit_path.fit_and_offer`).
        """
        outcome = BatchOutcome(size=len(batch), step=batch.step, node_id=self._node_id,
                               incarnation=self._incarnation)
        try:
            _, outcome.counts = fit_and_offer(self._fitter, self._store, batch, self._threshold)
        except Exception as exc:  # errors are values: the trainer must never stop for a bad batch
            outcome.counts = FitCounts(offered=len(batch), errors=len(batch))
            outcome.error = error_line(exc)
        return outcome


def remote_actor_class(actor_class: type = FittingActor):
    """`actor_class` as a Ray actor whose `ping` runs beside (not behind) the queued batches."""
    return ray.remote(concurrency_groups={HEALTH_GROUP: 1})(actor_class)
