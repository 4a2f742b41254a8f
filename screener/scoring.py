"""Load a model file and score aligned face crops: uint8 (N, 256, 256, 3) in, P(fake) out.

A model is a Keras file plus its model card, a JSON file beside it (`<model>.json`) that says
what the model is, how it was trained, its threshold and its measured metrics. Model files are
user input: they load in Keras safe mode, so a file that carries code (a Lambda layer) is refused.

Legacy Keras 2 files (`.h5` / `.hdf5`: the MesoNet authors' weights-only files and full models
such as the student re-implementation's) are never deserialised: we read their weight arrays
with h5py, build the same network with `nets.build` and copy the arrays in layer-creation order,
checking every shape. Their output is 1 = real (Keras ordered the class folders alphabetically:
df/fake before real), so the last Dense layer is negated once here: sigmoid(-z) = 1 - sigmoid(z),
and every model this module returns outputs P(fake), 1 is fake.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .device import accelerated, maybe_accelerator
from .errors import ModelError

log = logging.getLogger(__name__)

# The default model and its card: trained_models/ of the checkout, which every build installs
# as the package's trained_models/ (setup.py). The checkout's copy serves editable installs and
# a checkout run without installing.
PACKAGE_MODELS = Path(__file__).resolve().parent / "trained_models"
REPO_MODELS = Path(__file__).resolve().parents[1] / "trained_models"
DEFAULT_MODEL_NAME = "screener-meso.keras"
LEGACY_SUFFIXES = (".h5", ".hdf5")


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


def default_model_path() -> Path:
    """The shipped default model: the installed package's copy, else the checkout's."""
    for folder in (PACKAGE_MODELS, REPO_MODELS):
        if (folder / DEFAULT_MODEL_NAME).is_file():
            return folder / DEFAULT_MODEL_NAME
    raise ModelError(f"no default model found ({DEFAULT_MODEL_NAME} in {PACKAGE_MODELS} or "
                     f"{REPO_MODELS}); pass --model PATH")


def model_inputs(path: str | Path | None = None) -> list[tuple[str, Path]]:
    """The files a model is read from, named (outputs.check_outputs): the model file (default:
    the shipped one) and its card."""
    try:
        path = Path(path) if path is not None else default_model_path()
    except ModelError:  # loading it says so
        return []
    return [("the model file", path), ("the model card", path.with_suffix(".json"))]


def read_card(model_path: Path) -> dict:
    card_path = model_path.with_suffix(".json")
    if not card_path.is_file():
        return {}
    try:
        return json.loads(card_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"model card {card_path} is unreadable: {e}") from e


class Scorer:
    """A loaded model and its card. `predict` takes uint8 crops and returns P(fake) per crop."""

    lite = True  # on a CPU, run the network with LiteRT (screener.lite) when it can
    cpu_twin = True  # else, on a CPU, run MesoInception-4 as fast_inception's twin (False: as saved)

    def __init__(self, model, card: ModelCard):
        self.model = model
        self.card = card
        self._compiled = False
        self._net = None  # what predict runs: LiteRT's network, the Keras model or its CPU twin
        self.runtime = ""  # which of them, once predict has run

    def _keras(self):
        return self.model

    def _cpu_net(self):
        net = self._keras()
        if self.cpu_twin:
            from .fast_inception import cpu_twin
            return cpu_twin(net) or net
        return net

    def _compile(self) -> None:
        """On a CPU the network runs under LiteRT (screener.lite: converted once per model file
        and cached; 8.5-9 ms of CPU a face on 2 cores against 12-18 under TensorFlow, and no
        TensorFlow in the process). Otherwise MesoInception-4 runs as its CPU twin
        (fast_inception: same weights, same scores, 2.4x faces/s on 2 cores), and with
        TensorFlow the forward pass is XLA-compiled: 1.45x faces/s more (MesoInception-4, 2
        cores: 24.7 -> 35.9). One compile per padded batch size (see predict)."""
        self._compiled = True
        on_cpu = not accelerated()
        if on_cpu and self.lite:
            from . import lite
            self._net = lite.load(self.card.sha256, self._cpu_net)
            if self._net is not None:
                self.runtime = "litert"
                return
        self._net = self._cpu_net() if on_cpu else self._keras()
        self.runtime = "keras" + (" (CPU twin)" if self._net is not self._keras() else "")
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
        if not self._compiled:
            self._compile()
        out = []
        # On a CPU a big batch buys no speed and costs memory: Meso-4's first block alone
        # holds 2 MB of activations per face (+700 MB peak at 256 against 32, same speed). Accelerators get the full batch.
        batch_size = self.batch_for(batch_size)
        for i in range(0, len(crops), batch_size):
            # predict_on_batch avoids predict()'s per-call dataset setup, which dominates at
            # the batch sizes a scan uses. Each new batch shape retraces the graph (0.2-0.5 s
            # on 2 cores), so batches are padded to a few sizes: powers of two up to batch_size.
            chunk = crops[i:i + batch_size]
            size = min(max(8, 1 << (len(chunk) - 1).bit_length()), max(batch_size, len(chunk)))
            if size > len(chunk) and self.runtime != "litert":  # LiteNet needs no padding
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:],
                                                        np.uint8)])
            p = self._net.predict_on_batch(chunk)
            out.append(np.asarray(p, np.float32).reshape(-1)[:min(batch_size, len(crops) - i)])
        return np.concatenate(out)


CPU_BATCH = 32


def load_model(path: str | Path | None = None, threshold: float | None = None) -> Scorer:
    """Load a model file (default: the shipped model) with its card. Raises ModelError."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    card = read_card(path)
    if path.suffix.lower() in LEGACY_SUFFIXES:
        model, arch = _load_legacy_h5(path)
        card.setdefault("arch", arch)
        card.setdefault("source", "legacy Keras 2 file, output flipped to P(fake) at load")
    else:
        model = _load_keras(path)
    return Scorer(model, _model_card(path, card, threshold))


def load_for_scan(path: str | Path | None = None, threshold: float | None = None) -> Scorer:
    """`load_model` for a scan: the same checks at once, but when the scan will score on a CPU
    with LiteRT, which already holds this model (screener.lite's cache, written only after the
    file loaded and converted), the Keras network is not loaded at all, nor TensorFlow."""
    scorer = load_model_lazily(path, threshold)
    if isinstance(scorer, LazyScorer):
        from . import lite
        held = (Scorer.lite and not maybe_accelerator() and lite.available()
                and lite.cached_path(scorer.card.sha256).is_file())
        if not held:
            scorer._keras()  # load now: a bad model file fails before any video is read
    return scorer


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


class LazyScorer(Scorer):
    """A Scorer whose Keras network loads when first needed: the card (and so the model's
    identity) is known at once, a run with nothing to score never imports TensorFlow (an
    unchanged incremental rerun takes a fraction of a second instead of seconds), and neither
    does a CPU scan whose model LiteRT already has (screener.lite)."""

    def __init__(self, path: Path, card: ModelCard):
        super().__init__(None, card)
        self._path = path

    def _keras(self):
        if self.model is None:
            self.model = _load_keras(self._path)
        return self.model


def load_model_lazily(path: str | Path | None = None, threshold: float | None = None) -> Scorer:
    """`load_model`, deferring the network's load to its first use (.keras files; legacy files
    load at once, their card depends on what is in them). Raises ModelError for a missing file
    at once, and for a bad .keras file on first use."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() in LEGACY_SUFFIXES or path.suffix != ".keras":
        return load_model(path, threshold)
    return LazyScorer(path, _model_card(path, read_card(path), threshold))


def _load_keras(path: Path):
    if path.suffix != ".keras":  # said before Keras (and TensorFlow) take seconds to load
        raise ModelError(f"{path}: unknown model file type (expected .keras, .h5 or .hdf5)")
    import keras
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad files; report one
        raise ModelError(f"cannot load model {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


# Layer types a legacy MesoNet file may contain; anything else (a Lambda layer above all: it
# carries code) is refused rather than interpreted.
_LEGACY_SAFE = {"InputLayer", "Conv2D", "ReLU", "Activation", "BatchNormalization",
                "MaxPooling2D", "Flatten", "Dropout", "Dense", "LeakyReLU", "Concatenate"}


def _legacy_layers(path: Path):
    """(layer class names or None, {layer name: [arrays]}, [layer names in file order])."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            classes = None
            if "model_config" in f.attrs:
                raw = f.attrs["model_config"]
                cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                classes = [lay["class_name"] for lay in cfg.get("config", {}).get("layers", [])]
            group = f["model_weights"] if "model_weights" in f else f
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs.get("layer_names", [])]
            weights = {}
            for name in names:
                g = group[name]
                wnames = [w.decode() if isinstance(w, bytes) else str(w)
                          for w in g.attrs.get("weight_names", [])]
                if wnames:
                    weights[name] = [np.asarray(g[w]) for w in wnames]
    except (OSError, KeyError, ValueError) as e:
        raise ModelError(f"cannot read legacy model {path}: {e}") from e
    return classes, weights, names


def _creation_order(names, prefix):
    """Keras 2 numbers layers by creation (conv2d_1, conv2d_2, ...); the file lists them in
    graph order, which for MesoInception differs. Creation order is the order of `nets.build`."""
    picked = [n for n in names if re.fullmatch(rf"{prefix}_\d+", n)]
    return sorted(picked, key=lambda n: int(n.rsplit("_", 1)[1]))


def _load_legacy_h5(path: Path):
    """Build our network and fill it with a legacy file's weights; returns (model, arch)."""
    from . import nets
    classes, weights, names = _legacy_layers(path)
    if classes is not None:
        bad = sorted(set(classes) - _LEGACY_SAFE)
        if bad:
            raise ModelError(f"refusing {path}: it contains layers that are not plain MesoNet "
                             f"({', '.join(bad)}); a Lambda layer would run code from the file")
    convs = _creation_order([n for n in names if n in weights], "conv2d")
    bns = _creation_order([n for n in names if n in weights], "batch_normalization")
    denses = _creation_order([n for n in names if n in weights], "dense")
    arch = {4: "meso4", 16: "mesoinception4"}.get(len(convs))
    if arch is None or len(denses) != 2 or len(bns) not in (0, 4):
        raise ModelError(f"{path}: not a MesoNet file ({len(convs)} conv, {len(bns)} batchnorm, "
                         f"{len(denses)} dense layers)")
    model = nets.build(arch, batchnorm=bool(bns), name=path.stem)
    ours = nets.weight_layers(model)
    theirs = convs + bns + denses
    if len(ours) != len(theirs):
        raise ModelError(f"{path}: {len(theirs)} weight layers, our {arch} has {len(ours)}")
    for layer, name in zip(ours, theirs):
        arrays = weights[name]
        if name == denses[-1]:
            arrays = [-a for a in arrays]  # 1 = real -> 1 = fake, once, here
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [a.shape for a in arrays] != expected:
            raise ModelError(f"{path}: layer {name} has shapes {[a.shape for a in arrays]}, "
                             f"our {layer.name} expects {expected}")
        layer.set_weights(arrays)
    log.info("loaded legacy %s weights from %s (output flipped to P(fake))", arch, path)
    return model, arch
