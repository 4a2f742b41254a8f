"""Turn the PATH arguments of a scan into the list of video files to screen.

A PATH is a file (kept whatever its name: the user asked for it), a folder (walked recursively,
keeping files with a video extension) or a glob pattern (`*`, `?`, `[`; `**` recurses; the files
it matches are kept when they have a video extension, the folders walked); or the same in an
object store (`s3://bucket/key.mp4`, `s3://bucket/prefix/`: screener.remote lists it). Neither
a folder nor a pattern ever yields the scan's own outputs (its report, state, log).
The order is stable: arguments in the order given, each one expanded in sorted order, and a file
reached twice is listed once. Folder walks follow symbolic links but visit each real folder once,
so a link back to a parent (a loop) cannot make the walk run forever.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
from pathlib import Path
from typing import Iterable

from .errors import InputError, NoMatch  # noqa: F401 - also imported from here
from .sources import forget_listings, is_remote, path_key

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
    ".mts", ".m2ts", ".3gp", ".ogv",
})
GLOB_CHARS = frozenset("*?[")


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _sort_key(path: str) -> tuple:
    # Compare path components, so "a/b/c.mp4" sorts with "a/b/" and not between "a/b" and "a/b0".
    return tuple(Path(path).parts)


def walk_folder(folder: str) -> list[str]:
    """Video files under `folder`, recursively, sorted. Hidden files and folders are skipped
    (macOS `._x.mp4` companions, editors' and copy tools' temporary files)."""
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(err: OSError) -> None:
        log.warning("cannot list %s: %s", err.filename, err.strerror or err)

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=on_error):
        try:
            st = os.stat(root)
        except OSError as e:
            log.warning("cannot read folder %s: %s", root, e.strerror or e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second link to it
            log.info("skipping %s: folder already visited (symbolic link)", root)
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in files
                     if not f.startswith(".") and is_video_name(f))
    return sorted(found, key=_sort_key)


def _expand(arg: str, outputs: set[str]) -> list[str]:
    if is_remote(arg):
        from . import remote
        return remote.expand(arg, is_video_name)
    if os.path.isdir(arg):
        return [p for p in walk_folder(arg) if os.path.realpath(p) not in outputs]
    try:  # a file, a broken link, a link loop, or one in a folder we may not search: it is
        os.lstat(arg)  # a row whose error says why, like any file that cannot be read
        return [arg]
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
            return [arg]
    if GLOB_CHARS & set(arg):
        out: list[str] = []
        matches = sorted(glob.glob(arg, recursive=True), key=_sort_key)
        for match in matches:
            # A pattern names videos: never the scan's own report, state or log beside them.
            out.extend(walk_folder(match) if os.path.isdir(match) else
                       [match] if is_video_name(match) else [])
        out = [p for p in out if os.path.realpath(p) not in outputs]
        if not out:
            raise NoMatch(f"no {'video' if matches else 'file'} matches {arg!r}")
        return out
    raise InputError(f"no such file or folder: {arg!r}")


def _is_folder(arg: str) -> bool:
    if is_remote(arg):
        from . import remote
        return remote.names_folder(arg)  # its bucket exists: _expand said so
    return os.path.isdir(arg)


def find_videos(paths: Iterable[str | os.PathLike] | str | os.PathLike,
                allow_empty: bool = False, outputs: Iterable = ()) -> list[str]:
    """Expand PATH arguments into video file paths (as strings, relative where given relative).
    `outputs` (the scan's own files) are never found in a folder or by a pattern.

    Raises InputError naming every argument that does not exist, or when nothing is found;
    with `allow_empty`, folders that exist but hold no video give an empty list (an empty drop
    folder is normal for a scheduled incremental scan: its report empties). A glob pattern
    that matches nothing is a warning when other arguments found videos (`clips/ '*.mov'` on
    a folder without .mov files). Raises StoreError when an object store cannot be listed (no
    such bucket, access denied, unreachable).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    seen: set[bytes] = set()
    missing: list[str] = []
    unmatched: list[str] = []  # globs that matched nothing
    args = [os.fspath(p) for p in paths]
    if not args:
        raise InputError("no PATH given")
    forget_listings()  # a run's snapshot of an object store starts with its listing
    own = {os.path.realpath(o) for o in map(os.fspath, filter(None, outputs))
           if o != "-" and not is_remote(o)}
    for arg in args:
        try:
            expanded = _expand(arg, own)
        except NoMatch as e:
            unmatched.append(str(e))
            continue
        except InputError as e:
            missing.append(str(e))
            continue
        for p in expanded:
            key = path_key(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    if missing:
        raise InputError("; ".join(missing + unmatched))
    if len(unmatched) == len(args):
        raise InputError("; ".join(unmatched))
    if not out and not (allow_empty and all(map(_is_folder, args))):
        raise InputError(f"no video found in {', '.join(repr(a) for a in args)} "
                         f"(looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    for message in unmatched:
        log.warning("%s; scanning the other PATHs", message)
    return out



def listed(paths, discover: bool = True, allow_empty: bool = False, outputs=()) -> list[str]:
    """The videos of a scan: `find_videos(paths)`, or with `discover=False` the paths themselves
    (the exact list of files, as find_videos returned it)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return (find_videos(paths, allow_empty, outputs) if discover
            else [os.fspath(p) for p in paths])
