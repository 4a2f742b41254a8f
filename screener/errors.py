"""One error type per kind of failure. The library raises these; only the CLI prints them.

Messages are in neutral words: they name a file by its role ("the report", "the state") and an
option by its field or role ("workers", "the rescan option"), never by a command-line flag. The
CLI maps each type to one exit code and, where an error names files or options
(`ScreenerError.named`), words them as its flags (`cli/exits.FLAGS`).
"""
import os
import re


class ScreenerError(Exception):
    """Base class: every error screener raises on purpose. A message that names files or
    options is a `template` with {0}, {1} where the items of `named` stand, each a (role,
    value) pair: a role in neutral words ("the report", "the rescan option"; None: the value
    alone) and its value (a path, an option's value; None: the role alone). `worded(words)`
    says each role as `words` names it (the CLI: its flags), str() in the roles' own words."""

    def __init__(self, template: str = "", *named: tuple[str | None, object]):
        self.template, self.named = template, named
        super().__init__(*((self.worded() if named else template,) if template or named else ()))

    def worded(self, words: dict[str, str] | None = None) -> str:
        if not self.named:
            return str(self)
        def one(m):
            role, value = self.named[int(m.group(1))]
            said = None if role is None else (words or {}).get(role, role)
            value = None if value is None else (os.fspath(value) if isinstance(
                value, os.PathLike) else str(value))
            return " ".join(part for part in (said, value) if part is not None)
        return re.sub(r"\{(\d)\}", one, self.template)


class InputError(ScreenerError):
    """The PATH arguments name nothing to scan: a missing path, or no video found."""


class BadReport(InputError, ValueError):
    """A file given as a report is not one screener wrote (or cannot be read as one)."""


class NoMatch(InputError):
    """A glob pattern matches nothing: a warning when the other PATHs found videos."""


class VideoError(ScreenerError):
    """A video file cannot be opened or decoded. The message is the one-line reason."""


class ImageError(ScreenerError):
    """An image file cannot be read."""


class ModelError(ScreenerError):
    """A model file cannot be loaded (missing, corrupt, unsafe or of an unknown kind)."""


class UnknownModel(ScreenerError, ValueError):
    """A model named by a name that is neither a file nor a shipped model's (the message names
    the shipped ones): a usage error, not a model that failed to load."""


class StateError(ScreenerError):
    """The incremental-scan state database is unusable (corrupt, or from another version)."""


class StateLocked(StateError):
    """Another scan holds the lock on the same state database."""


class EngineUnavailable(ScreenerError):
    """An engine's optional dependency is not installed (the message says how to install it)."""


class OutputConflict(ScreenerError):
    """An output would overwrite an input or another output (a usage error, found before
    anything is read or written); the files it is about are its `named` (role, path) pairs."""


class StoreError(ScreenerError):
    """An object store cannot be listed: no such bucket, access denied, an endpoint that
    cannot be reached, or the package for its scheme is not installed (the message says how
    to install it). Found before any video is read; the CLI's exit 2."""
