"""Outputs never overwrite inputs, nor one another.

A run's outputs (report, frames, visual report, state and its side files, log file, an
extract's dataset files and contact sheet) are compared with its inputs (the videos, the model
file and its card, a labels file) and with each other by file identity: device and inode,
symbolic links followed, so a hard link or a symlink to a video is that video. An output that
does not exist yet is compared by its resolved path. `check_outputs` runs before anything is
read or written; the CLI makes a conflict a usage error.

An output that exists and is neither a regular file nor a folder (/dev/null, a pipe, a
terminal) is written as a stream: nothing in it can be overwritten, so it is not compared.
Outputs are local files: an object URL (`s3://...`) is refused here, videos are read from a
store but nothing is written to one yet.
"""
from __future__ import annotations

import os
import stat
from typing import Iterable

from .errors import OutputConflict
from .sources import is_remote

Named = tuple[str, "str | os.PathLike | None"]   # (its role, e.g. "the report", its path)


def _identity(path: str):
    """What makes two paths the same file: ("file", dev, inode) for an existing file or
    folder, ("path", resolved path) for one to be created, None for a stream."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("path", os.path.realpath(path))
    except OSError:  # unreadable, a link loop: writing it fails on its own, clearly
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None
    return ("file", st.st_dev, st.st_ino)


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named]) -> None:
    """Raise OutputConflict when an output is the same file as an input or as another
    output, or is an object URL. `outputs` and `inputs`: (what, path) pairs; None and "-"
    (standard output) are skipped. Inputs are only looked at (one stat each) when an output
    already exists."""
    seen: dict[tuple, tuple[str, str]] = {}
    for what, path in outputs:
        if path is None or os.fspath(path) == "-":
            continue
        path = os.fspath(path)
        if is_remote(path):
            raise OutputConflict("{0}: outputs are local files (videos can be read from "
                                 "object storage, but nothing is written there)", (what, path))
        key = _identity(path)
        if key is None:
            continue
        if key in seen:
            other, other_path = seen[key]
            raise OutputConflict("{0} and {1} are the same file: each output needs its own",
                                 (what, path), (other, other_path))
        seen[key] = (what, path)
    existing = {key[1:]: named for key, named in seen.items() if key[0] == "file"}
    if not existing:
        return  # an input exists: a file still to be created cannot be one
    for what, path in inputs:
        if path is None:
            continue
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        hit = existing.get((st.st_dev, st.st_ino))
        if hit is not None:
            out, out_path = hit
            raise OutputConflict("{0} is the same file as {1}: refusing to overwrite it",
                                 (out, out_path), (what, path))
