"""Files handled safely: the atomic write, the lock and the non-blocking open, each once, here.

`atomic_write` writes a whole file so that a reader sees the old file or the new one, never
half of one (a temporary file in the same folder, fsync, rename): every report, frames file,
page, dataset file and converted model is written with it. `FileLock` is an exclusive `flock`
on a side file, taken without waiting and released by the kernel when its holder ends, however
it ends (the incremental scan's state and an extract's dataset hold one). Files written in
place (locks, a dataset's records) are opened with `open_own`, which never follows a symbolic
link; `private_folder` is the same for the temporary folder of copied objects.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

NAME_MAX = 255  # bytes in a file name, on every filesystem a report is likely to be on


def fit_name(name: str, max_bytes: int) -> str:
    """`name` cut (whole characters) to at most `max_bytes` bytes as the filesystem stores it."""
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def _temp_stem(name: str) -> str:
    # ".<stem>.<8 random>.tmp" fits NAME_MAX whatever the name: a legal 255-byte --out works.
    return fit_name(name, 200)


def is_temporary_of(path, candidate: str) -> bool:
    """Whether the file name `candidate` is one of atomic_write's temporary files for `path`
    (left behind when a run was killed while writing it)."""
    stem = re.escape(_temp_stem(Path(path).name))
    return re.fullmatch(rf"\.{stem}\.[a-z0-9_]+\.tmp", candidate) is not None


def remove_temporaries(paths) -> None:
    """Delete what atomic_write left of `paths` when a run was killed while writing them (one
    listing per folder). Call it only where no other process can be writing them."""
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if any(is_temporary_of(p, name) for p in files):
                try:
                    (folder / name).unlink()
                except OSError:
                    pass


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Named:
    """A file object whose failed writes name `path` (OSError.filename), so the caller can
    say which output could not be written; everything else is the file's own."""

    def __init__(self, f, path):
        self._f, self._path = f, os.fspath(path)

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            raise _naming(e, self._path)

    def flush(self):
        try:
            self._f.flush()
        except OSError as e:
            raise _naming(e, self._path)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _naming(e: OSError, path, tmp=None) -> OSError:
    if e.filename is None or (tmp is not None and e.filename == tmp):
        e.filename = os.fspath(path)
    return e


def is_stream(path) -> bool:
    """An existing output that is not a regular file (a device, a pipe): written as it is."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


class NotRegular(OSError):
    """What `open_regular` found instead of a regular file; `mode` is its st_mode."""

    def __init__(self, mode: int):
        super().__init__("not a regular file")
        self.mode = mode


def open_regular(path) -> int:
    """A read-only descriptor of the regular file at `path`; anything else (a named pipe, a
    socket, a device: a read may block for ever) is refused unopened, as NotRegular. The open
    is O_NONBLOCK and checked again: a file replaced by a pipe since its stat must not block."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegular(mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(mode)
    return fd


def open_own(path, flags: int, mode: int = 0o666) -> int:
    """os.open for a file of screener's own that it writes in place (a lock, a dataset's
    records): never through a symbolic link at `path` (O_NOFOLLOW: refused, not followed),
    never a pipe or a device, never a file with another name (a hard link), so what is
    written there lands in no file screener did not make. Raises OSError naming `path`."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _not_ours(path, "it is a symbolic link, which screener does not follow")
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise _not_ours(path, "it is not a regular file" if not stat.S_ISREG(st.st_mode) else
                        "it is a hard link to another file, which screener does not write")
    return fd


def private_folder(path, make: bool = True) -> None:
    """Make `path` a folder of this user's that only they can write in (mode 0700), or check
    that it is one, never following a symbolic link: in a shared temporary folder another
    user can make the name first, as a link to a folder of ours or as a folder of theirs.
    Raises OSError naming `path` when it is not ours."""
    if make:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_ours(path, "it is a symbolic link or not a folder: screener does not "
                                  "follow it; remove it or set TMPDIR") from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise _not_ours(path, "it belongs to another user; remove it or set TMPDIR")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)  # ours, made private as it was meant to be
    finally:
        os.close(fd)


def _not_ours(path, why: str) -> OSError:
    return OSError(errno.EPERM, why, os.fspath(path))


@contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = "", sync_folder: bool = True, fsync: bool = True):
    """Write `path` all at once: readers see the old file or the new one, never a part.

    Yields a file object for a temporary file in the same folder; on success it is flushed,
    fsynced and renamed over `path`, and the folder fsynced so the rename survives a power cut
    (`sync_folder=False`: the caller syncs the folder once after many files, `fsync_folder`;
    `fsync=False` too: whole against a kill, not against a power cut).
    On an exception the temporary file is removed and `path` is untouched. A failure raises
    OSError naming `path` (a full disk: errno ENOSPC). A `path` that exists and is not a
    regular file (/dev/stdout, a named pipe) cannot be replaced: it is written directly.
    """
    path = Path(path)
    kw = {} if "b" in mode else dict(encoding=encoding, newline=newline)
    folder = path.parent if str(path.parent) else Path(".")
    f = fd = tmp = None
    try:
        if is_stream(path):
            f = open(path, mode, **kw)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{_temp_stem(path.name)}.", suffix=".tmp",
                                       dir=folder)
            f = os.fdopen(fd, mode, **kw)
            os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; as a normal file
    except OSError as e:  # what failed is `path`, whatever temporary name it was made under
        _discard(f if f is not None else fd, tmp)
        e.filename = os.fspath(path)
        if e.errno == errno.ENOENT and not os.path.isdir(folder):
            e.strerror = "its folder does not exist"
        raise
    try:
        yield _Named(f, path)  # the caller's errors pass as they are (its writes name `path`)
    except BaseException:
        _discard(f, tmp)
        raise
    try:
        f.flush()
        if tmp is not None and fsync:
            os.fsync(f.fileno())
        f.close()
        if tmp is not None:
            os.replace(tmp, path)
    except BaseException as e:
        _discard(f, tmp)
        if isinstance(e, OSError):
            _naming(e, path, tmp)
        raise
    if tmp is not None and sync_folder and fsync:
        fsync_folder(folder)


def fsync_folder(folder) -> None:
    """Make the renames in `folder` durable (best effort: some filesystems cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(f, tmp) -> None:
    """After a failure: close without flushing what could not be written, drop the temporary
    file."""
    try:
        if isinstance(f, int):
            os.close(f)
        elif f is not None:
            try:
                f.close()
            except OSError:  # the buffered rest could not be written either
                pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


class LockHeld(Exception):
    """Another process holds the lock; `holder` is what it wrote there (pid and start time)."""

    def __init__(self, path, holder: str):
        super().__init__(f"{path} is held by {holder or 'an unknown process'}")
        self.path, self.holder = Path(path), holder


class FileLock:
    """An exclusive flock on `path` (created if need be), taken without waiting: raises
    LockHeld when another process has it, OSError when the file cannot be made or locked.
    The lock is a side file nobody else opens, so it cannot interfere with SQLite's own locks
    on a database beside it. The holder's pid and start time go into it, for the message of
    the next process that finds it taken. Released by close(), or by the kernel."""

    def __init__(self, path):
        self.path = Path(path)
        fd = open_own(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(self.path, holder) from e
            raise
        # Informational only (the flock is the lock): a disk too full for these few bytes
        # does not stop the run.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                      .encode(), 0)
        except OSError:
            pass
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
