"""Fixed-window counters in a memory-mapped file beside a SQLite database, shared by every process of the host.

A SQLite database is one host's by construction (its file is not shared between hosts), so counters every
process of that host sees are counters of the whole deployment, without a write transaction per hit. The file
holds a small header and a fixed table of slots, each the 16-byte BLAKE2b digest of a key, the end of its
window and its count. A key lives in one of PROBE consecutive slots from its digest's home slot; a new key
takes the first empty or passed slot there, or evicts the one whose window ends first, so the file never
grows and a flood of clients can only shorten the memory of the oldest windows. Every access holds a thread
lock (flock does not exclude threads sharing a descriptor) and an exclusive flock of the file (processes).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

SUFFIX = "-ratelimits"
MAGIC = b"IBRLCNT1"
VERSION = 1
SLOTS = 65_536
PROBE = 16
HEADER = struct.Struct("<8sIII")  # magic, version, slot count, slot size
HEADER_SIZE = 64
SLOT = struct.Struct("<16sdq")  # key digest, window end (epoch seconds), count
EMPTY = bytes(16)


def path_beside(database: str) -> str:
    """The counter file of a SQLite database file."""
    return os.path.abspath(database) + SUFFIX


def digest_of(key: str) -> bytes:
    """The 16 bytes a key is known by in the table (never all zeros: that marks an empty slot)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return digest if digest != EMPTY else b"\x01" + digest[1:]


class HostCounters:
    """One counter file, mapped into this process; reopened in a forked child so its flocks are its own."""

    def __init__(self, path: str, slots: int = SLOTS) -> None:
        if slots < 1:
            raise ValueError("a counter table needs at least one slot")
        self.path = path
        self.slots = slots
        self.probe = min(PROBE, slots)
        self._window = struct.Struct("<" + "16sdq" * self.probe)
        self._size = HEADER_SIZE + slots * SLOT.size
        self._lock = threading.Lock()
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._open()
        _open_tables.add(self)

    def _open(self) -> None:
        """Open (creating it owner-only) and map the file; a file of another shape is laid out afresh."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if not self._fits(fd):
                    os.ftruncate(fd, 0)  # drops every old slot: the new table starts empty
                    os.ftruncate(fd, self._size)
                    os.pwrite(fd, HEADER.pack(MAGIC, VERSION, self.slots, SLOT.size), 0)
                mapped = mmap.mmap(fd, self._size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._map = fd, mapped

    def _fits(self, fd: int) -> bool:
        if os.fstat(fd).st_size != self._size:
            return False
        header = os.pread(fd, HEADER.size, 0)
        return len(header) == HEADER.size and HEADER.unpack(header) == (MAGIC, VERSION, self.slots, SLOT.size)

    def close(self) -> None:
        with self._lock:
            if self._map is not None:
                self._map.close()
                self._map = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _after_fork(self) -> None:
        # The child shares the parent's open file description, and with it the parent's flock: it takes its own
        # descriptor (read access is enough to flock; the inherited shared mapping stays the same memory).
        # A thread lock another thread held at the fork would stay held in the child forever.
        self._lock = threading.Lock()
        if self._fd < 0:
            return
        inherited, self._fd = self._fd, -1
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass  # every access then fails (OSError) and the caller falls back
        finally:
            os.close(inherited)

    @contextmanager
    def _held(self) -> Iterator[mmap.mmap]:
        with self._lock:
            if self._map is None or self._fd < 0:
                raise OSError(f"the rate-limit counter file {self.path} is not open")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield self._map
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _home(self, digest: bytes) -> int:
        """The byte offset of the first slot of the key's probe window (windows never wrap around the end)."""
        start = int.from_bytes(digest[:8], "little") % (self.slots - self.probe + 1)
        return HEADER_SIZE + start * SLOT.size

    def _find(self, table: mmap.mmap, home: int, digest: bytes) -> tuple[int, float, int] | None:
        """The offset, window end and count of the key's slot, if it has one."""
        end = home + self.probe * SLOT.size
        at = table.find(digest, home, end)
        while at >= 0 and (at - home) % SLOT.size:  # the digest's bytes across two slots: not a slot of it
            at = table.find(digest, at + 1, end)
        if at < 0:
            return None
        _digest, window_end, count = SLOT.unpack_from(table, at)
        return at, window_end, count

    def incr(self, key: str, now: float, expiry: float, amount: int = 1) -> int:
        """Count `amount` hits on key's window (a new window of `expiry` seconds once the last one passed)."""
        digest = digest_of(key)
        home = self._home(digest)
        # The locks taken inline rather than through _held: this runs on every invitee page.
        with self._lock:
            table, fd = self._map, self._fd
            if table is None or fd < 0:
                raise OSError(f"the rate-limit counter file {self.path} is not open")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._count(table, home, digest, now, expiry, amount)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _count(self, table: mmap.mmap, home: int, digest: bytes, now: float, expiry: float, amount: int) -> int:
        """Count on the held table: the key's slot, else a free or passed one, else the one ending first."""
        found = self._find(table, home, digest)
        if found is not None:
            offset, end, count = found
            if end > now:
                SLOT.pack_into(table, offset, digest, end, count + amount)
                return int(count + amount)
            SLOT.pack_into(table, offset, digest, now + expiry, amount)
            return amount
        fields = self._window.unpack_from(table, home)
        free = earliest = -1
        earliest_end = float("inf")
        for i in range(0, len(fields), 3):
            end = fields[i + 1]
            if free < 0 and (fields[i] == EMPTY or end <= now):
                free = i
            if end < earliest_end:
                earliest, earliest_end = i, end
        slot = free if free >= 0 else earliest
        SLOT.pack_into(table, home + (slot // 3) * SLOT.size, digest, now + expiry, amount)
        return amount

    def window(self, key: str, now: float) -> tuple[int, float] | None:
        """The count and end of key's window, while it lasts."""
        digest = digest_of(key)
        with self._held() as table:
            found = self._find(table, self._home(digest), digest)
        if found is None or found[1] <= now:
            return None
        return found[2], found[1]

    def clear(self, key: str) -> None:
        """Forget key's window."""
        digest = digest_of(key)
        with self._held() as table:
            found = self._find(table, self._home(digest), digest)
            if found is not None:
                SLOT.pack_into(table, found[0], EMPTY, 0.0, 0)

    def reset(self, now: float) -> int:
        """Forget every window; how many were still open."""
        with self._held() as table:
            live = 0
            for offset in range(HEADER_SIZE, self._size, SLOT.size):
                digest, end, _count = SLOT.unpack_from(table, offset)
                live += digest != EMPTY and end > now
            table[HEADER_SIZE:self._size] = bytes(self._size - HEADER_SIZE)
            return live

    def usable(self) -> bool:
        """Whether the file can be locked and read now."""
        try:
            with self._held() as table:
                return bool(HEADER.unpack_from(table, 0)[0] == MAGIC)
        except (OSError, ValueError):
            return False


_open_tables: weakref.WeakSet[HostCounters] = weakref.WeakSet()


def _reopen_after_fork() -> None:
    for table in list(_open_tables):
        table._after_fork()


os.register_at_fork(after_in_child=_reopen_after_fork)
