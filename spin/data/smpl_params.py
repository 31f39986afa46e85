"""A user's `.npz` of SMPL parameters, read and checked in one place (pose banks, fit initialisations).

The file holds `pose` (N,72) axis-angle with the global orientation first, the betas under `betas`
or `shape` (SPIN's and MoSh's name) with at least 10 columns (the first 10 are kept), and
optionally `cam_t` (N,3). Every problem — a missing or unreadable file, a missing key, a wrong
shape, a row count that does not match, a non-numeric or non-finite value — is one `UserError`
sentence naming the file, the key and what it must be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spin.errors import UserError

NUM_POSE = 72
NUM_BETAS = 10
NUM_CAM_T = 3
BETAS_KEYS = ("betas", "shape")


def read_smpl_params(path: str | Path, what: str, how: str, rows: int | None = None,
                     optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """`pose` (N,72), `betas` (N,10) and each present key of `optional` (today only `cam_t` (N,3)) as
    float32, from the `.npz` at `path`.

    what: the file's role, starting the messages ("Pose bank file", "Initialisation file"); how: how
    to point at another file, ending the message of a missing one ("set adversarial.bank to ..." /
    "pass it to --init"). rows: the N the file must have (e.g. one row per dataset sample), or None
    for any N ≥ 1.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; {how}.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"{what} {path} is not a readable .npz ({type(err).__name__}); write it with "
                        "numpy.savez with keys pose (N,72) and betas (N,10).") from None
    found = ", ".join(sorted(arrays)) or "none"
    if "pose" not in arrays:
        raise UserError(f"{what} {path} has no key 'pose'; it needs pose (N,72) SMPL axis-angle and betas "
                        f"(N,10) (found keys: {found}).")
    betas_key = next((key for key in BETAS_KEYS if key in arrays), None)
    if betas_key is None:
        raise UserError(f"{what} {path} has no key 'shape' or 'betas'; add the (N,10) SMPL betas under one "
                        f"of them (found keys: {found}).")
    n = rows if rows is not None else len(arrays["pose"])
    out: dict[str, np.ndarray] = {}
    for key in ("pose", betas_key, *[k for k in optional if k in arrays]):
        columns, exact = _COLUMNS["betas" if key == betas_key else key]
        values = arrays[key]
        if values.ndim != 2 or len(values) != n or n == 0 or values.shape[1] < columns \
                or (exact and values.shape[1] != columns):
            width = str(columns) if exact else f"≥{columns}"
            if rows is not None:
                must = f"({n},{width}), one row per sample of the dataset"
            else:
                must = f"(N,{width}) with N ≥ 1" + ("" if key == "pose" else f" rows as pose ({n})")
            raise UserError(f"{what} {path}: key '{key}' has shape {values.shape}; it must be {must}.")
        if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
            raise UserError(f"{what} {path}: key '{key}' holds non-finite or non-numeric values; replace "
                            "or remove those rows.")
        out["betas" if key == betas_key else key] = values[:, :columns].astype(np.float32)
    return out


# key -> (columns kept, exactly that many): betas may carry more than SMPL's 10 (e.g. SMPL-H's 16).
_COLUMNS = {"pose": (NUM_POSE, True), "betas": (NUM_BETAS, False), "cam_t": (NUM_CAM_T, True)}
