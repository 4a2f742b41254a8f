"""Local room for temporary copies of objects (screener.remote), bounded and never left behind.

Each process that reads objects gets its own folder under `<TMPDIR>/screener-objects-<uid>/`
and holds an exclusive lock on a file in it (`files.FileLock`) for as long as it lives; the
kernel releases that lock however the process ends. `sweep` removes the folders whose lock is
free: what a killed scan left (SIGKILL, the OOM killer, a power cut). It runs when a scan lists
objects and when a process makes its folder; a folder is made under a hidden name and locked
before it gets its real one, so a sweep never takes a live process's folder for a dead one.
A normal exit removes the process's folder (atexit). Nothing here follows a symbolic link:
`<TMPDIR>/screener-objects-<uid>` must be a private folder of this user's (another user may
make the name first, as a link to a folder of ours), else nothing is swept or copied there.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .files import FileLock, LockHeld, private_folder

log = logging.getLogger(__name__)

def root() -> Path:
    """Where the temporary copies go: a folder of this user's in the temporary folder
    (TMPDIR), with one locked folder per process that reads objects."""
    return Path(tempfile.gettempdir()) / f"screener-objects-{os.getuid()}"


_scratch: tuple[int, str, FileLock] | None = None   # (pid, folder, its lock)


def folder() -> str:
    """This process's scratch folder, made (and its lock taken) on first use."""
    global _scratch
    if _scratch is not None and _scratch[0] == os.getpid():
        return _scratch[1]
    top = root()
    private_folder(top)  # never a link or another user's folder (see files.private_folder)
    sweep()
    new = tempfile.mkdtemp(prefix=".new-", dir=top)
    lock = FileLock(os.path.join(new, ".lock"))
    mine = os.path.join(top, f"{os.getpid()}-{os.path.basename(new)[5:]}")
    os.rename(new, mine)
    _scratch = (os.getpid(), mine, lock)
    atexit.register(_remove)
    return mine


def _remove() -> None:
    global _scratch
    if _scratch is not None and _scratch[0] == os.getpid():
        shutil.rmtree(_scratch[1], ignore_errors=True)
        _scratch[2].close()
        _scratch = None


STALE_NEW_S = 3600  # a folder still hidden after this long was left by a kill mid-make


def sweep() -> int:
    """Remove the scratch folders of processes that have ended (their lock is free): what a
    killed scan left. Returns how many were removed."""
    top = root()
    try:
        private_folder(top, make=False)
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return 0
    except OSError as e:
        log.warning("not removing temporary copies in %s: %s", top, e.strerror or e)
        return 0
    removed = 0
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or \
                    entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if entry.name.startswith("."):
            try:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_NEW_S
            except OSError:
                continue
            if stale:
                shutil.rmtree(entry.path, ignore_errors=True)
            continue
        try:
            lock = FileLock(os.path.join(entry.path, ".lock"))
        except (LockHeld, OSError):
            continue  # its process is alive (or the folder is going away)
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
        finally:
            lock.close()
    if removed:
        log.info("removed %d temporary folder(s) left by an interrupted scan in %s",
                 removed, top)
    return removed
