"""Errors the fits store raises for mistakes a user can fix."""


class StoreError(Exception):
    """A user-fixable problem with a fits store or an interchange file.

    The message is one sentence that names the store or file and the fix; the `spin` command line
    prints it as one red line and exits with status 1.
    """


class SchemaVersionError(StoreError):
    """The store on disk was written with another record schema version."""


class DamagedStoreError(StoreError):
    """The store's file is damaged (truncated, bad pages, unreadable B-tree); nothing is written to it."""


class DiskFullError(StoreError):
    """A write could not reach the disk (full, over quota or over the file-size limit); nothing of it
    was committed, and everything committed before is kept."""
