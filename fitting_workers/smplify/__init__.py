"""Batched SMPLify (SPIN's two-stage fitting) with a fast default mode and a SPIN-exact reference mode."""

from fitting_workers.smplify.config import SmplifyConfig, SmplifyWeights
from fitting_workers.smplify.fit import FAILED_LOSS, FAILURE_REASONS, FitResult, SMPLify

__all__ = ["FAILED_LOSS", "FAILURE_REASONS", "FitResult", "SMPLify", "SmplifyConfig", "SmplifyWeights"]
