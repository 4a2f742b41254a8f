"""The model on a CPU, run by LiteRT (the TensorFlow Lite runtime, package ai-edge-litert).

Why: LiteRT's XNNPACK kernels cost less CPU a face than TensorFlow with XLA, and a scan whose
model runs here never imports TensorFlow, so its main process is a fraction of the size and
starts scoring at once (docs/performance.md has the figures).

LiteRT runs a .tflite file, which TensorFlow's converter makes from the Keras network (for
MesoInception-4 its CPU twin, see fast_inception). That happens once per model file: the result
is kept in the cache folder under the model file's SHA-256 (SCREENER_CACHE_DIR, else
$XDG_CACHE_HOME/screener, else ~/.cache/screener), so only the first scan with a model loads
TensorFlow. A fresh conversion is checked against the Keras network before it is used or kept;
a cached file that LiteRT cannot load is made again. Whenever LiteRT is missing or anything
here fails, the scan runs the Keras network instead (same scores: they agree to ~1e-6).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .quiet import silenced

log = logging.getLogger(__name__)

# Part of the cached file's name: bump it when the conversion (or the twin it converts) changes.
FORMAT = "v1"
AGREE = 1e-4  # largest difference in P(fake) allowed between a conversion and its Keras network


def cache_dir() -> Path:
    if os.environ.get("SCREENER_CACHE_DIR"):
        return Path(os.environ["SCREENER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "screener"


def cached_path(model_sha256: str) -> Path:
    return cache_dir() / "lite" / f"{model_sha256}-{FORMAT}.tflite"


def available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class LiteNet:
    """A .tflite network with the one Keras method Scorer.predict uses: predict_on_batch.

    It runs crops in groups of GROUP and the rest one by one, each on an interpreter made for
    that size: no padding, and no resizing as batch sizes change. Batch size barely matters to
    LiteRT's speed, and small groups keep memory low (docs/performance.md)."""

    GROUP = 4

    def __init__(self, content: bytes, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter
        self._runners = {}
        for size in (self.GROUP, 1):
            with silenced(2):  # its C++ runtime announces "Created ... XNNPACK delegate"
                it = Interpreter(model_content=content, num_threads=threads or os.cpu_count() or 1)
                inp = it.get_input_details()[0]["index"]
                it.resize_tensor_input(inp, (size, 256, 256, 3))
                it.allocate_tensors()
            self._runners[size] = (it, inp, it.get_output_details()[0]["index"])

    def _run(self, x: np.ndarray) -> np.ndarray:
        it, inp, out = self._runners[len(x)]
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out).reshape(-1).copy()

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.uint8)
        whole = len(x) - len(x) % self.GROUP
        parts = [self._run(x[i:i + self.GROUP]) for i in range(0, whole, self.GROUP)]
        parts += [self._run(x[i:i + 1]) for i in range(whole, len(x))]
        return (np.concatenate(parts) if parts else np.zeros((0,), np.float32))[:, None]


def load(model_sha256: str, keras_net, threads: int | None = None) -> LiteNet | None:
    """The model as a LiteNet, from the cache or converted now; None when LiteRT cannot run it.
    `keras_net()` returns the Keras network to convert (called only on a cache miss)."""
    if not available() or not model_sha256:
        return None
    path = cached_path(model_sha256)
    if path.is_file():
        try:
            return LiteNet(path.read_bytes(), threads)
        except Exception as e:  # a damaged file: make it again
            log.warning("cached LiteRT model %s is unusable (%s); converting again", path, e)
    net = keras_net()  # a bad model file raises here, as it would without LiteRT
    import keras
    if keras.backend.backend() != "tensorflow":  # the converter takes TensorFlow models only
        log.info("LiteRT: no conversion under the %s backend; scoring with Keras", keras.backend.backend())
        return None
    try:
        content = convert(net)
        lite = LiteNet(content, threads)
        diff = disagreement(net, lite)
    except Exception as e:
        log.warning("LiteRT cannot run this model (%s); scoring with Keras", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    if diff > AGREE:
        log.warning("LiteRT's conversion differs from the Keras model by %.2g; scoring with Keras", diff)
        return None
    _keep(path, content)
    return lite


def convert(net) -> bytes:
    import tensorflow as tf
    with silenced(1, 2):  # it prints where it saved its temporary SavedModel; its C++ logs
        return tf.lite.TFLiteConverter.from_keras_model(net).convert()


def check_crops(n: int = 8) -> np.ndarray:
    """Smooth random images and flat greys: varied inputs that need no data files."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (n // 2, 8, 8, 3)).astype(np.float32)
    smooth = np.repeat(np.repeat(small, 32, axis=1), 32, axis=2)
    flat = np.broadcast_to(np.linspace(40, 215, n - n // 2)[:, None, None, None], (n - n // 2, 256, 256, 3))
    return np.concatenate([smooth, flat]).astype(np.uint8)


def faces_per_second(nets: list[LiteNet], faces: int = 256, rounds: int = 3,
                     batch: int = 64) -> np.ndarray:
    """(rounds, len(nets)) faces per second, each net scoring the same crops in batches of
    `batch` (a scan's scoring stage on a CPU), after a warm-up; the nets take turns within each
    round, so a drift of the machine's speed falls on all of them alike."""
    import time
    x = np.concatenate([check_crops(8)] * -(-faces // 8))[:faces]
    for net in nets:
        net.predict_on_batch(x[:batch])
    out = np.zeros((rounds, len(nets)))
    for r in range(rounds):
        for k, net in enumerate(nets):
            t = time.perf_counter()
            for i in range(0, faces, batch):
                net.predict_on_batch(x[i:i + batch])
            out[r, k] = faces / (time.perf_counter() - t)
    return out


def disagreement(net, lite: LiteNet) -> float:
    x = check_crops()
    want = np.asarray(net.predict_on_batch(x), np.float32).reshape(-1)
    got = lite.predict_on_batch(x).reshape(-1)
    return float(np.abs(want - got).max())


def _keep(path: Path, content: bytes) -> None:
    """Best effort: a read-only or full disk only means converting again next time."""
    from .files import atomic_write
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb", encoding=None, newline=None) as f:
            f.write(content)
    except OSError as e:
        log.info("cannot keep the LiteRT model in %s (%s); it will be converted again", path.parent, e)
