"""Legacy Keras 2 model files (`.h5` / `.hdf5`): the MesoNet authors' weights-only files and
full models such as the student re-implementation's.

They are never deserialised: their weight arrays are read with h5py, the same network is built
with `nets.build` and the arrays are copied in layer-creation order, checking every shape. Their
output is 1 = real (Keras ordered the class folders alphabetically: df/fake before real), so the
last Dense layer is negated once here: sigmoid(-z) = 1 - sigmoid(z), and `load` returns a model
that outputs P(fake), 1 is fake, as every model `scoring` returns.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

SUFFIXES = (".h5", ".hdf5")

# Layer types a legacy MesoNet file may contain; anything else (a Lambda layer above all: it
# carries code) is refused rather than interpreted.
SAFE_LAYERS = {"InputLayer", "Conv2D", "ReLU", "Activation", "BatchNormalization",
                "MaxPooling2D", "Flatten", "Dropout", "Dense", "LeakyReLU", "Concatenate"}


def _layers(path: Path):
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


def load(path: Path):
    """Build our network and fill it with a legacy file's weights; returns (model, arch)."""
    from . import nets
    classes, weights, names = _layers(path)
    if classes is not None:
        bad = sorted(set(classes) - SAFE_LAYERS)
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
