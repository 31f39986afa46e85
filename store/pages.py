"""Reading an LMDB data file's own structure in Python, with every offset bounds-checked.

liblmdb trusts the file it maps: a `data.mdb` shorter than its metadata says gives SIGBUS, and
damaged pages give assertion aborts or `MDB_CORRUPTED` deep inside a transaction. This module
never hands the file to liblmdb. `read_meta` checks the two meta pages and the file length
before anything maps the file; `walk` follows the committed B-trees (the main table and every
named sub-database) page by page and reports what it cannot follow instead of failing; `scan_leaves`
reads every leaf page of the file, reachable or not, for salvage.

Layout (LMDB 0.9 data version 1, 64-bit, native byte order; `lmdb.version()` is 0.9.x here): a
page starts with a 16-byte header `pgno u64, pad u16, flags u16, lower u16, upper u16` (an
overflow page has `pages u32` in place of lower/upper), then `(lower - 16) / 2` u16 node offsets.
A node is `lo u16, hi u16, flags u16, ksize u16, key, data`; a leaf's data size is `lo | hi << 16`,
a branch's child page is `lo | hi << 16 | flags << 32`. Pages 0 and 1 are meta pages; the one
with the higher transaction id is committed.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
HEADER = 16
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
MAX_DEPTH = 32
# pad (the page size, in the free DB), flags, depth, branch, leaf and overflow pages, entries, root
_DB = struct.Struct("=IHHQQQQQ")
_META = struct.Struct("=IIQQ")  # magic, version, address, mapsize
_PAGE_HEADER = struct.Struct("=QxxHHH")  # pgno, (pad), flags, lower, upper
_NONE = (1 << 64) - 1


class DamagedFile(Exception):
    """The data file cannot be read as an LMDB environment at all (bad meta pages, too short)."""


@dataclass(frozen=True)
class Meta:
    page_size: int
    last_page: int  # highest page number in use
    txnid: int
    map_size: int
    main_root: int  # P_INVALID (2**64 - 1) when the main table is empty
    file_size: int

    @property
    def needed_bytes(self) -> int:
        """The file must hold every page up to last_page."""
        return (self.last_page + 1) * self.page_size


def _parse_meta(buffer: bytes, offset: int) -> tuple[int, int, int, int, int] | None:
    """(page size, last page, txnid, map size, main root) of the meta page at `offset`, None if bad."""
    if len(buffer) < offset + HEADER + _META.size + 2 * _DB.size + 16:
        return None
    flags = struct.unpack_from("=H", buffer, offset + 10)[0]
    magic, version, _, map_size = _META.unpack_from(buffer, offset + HEADER)
    if not flags & P_META or magic != MAGIC or version != DATA_VERSION:
        return None
    free = _DB.unpack_from(buffer, offset + HEADER + _META.size)
    main = _DB.unpack_from(buffer, offset + HEADER + _META.size + _DB.size)
    last, txnid = struct.unpack_from("=QQ", buffer, offset + HEADER + _META.size + 2 * _DB.size)
    return free[0], last, txnid, map_size, main[7]


def read_meta(path: str | os.PathLike, complete: bool = True) -> Meta:
    """The committed meta page of `path/data.mdb`; DamagedFile says in words what is wrong.

    Checks the magic number, the data version, a power-of-two page size and that the file holds
    every page up to the last page in use (a shorter file is what makes liblmdb die of SIGBUS).
    `complete=False` accepts a short file and describes only its whole pages (for salvage).
    """
    data = Path(path) / "data.mdb"
    size = data.stat().st_size
    if size == 0:
        raise DamagedFile(f"{data} is empty (0 bytes)")
    with open(data, "rb") as handle:
        first = handle.read(min(size, 65536))
    candidates = []
    zero = _parse_meta(first, 0)
    if zero is not None:
        candidates.append(zero)
    page_size = zero[0] if zero is not None else 4096
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise DamagedFile(f"{data} names page size {page_size}, which LMDB never writes")
    with open(data, "rb") as handle:
        handle.seek(page_size)
        one = _parse_meta(handle.read(page_size), 0)
    if one is not None and one[0] == page_size:
        candidates.append(one)
    if not candidates:
        raise DamagedFile(f"{data} has no valid LMDB meta page (damaged header or not an LMDB file)")
    page_size, last, txnid, map_size, root = max(candidates, key=lambda meta: meta[2])
    meta = Meta(page_size, last, txnid, map_size, root, size)
    if size < meta.needed_bytes and not complete:
        return Meta(page_size, size // page_size - 1, txnid, map_size, root, size)
    if size < meta.needed_bytes:
        raise DamagedFile(
            f"{data} is truncated: {size} bytes, but its metadata uses {meta.needed_bytes} "
            f"({last + 1} pages of {page_size} bytes)"
        )
    return meta


@dataclass
class Walk:
    """What `walk` found: problems in words, and per named table its leaf items when collected."""

    meta: Meta | None = None
    problems: list[str] = field(default_factory=list)
    tables: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    leaves: dict[bytes, list[int]] = field(default_factory=dict)  # sound leaf pages per table
    pages: int = 0


class _File:
    """Bounded page access to a checked data file (its size was compared with the metadata)."""

    def __init__(self, handle, meta: Meta) -> None:
        self.meta = meta
        self.map = mmap.mmap(handle.fileno(), meta.needed_bytes, access=mmap.ACCESS_READ)

    def page(self, pgno: int) -> bytes | None:
        if not 2 <= pgno <= self.meta.last_page:
            return None
        start = pgno * self.meta.page_size
        return self.map[start : start + self.meta.page_size]

    def header(self, pgno: int) -> tuple[int, int, int, int] | None:
        """(stored page number, flags, lower, upper) read in place, or None out of range."""
        if not 2 <= pgno <= self.meta.last_page:
            return None
        return _PAGE_HEADER.unpack_from(self.map, pgno * self.meta.page_size)

    def nodes(self, page: bytes) -> Iterator[tuple[int, int, int, bytes, int]] | None:
        """(offset, lo|hi, flags, key, data offset) of each node, or None if the header is bad."""
        lower, upper = struct.unpack_from("=HH", page, 12)
        size = len(page)
        if lower < HEADER or lower > upper or upper > size or (lower - HEADER) % 2:
            return None
        count = (lower - HEADER) // 2
        offsets = struct.unpack_from(f"={count}H", page, HEADER)
        found = []
        for offset in offsets:
            if offset < upper or offset + 8 > size:
                return None
            lo, hi, flags, ksize = struct.unpack_from("=HHHH", page, offset)
            if offset + 8 + ksize > size:
                return None
            found.append((offset, lo | hi << 16, flags, bytes(page[offset + 8 : offset + 8 + ksize]),
                          offset + 8 + ksize))
        return iter(found)

    def value(self, page: bytes, flags: int, size: int, at: int) -> bytes | None:
        if flags & F_BIGDATA:
            if at + 8 > len(page):
                return None
            first = struct.unpack_from("=Q", page, at)[0]
            pages = -(-(HEADER + size) // self.meta.page_size)
            if first < 2 or first + pages - 1 > self.meta.last_page:
                return None
            start = first * self.meta.page_size
            header_flags = struct.unpack_from("=H", self.map, start + 10)[0]
            if not header_flags & P_OVERFLOW or struct.unpack_from("=Q", self.map, start)[0] != first:
                return None
            return bytes(self.map[start + HEADER : start + HEADER + size])
        if at + size > len(page):
            return None
        return bytes(page[at : at + size])


def walk(path: str | os.PathLike, collect: bool = False, complete: bool = True) -> Walk:
    """Follow the committed B-trees of `path`; never raises for damage, it reports it.

    `collect=True` keeps every readable leaf item of every named table in `Walk.tables`;
    `complete=False` walks what a truncated file still holds (for salvage).
    """
    result = Walk()
    try:
        result.meta = read_meta(path, complete=complete)
    except (DamagedFile, OSError) as error:
        result.problems.append(str(error))
        return result
    with open(Path(path) / "data.mdb", "rb") as handle:
        reader = _File(handle, result.meta)
        try:
            subtables: dict[bytes, int] = {}
            main: list[tuple[bytes, bytes]] = []
            _walk_tree(reader, result.meta.main_root, b"(main)", main, result, subtables)
            for name, root in subtables.items():
                items: list[tuple[bytes, bytes]] = []
                _walk_tree(reader, root, name, items if collect else None, result, None)
                if collect:
                    result.tables[name] = items
        finally:
            reader.map.close()
    return result


def _walk_tree(
    reader: _File,
    root: int,
    name: bytes,
    items: list[tuple[bytes, bytes]] | None,
    result: Walk,
    subtables: dict[bytes, int] | None,
) -> None:
    label = name.decode(errors="replace")
    if root == _NONE:
        return
    stack = [(root, 0)]
    seen: set[int] = set()
    header_only = items is None and subtables is None  # a structure check: records check themselves
    while stack:
        pgno, depth = stack.pop()
        header = reader.header(pgno)
        if header is None or pgno in seen or depth > MAX_DEPTH:
            result.problems.append(f"table {label}: page {pgno} is out of range or reached twice")
            continue
        seen.add(pgno)
        result.pages += 1
        stored, flags, lower, upper = header
        kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2)
        sound = stored == pgno and kind in (P_BRANCH, P_LEAF)
        sound = sound and HEADER <= lower <= upper <= reader.meta.page_size and not (lower - HEADER) % 2
        if sound and kind == P_LEAF:
            result.leaves.setdefault(name, []).append(pgno)
        if sound and kind == P_LEAF and header_only:
            continue
        page = reader.page(pgno) if sound else None
        nodes = reader.nodes(page) if page is not None else None
        if nodes is None:
            result.problems.append(
                f"table {label}: page {pgno} is damaged (header says page {stored}, flags {flags:#x})"
            )
            continue
        for _, size, node_flags, key, at in nodes:
            if kind == P_BRANCH:
                stack.append((size | node_flags << 32, depth + 1))
                continue
            if subtables is not None and node_flags & F_SUBDATA:
                if size == _DB.size and at + size <= len(page):
                    subtables[key] = _DB.unpack_from(page, at)[7]
                else:
                    result.problems.append(f"table {label}: the entry of table {key!r} is damaged")
                continue
            if items is not None:
                value = reader.value(page, node_flags, size, at)
                if value is None:
                    result.problems.append(f"table {label}: a value on page {pgno} points outside the file")
                else:
                    items.append((key, value))


def scan_leaves(path: str | os.PathLike, key_size: int, value_size: int) -> Iterator[tuple[bytes, bytes]]:
    """Every inline leaf item with exactly these key and value sizes, on any page of the file.

    Reads unreachable (freed or orphaned) pages too, so it finds records whose branch page is
    lost; the caller must tell current items from stale ones (the fits store keeps the lowest loss).
    """
    meta = read_meta(path, complete=False)
    with open(Path(path) / "data.mdb", "rb") as handle:
        reader = _File(handle, meta)
        try:
            for pgno in range(2, meta.last_page + 1):
                page = reader.page(pgno)
                if page is None or struct.unpack_from("=H", page, 10)[0] & (P_LEAF | P_LEAF2) != P_LEAF:
                    continue
                nodes = reader.nodes(page)
                for _, size, flags, key, at in nodes or ():
                    if len(key) == key_size and size == value_size and not flags and at + size <= len(page):
                        yield key, bytes(page[at : at + size])
        finally:
            reader.map.close()
