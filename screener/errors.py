"""One error type per kind of failure. The library raises these; only the CLI prints them."""


class ScreenerError(Exception):
    """Base class: every error screener raises on purpose."""


class InputError(ScreenerError):
    """The PATH arguments name nothing to scan: a missing path, or no video found."""


class NoMatch(InputError):
    """A glob pattern matches nothing: a warning when the other PATHs found videos."""


class VideoError(ScreenerError):
    """A video file cannot be opened or decoded. The message is the one-line reason."""


class ImageError(ScreenerError):
    """An image file cannot be read."""


class ModelError(ScreenerError):
    """A model file cannot be loaded (missing, corrupt, unsafe or of an unknown kind)."""


class StateError(ScreenerError):
    """The incremental-scan state database is unusable (corrupt, or from another version)."""


class StateLocked(StateError):
    """Another scan holds the lock on the same state database."""


class EngineUnavailable(ScreenerError):
    """An engine's optional dependency is not installed (the message says how to install it)."""


class OutputConflict(ScreenerError):
    """An output would overwrite an input or another output (a usage error, found before
    anything is read or written)."""


class StoreError(ScreenerError):
    """An object store cannot be listed: no such bucket, access denied, an endpoint that
    cannot be reached, or the package for its scheme is not installed (the message says how
    to install it). Found before any video is read; the CLI's exit 2."""
