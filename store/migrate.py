"""Upgrade a fits store written with an older record schema to the current one, in place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import lmdb

from store import schema
from store.environment import META_DB, META_VERSION
from store.errors import StoreError

# from_version → function(env) rewriting the store to from_version + 1 inside one transaction.
# Version 1 is the first schema, so nothing needs migrating yet; a schema change adds its step here.
MIGRATIONS: dict[int, Callable[[lmdb.Environment], None]] = {}


def migrate_store(path: str | os.PathLike) -> str:
    """Bring the store at `path` to `schema.SCHEMA_VERSION`; returns one sentence saying what happened."""
    path = Path(path).expanduser().resolve()
    if not (path / "data.mdb").is_file():
        raise StoreError(f"no fits store at {path}; check the --store path")
    env = lmdb.open(str(path), max_dbs=4, map_size=0)
    try:
        meta = env.open_db(META_DB, create=False)
        with env.begin() as txn:
            raw = txn.get(META_VERSION, db=meta)
        if raw is None:
            raise StoreError(
                f"{path} has no schema version in its metadata; it was not written by `spin fits`"
            )
        version = start = int(raw)
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"fits store {path} has schema version {version}, newer than this program's "
                f"{schema.SCHEMA_VERSION}; upgrade the spin-loop package instead"
            )
        while version < schema.SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise StoreError(
                    f"no migration from schema version {version} exists; re-import the fits from an export"
                )
            MIGRATIONS[version](env)
            version += 1
            with env.begin(write=True) as txn:
                txn.put(META_VERSION, str(version).encode(), db=meta)
    except lmdb.NotFoundError:
        raise StoreError(
            f"{path} is an LMDB environment but not a fits store; check the --store path"
        ) from None
    finally:
        env.close()
    if start == schema.SCHEMA_VERSION:
        return f"fits store {path} is already at schema version {schema.SCHEMA_VERSION}; nothing to do"
    return f"migrated fits store {path} from schema version {start} to {schema.SCHEMA_VERSION}"
