"""A frequency branch for a trained MesoNet, trained on cached features and fused into one model.

    python -m training.spectrum --base trained_models/screener-meso.keras \
        --source df=data/mesonet-df-aligned --source dfdc=data/fetched/dfdc-aligned \
        --source ffpp=data/fetched/ffpp-aligned --cache data/spectrum-cache --run runs/spec

Training the branch end to end with the convolutions (`train.py --spectrum`) costs a full
MesoNet run per try on these cores; its inputs are fixed, though (the grey crop's pooled DCT log
power, `nets.spectrum_features`), and so is the MesoNet it is fused with. So each training image
goes through the network once, augmented as a scan degrades faces (JPEG, blur, resampling, noise:
the changes that move a spectrum), and its features and MesoNet logit are cached; the branch's
head (`nets.spectrum_head`) then trains in seconds. The training images are split by group: the
head learns from 80%, and the fusing unit (`p_fake`: one weight per logit and a bias) is a
logistic regression fitted on the other 20%, which the head never saw, so the fusion does not
trust an overfitted head. Only the sources' `train` split is read: selection carves and test
groups stay unseen (`training.selection` judges the result).

The result is `RUN/model.keras`, the base model's MesoNet with the branch (`nets.build(...,
spectrum=True)`: one file, safe-mode loadable, LiteRT-convertible), and `RUN/spectrum.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import Sample

FIT_SHARE = 0.8
CACHE_VERSION = 2


def scan_augment():
    """What a scan does to a face that moves its spectrum, none of the geometry."""
    from .augment import Augment
    return Augment(rotation_deg=0, zoom=0, brightness=0, channel_shift=0, hflip=True,
                   jpeg_p=0.5, jpeg_quality=(30, 95), blur_p=0.2, resample_p=0.5, noise_p=0.2)


def feature_model(base):
    """(image) -> (pooled DCT log power, the base's MesoNet logit): the base's weights in a
    model with the branch, cut before the branch's trainable part."""
    import keras
    from screener import nets
    from .start import init_from
    fused = nets.build(_arch(base), spectrum=True, window=nets.window_of(base),
                       width=_width(base), srm=_has(base, "srm"), name="screener-meso-spectrum")
    copied = init_from(fused, base)
    missing = [lay.name for lay in base.layers if lay.weights and lay.name != "p_fake"
               and lay.name not in copied]
    if missing or "meso_logit" not in copied:
        raise SystemExit(f"error: the base model's layers {missing} do not fit the fused model")
    feats = keras.Model(fused.input, [fused.get_layer("spectrum_features").output,
                                      fused.get_layer("meso_logit").output])
    return fused, feats


def _has(model, name: str) -> bool:
    return any(lay.name == name for lay in model.layers)


def _arch(model) -> str:
    return "meso4" if _has(model, "block1_conv") else "mesoinception4"


def _width(model) -> int:
    return int(model.get_layer("dense16").units // 16)


def cache_source(name: str, samples: list[Sample], feats, path: Path, seed: int,
                 base_sha256: str) -> dict:
    """Features, MesoNet logits, labels and groups of `samples` (augmented once), cached in
    path (an .npz without pickles); reused when it was made from the same images, seed and
    base model (the logits are the base's)."""
    from .data import BatchStream
    asked = np.array([str(s.path) for s in samples])
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if (int(z["version"]) == CACHE_VERSION and int(z["seed"]) == seed
                    and str(z["base"]) == base_sha256 and np.array_equal(z["asked"], asked)):
                return {k: z[k] for k in z.files}
    stream = BatchStream(samples, batch_size=64, resize_mode="area", augment=scan_augment(),
                         seed=seed)
    f, m = [], []
    t0 = time.time()
    for x, _, _ in stream:
        a, b = feats.predict_on_batch(x)
        f.append(np.asarray(a, np.float32))
        m.append(np.asarray(b, np.float32)[:, 0])
    kept = stream.kept  # unreadable images are dropped
    out = {"version": np.array(CACHE_VERSION), "seed": np.array(seed), "base": np.array(base_sha256),
           "asked": asked, "files": np.array([str(s.path) for s in kept]),
           "features": np.concatenate(f), "meso": np.concatenate(m),
           "y": np.array([s.label for s in kept], np.int8),
           "groups": np.array([s.group for s in kept])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    print(f"{name}: {len(kept)} images in {time.time() - t0:.0f} s", file=sys.stderr)
    return out


def fit_part(groups: np.ndarray, seed: int) -> np.ndarray:
    """True for the images whose group falls in the head's share (hash of the group name)."""
    from .sources import hash_share
    by = {g: hash_share(f"{seed}:{g}") < FIT_SHARE for g in np.unique(groups)}
    return np.array([by[g] for g in groups])


def balance(src: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights giving each source the same total, split equally between its classes."""
    w = np.zeros(len(y), np.float32)
    cells = {(s, c) for s, c in zip(src, y)}
    for s, c in cells:
        sel = (src == s) & (y == c)
        w[sel] = 1.0 / sel.sum()
    return w * len(y) / w.sum()


def train_head(x, y, w, x_val, y_val, w_val, epochs: int, seed: int, dropout: float = 0.5):
    """nets.spectrum_head on cached features: (its Keras model, the history)."""
    import keras
    from screener import nets
    keras.utils.set_random_seed(seed)
    inp = keras.Input((x.shape[1],), name="features")
    model = keras.Model(inp, nets.spectrum_head(inp, dropout))
    norm = model.get_layer("spectrum_norm")
    norm.adapt(x)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  weighted_metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=4,
                                         restore_best_weights=True)
    hist = model.fit(x, y, sample_weight=w, batch_size=256, epochs=epochs, verbose=0,
                     validation_data=(x_val, y_val, w_val), callbacks=[stop], shuffle=True)
    return model, hist.history


def fit_fusion(meso, spec, y, w) -> tuple[np.ndarray, float]:
    """p_fake's two weights and bias: a logistic regression of the label on the two logits."""
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(C=1.0).fit(np.c_[meso, spec], y, sample_weight=w)
    return lr.coef_[0].astype(np.float32), float(lr.intercept_[0])


def auc_by_source(src, y, p) -> dict:
    from sklearn.metrics import roc_auc_score
    return {s: round(float(roc_auc_score(y[src == s], p[src == s])), 4) for s in np.unique(src)}


def card(base, report: dict, a) -> dict:
    """The fused model's card: the base's, with what the branch added (the scan reads name
    and threshold; benchmark figures are the base's until training.benchmark is run again)."""
    from screener.shipped import read_card
    old = read_card(Path(base.card.path))
    keep = ("arch", "threshold", "threshold_choice", "labels", "options", "data", "training",
            "command", "training_sources", "evaluation_only", "limits")
    out = {k: old[k] for k in keep if k in old}
    out.update({
        "name": a.name or a.run.name,
        "threshold": old.get("threshold", 0.5),
        "labels": "output is P(fake); 1 = fake, 0 = real",
        "start_point": f"the MesoNet of {a.base} ({old.get('name', 'no card')}), unchanged",
        "frequency_branch": report,
        "frequency_command": "python -m training.spectrum " + " ".join(
            [f"--base {a.base}"] + [f"--source {s}" for s in a.source]
            + [f"--limit {a.limit}", f"--cache {a.cache}", f"--run {a.run}", f"--seed {a.seed}"]),
        "base_card": {k: old[k] for k in ("name", "command", "selection") if k in old},
    })
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.spectrum", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the trained MesoNet (.keras) to fuse with")
    ap.add_argument("--source", action="append", required=True, metavar="NAME=PATH",
                    help="a training source, as training.train takes it; its train split is read")
    ap.add_argument("--limit", type=int, default=12000,
                    help="at most this many images per class of a source (random, fixed seed)")
    ap.add_argument("--cache", type=Path, required=True, help="folder of the cached features")
    ap.add_argument("--run", type=Path, required=True, help="output folder")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--name", default=None, help="the model's name in its card (default: the "
                    "run folder's)")
    a = ap.parse_args(argv)

    from screener.scoring import load_model
    from .sources import Source, splits
    loaded = load_model(a.base)
    base = loaded.model
    fused, feats = feature_model(base)
    rng = np.random.default_rng(a.seed)
    parts = []
    for spec in a.source:
        source = Source.parse(spec)
        train = splits(source)["train"]
        picked = []
        for label in (0, 1):
            of = [s for s in train if s.label == label]
            if len(of) > a.limit:
                of = [of[i] for i in sorted(rng.choice(len(of), a.limit, replace=False))]
            picked += of
        c = cache_source(source.name, picked, feats, a.cache / f"{source.name}.npz", a.seed,
                         loaded.card.sha256)
        parts.append((source.name, c))
    src = np.concatenate([np.full(len(c["y"]), n) for n, c in parts])
    x = np.concatenate([c["features"] for _, c in parts])
    meso = np.concatenate([c["meso"] for _, c in parts])
    y = np.concatenate([c["y"] for _, c in parts]).astype(np.float32)
    groups = np.concatenate([np.char.add(f"{n}:", c["groups"].astype(str)) for n, c in parts])
    fit = fit_part(groups, a.seed)
    w = balance(src, y)
    head, history = train_head(x[fit], y[fit], w[fit] / w[fit].mean(), x[~fit], y[~fit],
                               w[~fit] / w[~fit].mean(), a.epochs, a.seed)
    spec_logit = np.asarray(head.predict(x, batch_size=1024, verbose=0))[:, 0]
    coef, bias = fit_fusion(meso[~fit], spec_logit[~fit], y[~fit], w[~fit])
    for name in ("spectrum_norm", "spectrum_dense", "spectrum_logit"):
        fused.get_layer(name).set_weights(head.get_layer(name).get_weights())
    fused.get_layer("spectrum_norm").finalize_state()
    fused.get_layer("p_fake").set_weights([coef.reshape(2, 1), np.array([bias], np.float32)])
    fused_logit = coef[0] * meso + coef[1] * spec_logit + bias
    held = ~fit
    report = {
        "base": str(a.base), "sources": a.source, "limit_per_class": a.limit, "seed": a.seed,
        "images": {n: int((src == n).sum()) for n, _ in parts},
        "head_images": int(fit.sum()), "fusion_images": int(held.sum()),
        "head_epochs": len(history["loss"]),
        "fusion": {"meso_weight": float(coef[0]), "spectrum_weight": float(coef[1]), "bias": bias},
        "fusion_part_auc": {
            "mesonet": auc_by_source(src[held], y[held], meso[held]),
            "spectrum": auc_by_source(src[held], y[held], spec_logit[held]),
            "fused": auc_by_source(src[held], y[held], fused_logit[held])},
        "augment": scan_augment().options(),
    }
    a.run.mkdir(parents=True, exist_ok=True)
    fused.save(a.run / "model.keras")
    (a.run / "spectrum.json").write_text(json.dumps(report, indent=1))
    (a.run / "model.json").write_text(json.dumps(card(loaded, report, a), indent=2) + "\n")
    print(json.dumps(report["fusion_part_auc"], indent=1))
    print(json.dumps(report["fusion"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
