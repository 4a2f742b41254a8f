"""Native libraries' own logging, kept off the terminal: screener says what matters itself.

TensorFlow, absl, oneDNN, XNNPACK, mediapipe and FFmpeg write from C++ straight to file
descriptor 2, past Python's sys.stderr. Some listen to environment variables read when they
load (`configure`, run by `import screener` before any of them loads). TensorFlow's import
does not: absl logs "All log messages before absl::InitializeLog() ..." and oneDNN's notice
whatever TF_CPP_MIN_LOG_LEVEL says (measured with TensorFlow 2.21). So its first import runs
with descriptor 2 on /dev/null (`quiet_tensorflow_import`, an import hook: every path that
loads TensorFlow, through Keras or not, in screener or in training, goes through it), and so do
the calls that log on their own (`silenced`: the LiteRT conversion, interpreters, detectors).
TensorFlow's CUDA build also logs an error when it probes for a GPU on a machine without one;
where no GPU can be (screener.device.maybe_accelerator) that probe runs within the import.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys

# Read by each library when it loads; a value the user set wins.
ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",         # TensorFlow's C++ logging: errors only
    "GLOG_minloglevel": "2",             # mediapipe's
    "OPENCV_LOG_LEVEL": "OFF",           # OpenCV's own lines per unreadable file: we report those
    "OPENCV_FFMPEG_LOGLEVEL": "-8",      # FFmpeg inside OpenCV: quiet
}


def configure() -> None:
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    quiet_tensorflow_import()


_NULL: int | None = None  # a descriptor of /dev/null (a forked child inherits it)


def _null() -> int:
    """/dev/null, opened once: detectors are silenced on every call (screener.detect), so
    opening it each time would be work on the hot path."""
    global _NULL
    if _NULL is None:
        _NULL = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return _NULL


@contextlib.contextmanager
def silenced(*fds: int):
    """File descriptors (2: stderr, 1: stdout) to /dev/null for a moment: C++ logging bypasses
    Python, and stdout may be the report (`--out -`), so the converter's prints must not reach
    it. Python's sys.stdout is captured too when 1 is silenced. Nothing is flushed here: what
    Python holds in its buffers goes out later, to the real descriptors (and a flush into a pipe
    whose reader has gone would fail here instead of where the scan handles it)."""
    fds = fds or (2,)
    try:
        saved = [os.dup(fd) for fd in fds]
    except OSError:  # no such descriptor (a daemon without stderr): nothing to silence
        yield
        return
    try:
        for fd in fds:
            os.dup2(_null(), fd)
        with (contextlib.redirect_stdout(io.StringIO()) if 1 in fds else contextlib.nullcontext()):
            yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)


class _QuietImport:
    """Meta path finder: the first import of TensorFlow runs silenced. It steps aside at once
    (one lookup, then out of sys.meta_path), so it costs nothing afterwards."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load = loader.exec_module

        def exec_module(module):
            with silenced(2):
                load(module)
                from .device import maybe_accelerator
                if not maybe_accelerator():
                    # No GPU can be here, and TensorFlow's CUDA probe would say so in an error
                    # line ("failed call to cuInit") at its first use: probe now, silenced.
                    module.config.list_physical_devices("GPU")
        loader.exec_module = exec_module  # this spec's own loader object
        return spec


def quiet_tensorflow_import() -> None:
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())
