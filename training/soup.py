"""Average the weights of models fine-tuned from one start point (a "model soup", Wortsman et
al. 2022, arXiv 2203.05482): one model of the same size, so the scan pays nothing extra.

    python -m training.soup --out runs/soup/soup.keras runs/a/best.keras runs/b/best.keras \
        --data /work/data/mesonet-df-aligned --holdout 0.1 --pick-threshold

Every weight is averaged with equal weight, BatchNorm moving statistics included; that is only
meaningful for models that share a start point (fine-tunes of one model), which the card
records but this command cannot check. The ingredients must have the same layers and shapes.
With --data the soup and each ingredient are scored on the train holdout (carved exactly as
training.train carves it with the same --holdout, --holdout-by and --seed) and the card keeps the figures;
--pick-threshold sets the soup's threshold there. The test split is never read here.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from screener.errors import ScreenerError
from screener.scoring import load_model, read_card

from . import metrics
from .data import HOLDOUT_BY, RESIZE_MODES, BatchStream, holdout_split, list_split, resolve_holdout_by
from .options import options_class, parse
from .threshold import THRESHOLD_RULES, choose_threshold
from .train import predict_batches


def average(models) -> list[np.ndarray]:
    """The element-wise mean of the models' weights. Raises ScreenerError if they differ in shape."""
    layouts = [[(type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in m.layers]
               for m in models]
    for i, layout in enumerate(layouts[1:], 1):
        if layout != layouts[0]:
            raise ScreenerError(f"ingredient {i + 1} has other layers or weight shapes than the "
                                "first: a soup needs one architecture with the same options")
    weights = [m.get_weights() for m in models]
    return [np.mean([w[k].astype(np.float64) for w in weights], axis=0).astype(weights[0][k].dtype)
            for k in range(len(weights[0]))]


def make_soup(paths: list[Path]):
    """(soup model, ingredient scorers): the ingredients loaded safely, their weights averaged."""
    import keras
    scorers = [load_model(p) for p in paths]
    soup = keras.models.clone_model(scorers[0].model)
    soup.set_weights(average([s.model for s in scorers]))
    return soup, scorers


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="ingredient model files (two or more)")
    p.add_argument("--out", required=True, type=Path, help="the soup's .keras file (card beside it)")
    p.add_argument("--name", help="model name in the card (default: the first ingredient's)")
    g = p.add_argument_group("holdout (optional; the same carve as training.train)")
    g.add_argument("--data", type=Path, help="dataset root holding <split>/<fake dir>, <real dir>")
    g.add_argument("--split", default="train")
    g.add_argument("--fake-dir", default="df", help="fake class folder, label 1 (default df)")
    g.add_argument("--real-dir", default="real", help="real class folder, label 0 (default real)")
    g.add_argument("--holdout", type=float, default=0.1, help="holdout fraction (default 0.1)")
    g.add_argument("--seed", type=int, default=1234, help="holdout seed (default 1234)")
    g.add_argument("--holdout-by", choices=HOLDOUT_BY, default="auto",
                   help="the grouping of the carve, as in training.train (default auto)")
    g.add_argument("--resize", choices=RESIZE_MODES, default="nearest")
    g.add_argument("--pick-threshold", action="store_true",
                   help="set the soup's threshold on the holdout (else the first ingredient's)")
    g.add_argument("--threshold-rule", choices=THRESHOLD_RULES, default="cautious",
                   help="as in training.train (default cautious)")
    return p


def soup(a) -> dict:
    if len(a.models) < 2:
        raise ScreenerError("a soup needs at least two ingredient models")
    if a.out.suffix != ".keras":
        raise ScreenerError(f"--out must end in .keras: {a.out}")
    if a.pick_threshold and not a.data:
        raise ScreenerError("--pick-threshold needs --data (the holdout it is picked on)")
    model, scorers = make_soup(a.models)
    first = scorers[0].card
    card = {**read_card(a.models[0]), "name": a.name or first.name, "arch": first.arch,
            "threshold": first.threshold, "threshold_choice": "the first ingredient's",
            "start_point": "uniform average of the weights of %d models (model soup)" % len(scorers),
            "ingredients": [{"path": str(p), "sha256": s.card.sha256, "name": s.card.name}
                            for p, s in zip(a.models, scorers)],
            "command": "python -m training.soup " + shlex.join(a.argv), "metrics": {}, "limits": []}
    for stale in ("resumed_with", "training"):
        card.pop(stale, None)
    if a.data:
        samples = list_split(a.data, a.split, a.fake_dir, a.real_dir)
        _, held = holdout_split(samples, a.holdout, a.seed, a.holdout_by)
        stream = BatchStream(held, 64, a.resize)
        for ing, s in zip(card["ingredients"], scorers):
            r = metrics.binary_report(*predict_batches(s.model, stream), 0.5)
            ing["holdout"] = {k: r[k] for k in ("accuracy", "roc_auc", "eer")}
        y, p = predict_batches(model, stream)
        r = metrics.binary_report(y, p, 0.5)
        card["holdout"] = {"images": len(held), "fraction": a.holdout, "seed": a.seed,
                           "by": resolve_holdout_by(a.holdout_by, samples),
                           **{k: r[k] for k in ("accuracy", "roc_auc", "eer")}}
        for name, fig in [(i["path"], i["holdout"]) for i in card["ingredients"]] + [("soup", r)]:
            print(f"holdout AUC {fig['roc_auc']:.4f} acc {fig['accuracy']:.4f}  {name}", flush=True)
        if a.pick_threshold:
            card["threshold_choice"] = choose_threshold(y, p, [s.group for s in stream.kept],
                                                        a.threshold_rule)
            card["threshold"] = card["threshold_choice"]["value"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


SoupOptions = options_class("SoupOptions", parser())  # frozen, a field per flag, and argv


def main(argv=None) -> int:
    a = parse(SoupOptions, parser(), list(sys.argv[1:] if argv is None else argv))
    try:
        card = soup(a)
    except (ScreenerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"soup of {len(a.models)} models: {a.out} (threshold {card['threshold']:g}), "
          f"card {a.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
