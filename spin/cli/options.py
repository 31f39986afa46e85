"""Command-line options shared by several commands (the body-model files every fitting command takes)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

BodyModelOption = Annotated[
    Optional[Path], typer.Option("--body-model", help="SMPL model file (default: the synthetic model).")
]
JointRegressorExtraOption = Annotated[
    Optional[Path], typer.Option("--joint-regressor-extra", help="SPIN's J_regressor_extra.npy.")
]
PriorOption = Annotated[Optional[Path], typer.Option("--prior", help="SMPLify's GMM prior gmm_08.pkl.")]
