"""Moving fits in and out of a store: SPIN's static `.npy`, SPIN's final-fits `.npz`, and HDF5.

Formats
- SPIN static fits `<dataset>_fits.npy`: float32 or float64 (N, 82) = pose 72 + betas 10, row i
  = sample i. SPIN keeps no loss or camera with them, so rows import with source "static",
  cam_t 0 and loss `schema.UNSCORED_LOSS` (or the losses of `--loss FILE`); the first scored fit
  of a sample replaces them, and writing the same row with its real loss rescores it. Export
  writes the dataset's declared size in the imported dtype; samples without a fit are zero rows.
  Round trip is bit-exact for both dtypes: float32 rows are stored as they are, and float64 rows
  that float32 cannot hold exactly keep their float64 bytes in the store's `exact64` table.
- SPIN final fits `.npz`: `pose` (N, 72), `betas` (N, 10), `valid` (N,) = has a fit with loss
  under the threshold; this project adds `loss` (N,) (+inf where no fit) and `cam_t` (N, 3).
- HDF5: one group per dataset under `/datasets` (attribute `name`; the group name escapes '/'),
  one HDF5 dataset per field, metadata (schema version, counters, rounds, dataset sizes) in
  attributes. Importing it restores every field, write times included.
"""

from store.interchange.common import NUM_STATIC, ExportSummary, ImportSummary, ProgressFn
from store.interchange.h5 import H5_COLUMNS, H5_FORMAT, export_h5, import_h5
from store.interchange.npy import export_spin_npy, import_spin_npy
from store.interchange.npz import export_npz, import_npz

__all__ = [
    "NUM_STATIC", "ExportSummary", "ImportSummary", "ProgressFn", "H5_COLUMNS", "H5_FORMAT",
    "export_h5", "import_h5", "export_spin_npy", "import_spin_npy", "export_npz", "import_npz",
]
