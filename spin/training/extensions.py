"""Extra loss terms beside SPIN's: components with their own state that add to the step's total.

A `LossExtension` sees the step's prediction and batch after the forward and returns weighted
loss terms, which the trainer adds to its total after `losses.scale` (so an extension's weight is
its own). Its state (weights, optimisers, generators) travels in the trainer's checkpoint under
`state["extensions"][name]`, so `--resume` continues it exactly. HMR's adversarial prior
(`spin.adversarial.AdversarialPrior`) is the first.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from spin.adversarial import AdversarialPrior
from spin.errors import UserError


class LossExtension(Protocol):
    """name: its key in losses, logs and checkpoints; needs_iterations: it reads every IEF iteration."""

    name: str
    needs_iterations: bool

    def terms(self, pred: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted loss terms (0-d tensors with a graph to the prediction) of one training step."""

    def metrics(self) -> dict[str, float]:
        """The last step's diagnostics, for the step logs."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class AdversarialExtension:
    """HMR's adversarial prior on every IEF iteration's (pose, shape): loss key `adversarial`."""

    name = "adversarial"
    needs_iterations = True

    def __init__(self, prior: AdversarialPrior) -> None:
        self.prior = prior
        self._metrics: dict[str, torch.Tensor] = {}

    def terms(self, pred: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if pred.rotmat_iters is None:
            raise ValueError("the adversarial prior needs the prediction of every IEF iteration "
                             "(predict(..., need_iterations=True))")
        loss, self._metrics = self.prior.step(pred.rotmat_iters, pred.betas_iters)
        return {self.name: loss}

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._metrics.items()}

    def state_dict(self) -> dict[str, Any]:
        return self.prior.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prior.load_state_dict(state)


def build_extensions(config: Any, device: torch.device | str) -> list[LossExtension]:
    """The extensions a `TrainConfig` turns on (today: `adversarial.enabled`)."""
    extensions: list[LossExtension] = []
    if config.adversarial.enabled:
        extensions.append(AdversarialExtension(AdversarialPrior(config.adversarial, device)))
    return extensions


def needs_iterations(extensions: list[LossExtension]) -> bool:
    return any(e.needs_iterations for e in extensions)


def add_extension_terms(terms: dict[str, torch.Tensor], extensions: list[LossExtension], pred: Any,
                        batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`terms` with every extension's terms added, each also summed into `terms["total"]`."""
    for extension in extensions:
        for key, value in extension.terms(pred, batch).items():
            if key in terms:
                raise ValueError(f"loss extension {extension.name!r} returned the existing term {key!r}")
            terms[key] = value
            terms["total"] = terms["total"] + value
    return terms


def extension_metrics(extensions: list[LossExtension]) -> dict[str, float]:
    """Every extension's last-step diagnostics, keys as the extensions name them."""
    return {k: v for e in extensions for k, v in e.metrics().items()}


def extensions_state(extensions: list[LossExtension]) -> dict[str, dict[str, Any]]:
    return {e.name: e.state_dict() for e in extensions}


def load_extensions_state(extensions: list[LossExtension], state: dict[str, dict[str, Any]]) -> None:
    """Restore each extension from `state[name]`; one the checkpoint lacks is a clear error."""
    for e in extensions:
        if e.name not in state:
            raise UserError(f"The checkpoint has no state for {e.name!r} (the run was started without it); "
                            f"resume with the run's own config or start a new run.")
        e.load_state_dict(state[e.name])
