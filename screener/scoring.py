"""Load a model file and score aligned face crops: uint8 (N, 256, 256, 3) in, P(fake) out.

A model is a Keras file plus its model card, a JSON file beside it (`<model>.json`) that says
what the model is, how it was trained, its threshold and its measured metrics. Model files are
user input: they load in Keras safe mode, so a file that carries code (a Lambda layer) is refused.

Legacy Keras 2 files (`.h5` / `.hdf5`, the published MesoNet weights) are read by `legacy`,
which turns their 1 = real output into P(fake) once, at load: every model this module returns
outputs P(fake), 1 is fake.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import legacy
from .device import accelerated, maybe_accelerator
from .errors import ModelError, ScreenerError
from .options import RUNTIMES
# The shipped models, and a model named by the user (a file, or a shipped model's name); the
# default model, its folder and the card reader live there and are used here as before.
from .shipped import (DEFAULT_MODEL_NAME, PACKAGE_MODELS, REPO_MODELS,  # noqa: F401
                      default_model_path, read_card, resolve_model)

log = logging.getLogger(__name__)



@dataclass
class ModelCard:
    """What the scan needs to know about a model. Scores are P(fake): 1 is fake."""
    name: str
    threshold: float = 0.5
    arch: str = "unknown"
    sha256: str = ""
    path: str = ""
    metrics: dict = field(default_factory=dict)
    limits: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Changes whenever the scores could change: the model bytes or the threshold."""
        return f"{self.sha256[:16]}@{self.threshold:g}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_inputs(path: str | Path | None = None) -> list[tuple[str, Path]]:
    """The files a model is read from, named (outputs.check_outputs): the model file (a path or
    a shipped model's name, shipped.resolve_model; default: the shipped one) and its card."""
    try:
        path = resolve_model(path)
    except ScreenerError:  # loading it says so
        return []
    return [("the model file", path), ("the model card", path.with_suffix(".json"))]


class Scorer:
    """A model file and its card; `predict` takes uint8 crops and returns P(fake) per crop.

    `runtime` says what runs the network (`RUNTIMES`): `auto` runs it under LiteRT on a CPU
    when LiteRT can (screener.lite), else under Keras (on a CPU MesoInception-4 as its CPU
    twin, screener.fast_inception: the same scores, faster); `keras` always under Keras;
    `lite` under LiteRT or not at all (ModelError). The Keras network loads when first needed
    (`model`), so a scan with nothing to score, or whose model LiteRT already holds, never
    loads TensorFlow; `load_now` makes a bad file fail before any video is read."""

    def __init__(self, card: "ModelCard", path: Path | None = None, model=None,
                 runtime: str = "auto", cpu_twin: bool = True):
        self.card = card  # runtime: one of RUNTIMES (options.ScanOptions checked it)
        self._path = path
        self._model = model
        self.runtime_choice = runtime
        self._cpu_twin = cpu_twin
        self._net = None  # what predict runs: LiteRT's network, the Keras model or its CPU twin
        self.runtime = ""  # which of them, once predict has run

    @property
    def model(self):
        """The Keras network (loaded now if it was not yet)."""
        if self._model is None:
            self._model = _load_keras(self._path)
        return self._model

    @property
    def loaded_model(self):
        """The Keras network if it is loaded, else None (then `card.path` names the file)."""
        return self._model

    def _lite_first(self) -> bool:
        return self.runtime_choice == "lite" or (self.runtime_choice == "auto" and not accelerated())

    def load_now(self) -> None:
        """Load now what scoring will need and may fail on: the Keras network, unless LiteRT
        will run a conversion of this model that it already holds (screener.lite's cache,
        written only after the file loaded and converted)."""
        from . import lite
        held = (self.runtime_choice != "keras" and not maybe_accelerator() and lite.available()
                and lite.cached_path(self.card.sha256).is_file())
        if not held:
            self.model  # noqa: B018 (a bad model file raises ModelError here)

    def _cpu_net(self):
        net = self.model
        if self._cpu_twin:
            from .fast_inception import cpu_twin
            return cpu_twin(net) or net
        return net

    def _compile(self) -> None:
        """Choose what runs the network (see the class) and make it ready. With TensorFlow
        the Keras forward pass is XLA-compiled (docs/performance.md); one compile per padded
        batch size (see predict)."""
        on_cpu = not accelerated()
        if self._lite_first():
            from . import lite
            self._net = lite.load(self.card.sha256, self._cpu_net)
            if self._net is not None:
                self.runtime = "litert"
                return
            if self.runtime_choice == "lite":
                raise ModelError(f"{self.card.path}: LiteRT cannot run this model (runtime "
                                 "lite); the log says why")
        self._net = self._cpu_net() if on_cpu else self.model
        self.runtime = "keras" + (" (CPU twin)" if self._net is not self.model else "")
        try:
            import keras
            if keras.backend.backend() == "tensorflow":
                self._net.compile(jit_compile=True)
        except Exception as e:  # XLA unavailable: the plain graph gives the same scores
            log.info("no XLA for inference (%s); running without it", e)

    def batch_for(self, batch_size: int) -> int:
        """The batch `predict` really runs: on a CPU at most CPU_BATCH, so waiting for more
        crops than that before scoring only delays the scores."""
        return batch_size if accelerated() else min(batch_size, CPU_BATCH)

    def predict(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.size == 0:
            return np.zeros((0,), np.float32)
        if crops.dtype != np.uint8 or crops.shape[1:] != (256, 256, 3):
            raise ValueError(f"crops must be uint8 (N, 256, 256, 3), got {crops.dtype} {crops.shape}")
        if self._net is None:
            self._compile()
        out = []
        # On a CPU a big batch buys no speed and costs memory (Meso-4's first block alone holds
        # 2 MB of activations per face); accelerators get the full batch.
        batch_size = self.batch_for(batch_size)
        for i in range(0, len(crops), batch_size):
            # predict_on_batch avoids predict()'s per-call dataset setup, which dominates at
            # the batch sizes a scan uses. Each new batch shape retraces the graph, so batches
            # are padded to a few sizes: powers of two up to batch_size.
            chunk = crops[i:i + batch_size]
            size = min(max(8, 1 << (len(chunk) - 1).bit_length()), max(batch_size, len(chunk)))
            if size > len(chunk) and self.runtime != "litert":  # LiteNet needs no padding
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:],
                                                        np.uint8)])
            p = self._net.predict_on_batch(chunk)
            out.append(np.asarray(p, np.float32).reshape(-1)[:min(batch_size, len(crops) - i)])
        return np.concatenate(out)


CPU_BATCH = 32


def load_model(path: str | Path | None = None, threshold: float | None = None, *,
               runtime: str = "auto", cpu_twin: bool = True) -> Scorer:
    """A model file or a shipped model's name (`shipped.resolve_model`; default: the shipped
    default model) with its card, as a Scorer; `runtime` and `cpu_twin` as Scorer says. A
    missing file, or a legacy file that does not load, raises ModelError at once, a name that
    no shipped model has UnknownModel; a bad .keras file raises ModelError when its network is
    first needed (`Scorer.load_now`, `Scorer.model`, or the first `predict`)."""
    path = resolve_model(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise ModelError(f"{path} is not a model file: it is "
                         f"{'a folder' if stat.S_ISDIR(mode) else 'a device, a pipe or a socket'}")
    card = read_card(path)
    model = None
    if path.suffix.lower() in legacy.SUFFIXES:  # its card depends on what is in it: read now
        model, arch = legacy.load(path)
        card.setdefault("arch", arch)
        card.setdefault("source", "legacy Keras 2 file, output flipped to P(fake) at load")
    elif path.suffix != ".keras":  # said before Keras (and TensorFlow) take seconds to load
        raise ModelError(f"{path}: unknown model file type (expected .keras, .h5 or .hdf5)")
    elif not zipfile.is_zipfile(path):  # a .keras file is a zip archive; checked without Keras
        raise ModelError(f"cannot load model {path}: not a Keras model file (not a zip archive)")
    try:
        return Scorer(_model_card(path, card, threshold), path, model, runtime, cpu_twin)
    except OSError as e:  # its hash could not be read
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from None


def _model_card(path: Path, card: dict, threshold: float | None) -> ModelCard:
    known = {"name", "threshold", "arch"}
    return ModelCard(
        name=card.get("name", path.stem),
        threshold=float(threshold if threshold is not None else card.get("threshold", 0.5)),
        arch=card.get("arch", "unknown"),
        sha256=file_sha256(path),
        path=str(path),
        metrics=card.get("metrics", {}),
        limits=card.get("limits", []),
        extra={k: v for k, v in card.items() if k not in known | {"metrics", "limits"}},
    )


def _load_keras(path: Path):
    import keras

    from . import nets  # noqa: F401  registers our own layer (nets.LogPower)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad files; report one
        raise ModelError(f"cannot load model {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
