"""Where a video lives: a local file, or an object in a store (`s3://bucket/key`).

A path is a string everywhere else in screener; this module is the one place that tells a
local path from an object URL (`is_remote`) and answers, for either, what the rest asks:

- `stat`: its size and modification time (what an incremental scan compares first, and
  again once the file is scanned: `fresh`, to see whether it changed meanwhile);
- `fingerprint`: what says its content is the same (a file: its size and the SHA-256 of its
  first and last MiB; an object: its size, ETag and version, from the listing: nothing read);
- `readable`: something to open: the file itself, or a temporary local copy of the object,
  made where the video is read (a worker process, a Ray task) and removed after it;
- `path_key` and `resolved`: its names in a state and in a dataset;
- `forget_listings`: the end of a run's snapshot of the store.

Objects go through `screener.remote` (fsspec; the `s3` extra).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import stat as stat_mod
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from . import files

log = logging.getLogger(__name__)

FINGERPRINT_CHUNK = 1 << 20  # first and last MiB
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def scheme(path) -> str | None:
    """The URL scheme of `path` ("s3"), None for a local path (`file://` is one too)."""
    m = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    name = m.group(1).lower() if m else None
    return None if name in (None, "file") else name


def is_remote(path) -> bool:
    return scheme(path) is not None


@dataclass(frozen=True)
class FileStat:
    """What a video's metadata says. For an object: its size, LastModified (whole seconds, as
    both a listing and a HEAD give it) as mtime and ctime, and as its inode a number made from
    its ETag and version id, which name the stored object as an inode names a file: a new
    object with the same size and second still differs, and its fingerprint decides."""
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, path: str) -> "FileStat | None":
        """A local file's. None when the path is gone or is not a regular file (a pipe, a
        device: never opened here, where a read could block; the engine says why it is not
        a video)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @property
    def changed_ns(self) -> int:
        return max(self.mtime_ns, self.ctime_ns)


def stat(path: str, fresh: bool = False) -> FileStat | None:
    """The metadata of a file, or of an object (from this run's listing when it listed it,
    else, and with `fresh`, asked of the store); None when it is gone or unreadable (the
    engine says why)."""
    if is_remote(path):
        from . import remote
        known = remote.stat(path, fresh)
        return None if known is None else FileStat(known[0], known[1], known[1], known[2])
    return FileStat.of(path)


def fingerprint(path: str, size: int, timeout_s: float | None = None) -> str:
    """What identifies the content: "" when it cannot be known. A local file: its size plus
    SHA-256 of its first and last MiB, cheap and enough to tell a replaced file from one whose
    metadata alone changed; with `timeout_s`, a read that takes longer is given up (a hung
    network mount must not hold the run, and its lock, for ever: the read is left behind in a
    daemon thread). An object: its size, ETag and version id, as the store lists them."""
    if is_remote(path):
        from . import remote
        return remote.fingerprint(path)
    if timeout_s is None:
        return _fingerprint(path, size)
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(_fingerprint(path, size)),
                              name="screener-fingerprint", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not done:
        log.warning("%s: reading it took longer than the %g s limit (--video-timeout)",
                    path, timeout_s)
        return ""
    return done[0]


def _fingerprint(path: str, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    try:
        fd = files.open_regular(path)
    except OSError:  # NotRegular too
        return ""
    try:
        with open(fd, "rb") as f:
            h.update(f.read(FINGERPRINT_CHUNK))
            if size > FINGERPRINT_CHUNK:
                f.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
                h.update(f.read(FINGERPRINT_CHUNK))
    except OSError:
        return ""
    return f"{size}:{h.hexdigest()[:32]}"


@contextmanager
def readable(path: str) -> Iterator[str]:
    """A local file to open for `path`: the path itself, or a temporary copy of the object,
    deleted when the block ends. Raises VideoError when the object cannot be copied."""
    if not is_remote(path):
        yield path
        return
    from . import remote
    with remote.local_copy(path) as local:
        yield local


def forget_listings() -> None:
    """Drop what listings of object stores said: a new run lists again, and once a run has
    planned, later questions go to the store (a HEAD), never to an old listing."""
    remote = sys.modules.get(f"{__package__}.remote")
    if remote is not None:
        remote.forget_listings()


def path_key(path: str) -> bytes:
    """A state's key for a path: absolute (cron runs from anywhere), links not resolved; an
    object's URL as it is."""
    if is_remote(path):
        return os.fsencode(path)
    return os.fsencode(os.path.normpath(os.path.abspath(path)))


def resolved(path, base=None) -> str:
    """One name per video: a local path made absolute (relative to `base` when given) with
    links resolved, so a file and a link to it are one; an object's URL as it is."""
    path = os.fspath(path)
    if is_remote(path):
        return path
    return os.path.realpath(os.path.join(base, path) if base is not None else path)
