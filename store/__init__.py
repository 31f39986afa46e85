"""The fits dictionary: best-so-far SMPL fits per training sample in LMDB (numpy, lmdb, h5py only)."""

from store.candidates import PutResult
from store.errors import SchemaVersionError, StoreError
from store.fits_store import FitsStore
from store.schema import SCHEMA_VERSION, SOURCES, UNSCORED_LOSS

__all__ = [
    "FitsStore", "PutResult", "StoreError", "SchemaVersionError",
    "SCHEMA_VERSION", "SOURCES", "UNSCORED_LOSS",
]
