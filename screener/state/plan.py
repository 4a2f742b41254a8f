"""What an incremental run does with each file: scan it, reuse its stored row, or defer it.

`plan` is a pure decision: it reads the files' metadata (and, where that is not enough, their
fingerprints) and what the state holds, and returns a `Plan`; it writes nothing. What the state
must remember from it (files whose metadata alone changed, files seen still changing) travels in
the plan, and the run stores it (`ScanState.keep_plan`).

A file is "unchanged" when its size and mtime match the stored ones and so do its inode and
ctime; when only inode or ctime differ (moved over, `cp -p`, `rsync -t`, chmod), the content
fingerprint (size + SHA-256 of the first and last MiB) decides. The fast path reads no file
data, so an unchanged rerun over thousands of videos costs one stat() each. An object in a
store (screener.sources) is described by the run's listing: size and LastModified as its
metadata, size, ETag and version id as its fingerprint; nothing is read. Rows are never
reused across paths by fingerprint alone: a crafted file could share a real video's first and
last MiB, and a screening tool must not be fooled that way.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from ..sources import FileStat, fingerprint, path_key, stat
from ..verdict import ERROR, VideoResult

log = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 30.0


@dataclass
class Stored:
    """A file's row in the state."""
    stat: FileStat
    fingerprint: str
    model_id: str
    options: str
    result: VideoResult


@dataclass
class PlannedFile:
    key: bytes
    stat: FileStat | None   # taken before the file is read: a later change shows next run
    fingerprint: str


@dataclass
class Plan:
    scan: list[str] = field(default_factory=list)           # paths to run through the engine
    reuse: dict[str, VideoResult] = field(default_factory=dict)  # path -> stored result
    deferred: list[str] = field(default_factory=list)       # still being written
    missing: list[VideoResult] = field(default_factory=list)  # stored results kept as missing
    dropped: list[bytes] = field(default_factory=list)      # stored keys to forget
    order: list[str] = field(default_factory=list)          # report order of current files
    files: dict[str, PlannedFile] = field(default_factory=dict)
    # For the state to remember: same content, new metadata (the fast path matches next time),
    # and the files seen still changing, with when each was first seen so.
    restat: list[tuple[bytes, FileStat]] = field(default_factory=list)
    pending: list[tuple[bytes, FileStat, float]] = field(default_factory=list)


def plan_files(paths: Sequence[str], stored: dict[bytes, Stored],
         pending: dict[bytes, tuple[FileStat, float]], *, model_id: str, options: str,
         settle_s: float = DEFAULT_SETTLE_S, rescan: bool = False, keep_missing: bool = False,
         fresh: bool = False, now: float | None = None,
         read_timeout_s: float | None = None) -> Plan:
    """Decide, per input path, to scan, reuse or defer it; and what happens to stored files
    that are no longer among the inputs. `stored` and `pending` are the state's (ScanState);
    `fresh`: the state was just made (it scans all it finds, like a one-off scan).
    `read_timeout_s` bounds each file read (a fingerprint; see `fingerprint`)."""
    now = time.time() if now is None else now
    out = Plan()
    seen: set[bytes] = set()
    for path in paths:
        key = path_key(path)
        if key in seen:
            continue
        seen.add(key)
        st = stat(path)
        old = stored.get(key)
        if st is None:  # gone, a broken link, a loop, a pipe: the engine says why, every run
            out.scan.append(path)
            out.files[path] = PlannedFile(key, None, "")
            continue
        fp = None
        # Unchanged: reuse whatever the file's age (a stored row was taken when it settled).
        if old is not None and not rescan and old.stat.size == st.size \
                and old.stat.mtime_ns == st.mtime_ns:
            same_model = old.model_id == model_id and old.options == options
            if old.stat == st and same_model:
                out.reuse[path] = old.result
                continue
            fp = fingerprint(path, st.size, read_timeout_s)
            # A stored error (say, permission denied) is retried whenever the metadata changes.
            if same_model and fp and fp == old.fingerprint and old.result.status != ERROR:
                out.restat.append((key, st))
                out.reuse[path] = old.result
                continue
        # Settling is for files being written: new, or with another size or mtime than the
        # stored one. A new state scans all it finds, like a one-off scan; a file caught
        # half-written then changes, and is scanned again by the next run.
        growing = old is None or (old.stat.size, old.stat.mtime_ns) != (st.size, st.mtime_ns)
        if settle_s > 0 and growing and not fresh \
                and not _settled(key, st, pending, now, settle_s, out.pending):
            out.deferred.append(path)
            if old is not None:  # keep its last row until the new content is scanned
                out.reuse[path] = old.result
            continue
        out.scan.append(path)
        if fp is None:
            fp = fingerprint(path, st.size, read_timeout_s)
        out.files[path] = PlannedFile(key, st, fp)
    for key, old in stored.items():
        if key in seen:
            continue
        if keep_missing:
            out.missing.append(old.result)
        else:
            out.dropped.append(key)
    out.order = [p for p in dict.fromkeys(paths) if p in out.reuse or p in out.files]
    return out


def _settled(key, st: FileStat, pending, now: float, settle_s: float, new_pending) -> bool:
    if now - st.changed_ns / 1e9 >= settle_s:
        return True
    before = pending.get(key)
    first_seen = now
    if before is not None and before[0] == FileStat(st.size, st.mtime_ns, st.ctime_ns, 0):
        first_seen = before[1]
        if now - first_seen >= settle_s:  # unchanged for settle_s by our clock: a clock skew
            return True
    new_pending.append((key, st, first_seen))
    return False
