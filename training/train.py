r"""Train Meso-4 / MesoInception-4 on `<data>/<train split>/{df,real}` (df = fake = 1).

    python -m training.train --data data/mesonet-df-aligned --run runs/meso4 \
        --arch meso4 --epochs 20

Model selection uses a holdout carved from the train split (by video when file names carry a
video id, else by groups of alike images: see training.groups); the dataset's `validation`
split is the paper's test set and is never looked at here.

A run folder holds everything: `last.keras` (model + optimizer, written every epoch),
`state.json` (epoch, best holdout AUC, early-stopping counter), `best.keras` (the epoch with the
best holdout ROC AUC, without optimizer: the file to ship) and its card `best.json`, `log.csv`
and `curves.png`. Running the same command again resumes from `last.keras`.

Several sources in one run (training.sources, training.mix), with self-blended pseudo-fakes
(training.sbi): each batch is balanced by source (--source weights) and class, and a share of the
fake slots (--sbi-share) are pseudo-fakes made from the source's reals. Model selection is the
mean holdout ROC AUC over the sources' selection groups and a fixed set of pseudo-fakes.

    python -m training.train --run runs/mix --arch mesoinception4 --window \
        --source df=data/mesonet-df-aligned --source dfdc=data/dfdc-aligned \
        --sbi-share 0.5 --epoch-images 8000 --epochs 12

Learning rate: Adam, lr = max(floor, lr0 * rate ** (step / decay_steps)) with decay_steps =
--decay-epochs x steps per epoch (default: half the epochs, so lr0 1e-3 and rate 0.1 end at 1e-5).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from screener.arch import ARCHS, FACE_WINDOW
from screener.errors import ScreenerError

from . import metrics
from .augment import add_arguments, from_arguments
from .data import (HOLDOUT_BY, RESIZE_MODES, BatchStream, class_weights, holdout_split, list_split,
                   resolve_holdout_by)
from .curves import plot_curves
from .mix import mixed_source, pooled
from .options import options_class, parse
from .start import HEAD, fit_spectrum_norm, init_from
from .threshold import THRESHOLD_RULES, choose_threshold
from .trunk import cached_source

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data: one dataset (--data) or several (--source)")
    g.add_argument("--data", type=Path, default=None,
                   help="dataset root holding <split>/<fake dir> and <split>/<real dir>")
    g.add_argument("--source", action="append", default=[], metavar="NAME=PATH[@WEIGHT]",
                   help="a training source (repeat for several; see training.sources for the "
                        "layouts): batches draw sources in proportion to WEIGHT (default 1) "
                        "and classes equally")
    g.add_argument("--sbi-share", type=float, default=0.0,
                   help="with --source: share of fake slots filled with self-blended "
                        "pseudo-fakes of the source's reals (0: none, 1: only pseudo-fakes)")
    g.add_argument("--epoch-images", type=int, default=0,
                   help="with --source: images per epoch (default: the training images)")
    g.add_argument("--holdout-limit", type=int, default=1200,
                   help="with --source: at most this many selection images per source, and "
                        "pseudo-fakes of half as many reals")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="with --source: where decoded images are kept for reuse by later runs "
                        "(default: $XDG_CACHE_HOME/screener/pools)")
    g.add_argument("--split", default="train", help="split folder to train on (default train)")
    g.add_argument("--fake-dir", default="df", help="fake class folder, label 1 (default df)")
    g.add_argument("--real-dir", default="real", help="real class folder, label 0 (default real)")
    g.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the train split held out for model selection (default 0.1)")
    g.add_argument("--holdout-by", choices=HOLDOUT_BY, default="auto",
                   help="groups that never straddle the holdout: video ids from file names, "
                        "similar (alike images, for names without ids), block (50 consecutive "
                        "files; the shipped model's carve). auto: video if every name has one, "
                        "else similar")
    g.add_argument("--resize", choices=RESIZE_MODES, default="nearest",
                   help="resize for images that are not 256x256 (aligned crops never are resized)")
    g.add_argument("--no-class-weights", action="store_true",
                   help="do not weight the classes to count equally in the loss")
    g.add_argument("--limit", type=int, default=0,
                   help="use only this many training images (a quick run; 0 = all)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=ARCHS, default="meso4", help="network (default meso4)")
    g.add_argument("--activation", choices=["paper", "relu", "elu", "leaky_relu"], default="paper",
                   help="paper: ReLU convs and LeakyReLU(0.1) dense; else one activation throughout")
    g.add_argument("--no-batchnorm", action="store_true", help="drop BatchNorm after each block")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout rate around dense16 (0: none)")
    g.add_argument("--window", action="store_true",
                   help="the model sees only the face's box of the crop (nets.FACE_WINDOW); "
                        "what lies around it is zeroed")
    g.add_argument("--width", type=int, default=1, choices=range(1, 9), metavar="K",
                   help="multiply every block's channels and the dense layer by K (default 1)")
    g.add_argument("--srm", action="store_true",
                   help="add three fixed SRM high-pass residuals to the first block's input")
    g.add_argument("--spectrum", action="store_true",
                   help="add the frequency branch (the crop's DCT log power, a small head) and "
                        "fuse its logit with MesoNet's into P(fake) (screener.nets)")
    g.add_argument("--fresh-head", action="store_true",
                   help="with --init: start the two dense layers from scratch (a recalibrated "
                        "start: the convolutions keep what they learned, not the confidence)")
    g.add_argument("--init", default=None,
                   help="start from this model file's weights (.keras, or published .h5/.hdf5; "
                        "same architecture), i.e. fine-tune; recorded in the model card")
    g.add_argument("--freeze-blocks", type=int, default=0, choices=range(0, 5), metavar="N",
                   help="freeze blocks 1..N (their convs and BatchNorm) when fine-tuning")
    g.add_argument("--cache-trunk", action="store_true",
                   help="with --freeze-blocks N: compute the frozen blocks' output once per image "
                        "(float16 memmap in the run folder) and train only the rest; augmentation "
                        "is then off (the cache holds plain images)")
    g.add_argument("--reuse-cache", type=Path, nargs="*", default=[], metavar="RUN",
                   help="with --cache-trunk: take features already computed by these run "
                        "folders (same --init, --freeze-blocks and --resize), matched by file")
    add_arguments(p)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    g.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    g.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (Adam)")
    g.add_argument("--lr-decay-rate", type=float, default=0.1,
                   help="factor applied to the learning rate every --decay-epochs (default 0.1)")
    g.add_argument("--lr-floor", type=float, default=1e-6,
                   help="the learning rate never goes below this (default 1e-6)")
    g.add_argument("--decay-epochs", type=float, default=None,
                   help="epochs per factor of --lr-decay-rate (default: epochs / 2)")
    g.add_argument("--patience", type=int, default=5,
                   help="stop after this many epochs without a better holdout AUC (0: never)")
    g.add_argument("--max-minutes", type=float, default=0,
                   help="stop after the epoch that would overrun this budget (0: none)")
    g.add_argument("--pick-threshold", action="store_true",
                   help="after training, set the card's threshold on the train holdout with "
                        "--threshold-rule (default: 0.5)")
    g.add_argument("--threshold-rule", choices=THRESHOLD_RULES, default="cautious",
                   help="best: the grid threshold (step 0.05) with the best holdout balanced "
                        "accuracy; cautious (default): that one only if it beats 0.5 by more than "
                        "twice the standard error of the gain (bootstrap over holdout groups), "
                        "else 0.5")
    g.add_argument("--no-xla", action="store_true", help="do not JIT-compile the training step")
    g.add_argument("--seed", type=int, default=1234,
                   help="seed for weights, holdout split, shuffling and augmentation (default 1234)")
    g.add_argument("--workers", type=int, default=2, help="image decoding threads")
    g = p.add_argument_group("output")
    g.add_argument("--run", required=True, type=Path, help="run folder (created; resumed if it exists)")
    g.add_argument("--name", default=None, help="model name in the card (default: the run folder's)")
    g.add_argument("--quiet", action="store_true", help="no progress bar (none off a terminal)")
    return p


def _fresh(a):
    activation = None if a.activation == "paper" else a.activation
    from screener import nets  # Keras, and TensorFlow: after the arguments are parsed
    return nets.build(a.arch, activation=activation, batchnorm=not a.no_batchnorm,
                      dropout=a.dropout, name=a.name or a.run.name,
                      window=FACE_WINDOW if a.window else None, width=a.width,
                      srm=a.srm, spectrum=a.spectrum)


def build_model(a):
    model = _fresh(a)
    if a.init:
        from screener.scoring import load_model
        src = load_model(a.init).model
        copied = init_from(model, src, skip=HEAD if a.fresh_head else ())
        if not copied:
            raise ScreenerError(f"--init {a.init}: no layer matches --arch {a.arch} and its "
                                "options (a different width?)")
    _freeze(model, a.freeze_blocks)
    return model


def lr_at(step: int, a, steps_per_epoch: int) -> float:
    decay_steps = (a.decay_epochs or a.epochs / 2) * steps_per_epoch
    return max(a.lr_floor, a.lr * a.lr_decay_rate ** (step / max(decay_steps, 1)))


def predict_batches(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(fake)) of a stream of (x, y, weights) batches."""
    ys, ps = [], []
    for x, y, _ in batches:
        ps.append(np.asarray(model.predict_on_batch(x)).reshape(-1))
        ys.append(y)
    return np.concatenate(ys), np.concatenate(ps)


def score_holdout(model, batches):
    y, p = predict_batches(model, batches)
    eps = 1e-7
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    r = metrics.binary_report(y, p, 0.5)
    return loss, r


def score_sets(model, sets):
    """(loss, report) over named holdout sets: one set's own figures, or for several the mean of
    each figure over the sets (each counts alike, whatever its size) and `by_set` ROC AUCs."""
    scored = [(name, *score_holdout(model, batches())) for name, batches in sets]
    if len(scored) == 1:
        return scored[0][1], scored[0][2]
    mean = {k: float(np.mean([r[k] for _, _, r in scored])) for k in ("accuracy", "roc_auc", "eer")}
    mean["by_set"] = {name: r["roc_auc"] for name, _, r in scored}
    return float(np.mean([loss for _, loss, _ in scored])), mean


def save_clean(model, a, path: Path) -> None:
    """Save weights in a freshly built, uncompiled model: no optimizer state, no frozen flags."""
    clean = _fresh(a)
    clean.set_weights(model.get_weights())
    tmp = path.with_name(path.stem + ".tmp.keras")
    clean.save(tmp)
    os.replace(tmp, path)


def card(a, state: dict, split_info: dict) -> dict:
    return {
        "name": a.name or a.run.name,
        "arch": a.arch,
        "threshold": state.get("threshold", {}).get("value", 0.5),
        "threshold_choice": state.get("threshold", "fixed at 0.5"),
        "labels": "output is P(fake); 1 = fake (folder %r), 0 = real (folder %r)" % (a.fake_dir, a.real_dir),
        "options": {"activation": a.activation, "batchnorm": not a.no_batchnorm,
                    "width": a.width, "srm": a.srm, "spectrum": a.spectrum,
                    "dropout": a.dropout, "freeze_blocks": a.freeze_blocks,
                    "cache_trunk": a.cache_trunk,
                    "window": list(FACE_WINDOW) if a.window else None},
        "start_point": (f"fine-tuned from {a.init}" + (" (dense layers from scratch)"
                                                       if a.fresh_head else "")
                        if a.init else "trained from scratch (random init)"),
        "data": ({"root": str(a.data), "split": a.split, "resize": a.resize, **split_info}
                 if a.data else split_info),
        "training": {"seed": a.seed, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
                     "best_holdout": state["best_holdout"], "batch_size": a.batch_size,
                     "lr": a.lr, "lr_decay_rate": a.lr_decay_rate, "lr_floor": a.lr_floor,
                     "decay_epochs": a.decay_epochs or a.epochs / 2,
                     "class_weights": not a.no_class_weights,
                     "augment": (from_arguments(a).options()
                                 if from_arguments(a) and not a.cache_trunk else None)},
        "command": state["command"],
        "resumed_with": state.get("resumed_with", []),
        "metrics": {},
        "limits": [],
    }


def _freeze(model, n: int) -> None:
    for k in range(1, n + 1):
        for layer in model.layers:
            if layer.name.startswith(f"block{k}_"):
                layer.trainable = False


def _compile(net, a, optimizer=None):
    import keras
    net.compile(optimizer=optimizer or keras.optimizers.Adam(a.lr), loss="binary_crossentropy",
                metrics=[keras.metrics.BinaryAccuracy(name="acc")], jit_compile=not a.no_xla)
    return net


def train(a) -> dict:
    import keras
    keras.utils.set_random_seed(a.seed)
    if a.cache_trunk and not a.freeze_blocks:
        raise ScreenerError("--cache-trunk needs --freeze-blocks N (the blocks it caches)")
    a.run.mkdir(parents=True, exist_ok=True)
    if bool(a.data) == bool(a.source):
        raise ScreenerError("give one dataset with --data, or sources with --source")
    if a.source and a.cache_trunk:
        raise ScreenerError("--cache-trunk works with --data only (pseudo-fakes and "
                            "augmentation change every image)")
    if not a.source:
        samples = list_split(a.data, a.split, a.fake_dir, a.real_dir)
        fit_set, held = holdout_split(samples, a.holdout, a.seed, a.holdout_by)
        if a.limit:
            fit_set = [fit_set[i] for i in
                       sorted(np.random.default_rng(a.seed).permutation(len(fit_set))[:a.limit])]
        if not held or len({s.label for s in held}) < 2:
            raise ScreenerError("the holdout split needs images of both classes; raise --holdout")
        weights = None if a.no_class_weights else class_weights(fit_set)
        split_info = {"train_images": len(fit_set), "holdout_images": len(held),
                      "holdout_by": resolve_holdout_by(a.holdout_by, samples),
                      "class_weights": weights}

    state_path, last_path = a.run / "state.json", a.run / "last.keras"
    log_csv = a.run / "log.csv"
    resumed = last_path.is_file() and state_path.is_file()
    if resumed:
        state = json.loads(state_path.read_text())
        state.setdefault("resumed_with", []).append(
            "python -m training.train " + shlex.join(a.argv))
        model = keras.models.load_model(last_path, safe_mode=True)
        _freeze(model, a.freeze_blocks)
        print(f"resuming {a.run} after epoch {state['epoch']} (best holdout AUC "
              f"{state['best_holdout'].get('roc_auc')})", flush=True)
    else:
        model = build_model(a)
        state = {"epoch": 0, "step": 0, "best_epoch": 0, "best_holdout": {"roc_auc": -1.0},
                 "bad_epochs": 0, "command": "python -m training.train " + shlex.join(a.argv),
                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with open(log_csv, "w", newline="") as f:
            csv.writer(f).writerow(["epoch", "lr", "loss", "acc", "holdout_loss", "holdout_acc",
                                    "holdout_auc", "holdout_eer", "images_per_s", "seconds",
                                    "holdout_auc_by_set"])

    if a.source:
        split_info, train_batches, held_sets, steps = mixed_source(a, from_arguments(a))
        held_batches = pooled(held_sets)
        net = _compile(model, a, model.optimizer if resumed else None)
    elif a.cache_trunk:
        # The full model is never compiled here, so last.keras holds no optimizer: a resumed
        # cached run restarts Adam's moment estimates (the learning-rate schedule continues).
        net, train_batches, held_batches, steps = cached_source(model, a, fit_set, held, weights)
        _compile(net, a)
    else:
        train_stream = BatchStream(fit_set, a.batch_size, a.resize, shuffle=True, seed=a.seed,
                                   augment=from_arguments(a), weights=weights, workers=a.workers)
        held_stream = BatchStream(held, 64, a.resize, workers=a.workers)

        def train_batches(epoch):
            train_stream.epoch = epoch  # same order and augmentation on resume
            return iter(train_stream)
        held_batches = lambda: iter(held_stream)  # noqa: E731
        held_batches.samples = lambda: held_stream.kept  # noqa: E731  after a pass: in the order scored
        steps = len(train_stream)
        net = _compile(model, a, model.optimizer if resumed else None)
    if not a.source:
        held_sets = [("holdout", held_batches)]
    if a.spectrum and not resumed:
        fit_spectrum_norm(model, train_batches(0))

    t_start, start_epoch = time.time(), state["epoch"]
    print(f"{a.arch}: {split_info['train_images']} training images ({steps} steps/epoch), "
          f"{split_info['holdout_images']} holdout", flush=True)
    stopped = a.patience and state["bad_epochs"] >= a.patience  # an early-stopped run stays so
    while state["epoch"] < a.epochs and not stopped:
        epoch = state["epoch"] + 1
        tty = not a.quiet and sys.stdout.isatty()  # Keras's bar writes \r and colour into files
        bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "acc", "lr"]) if tty else None
        t0, seen, step = time.time(), 0, state.get("step", 0)
        # train_on_batch reports one batch: the epoch's figures are image-weighted means (the
        # last batch may hold a single image).
        loss_sum = acc_sum = 0.0
        for i, (x, y, w) in enumerate(train_batches(epoch)):
            lr = lr_at(step, a, steps)
            net.optimizer.learning_rate.assign(lr)
            out = net.train_on_batch(x, y, sample_weight=w, return_dict=True)
            step += 1
            seen += len(x)
            loss_sum += float(out["loss"]) * len(x)
            acc_sum += float(out["acc"]) * len(x)
            if bar:
                bar.update(i + 1, [("loss", loss_sum / seen), ("acc", acc_sum / seen),
                                   ("lr", lr)])
        train_s = time.time() - t0
        out = {"loss": loss_sum / max(seen, 1), "acc": acc_sum / max(seen, 1)}
        h_loss, h = score_sets(net, held_sets)
        row = [epoch, f"{lr:.3g}", f"{out['loss']:.4f}", f"{out['acc']:.4f}", f"{h_loss:.4f}",
               f"{h['accuracy']:.4f}", f"{h['roc_auc']:.4f}", f"{h['eer']:.4f}",
               f"{seen / train_s:.1f}", f"{time.time() - t0:.0f}",
               " ".join(f"{k}={v:.4f}" for k, v in h.get("by_set", {}).items())]
        with open(log_csv, "a", newline="") as f:
            csv.writer(f).writerow(row)
        state["epoch"], state["step"] = epoch, step
        improved = h["roc_auc"] > state["best_holdout"]["roc_auc"]
        if improved:
            state.update(best_epoch=epoch, bad_epochs=0,
                         best_holdout={k: h[k] for k in ("accuracy", "roc_auc", "eer", "by_set")
                                       if k in h})
            save_clean(model, a, a.run / "best.keras")
        else:
            state["bad_epochs"] += 1
        model.save(a.run / "last.tmp.keras")
        os.replace(a.run / "last.tmp.keras", last_path)
        state_path.write_text(json.dumps(state, indent=2))
        (a.run / "best.json").write_text(json.dumps(card(a, state, split_info), indent=2) + "\n")
        plot_curves(log_csv, a.run / "curves.png")
        print(f"epoch {epoch}: loss {out['loss']:.4f} holdout acc {h['accuracy']:.4f} "
              f"AUC {h['roc_auc']:.4f} EER {h['eer']:.4f} ({seen / train_s:.1f} img/s)"
              f"{' ' + row[-1] if row[-1] else ''}{' *best*' if improved else ''}", flush=True)
        if a.patience and state["bad_epochs"] >= a.patience:
            print(f"early stop: no better holdout AUC for {a.patience} epochs", flush=True)
            break
        per_epoch = (time.time() - t_start) / (epoch - start_epoch)
        if a.max_minutes and (time.time() - t_start + per_epoch) / 60 > a.max_minutes:
            print(f"stopping: another epoch would overrun --max-minutes {a.max_minutes}", flush=True)
            break
    if a.pick_threshold and state["best_epoch"]:
        state["threshold"] = pick_threshold(a, held_batches)
        state_path.write_text(json.dumps(state, indent=2))
        (a.run / "best.json").write_text(json.dumps(card(a, state, split_info), indent=2) + "\n")
    return state


def pick_threshold(a, held_batches) -> dict:
    """The threshold on a coarse grid that maximises balanced accuracy on the train holdout,
    scored with best.keras. (The test split is never used to choose it.)"""
    import keras
    best = keras.models.load_model(a.run / "best.keras", safe_mode=True)
    net = best
    if a.cache_trunk:
        from . import trunk as tk
        net = tk.split_model(best, a.freeze_blocks)[1]
    y, p = predict_batches(net, held_batches())
    groups = held_batches.samples() if hasattr(held_batches, "samples") else None
    return choose_threshold(y, p, None if groups is None else [s.group for s in groups],
                            a.threshold_rule)


TrainOptions = options_class("TrainOptions", parser())  # frozen, a field per flag, and argv


def main(argv=None) -> int:
    a = parse(TrainOptions, parser(), list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        state = train(a)
    except (ScreenerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"best epoch {state['best_epoch']}: holdout {state['best_holdout']}; "
          f"model {a.run / 'best.keras'}, card {a.run / 'best.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
