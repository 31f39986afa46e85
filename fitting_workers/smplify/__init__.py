"""Batched SMPLify (SPIN's two-stage fitting) with a fast default mode and a SPIN-exact reference mode."""

from fitting_workers.smplify.config import SmplifyConfig, SmplifyWeights
from fitting_workers.smplify.fit import FAILED_LOSS, FitResult, SMPLify

__all__ = ["FAILED_LOSS", "FitResult", "SMPLify", "SmplifyConfig", "SmplifyWeights"]
