"""The models that ship with screener, and a model named by the user: a file or a shipped name.

A model is a Keras file plus its card, `<model>.json` beside it (`read_card`; screener.scoring
loads the model).

Every `<stem>.keras` in the models folder (`PACKAGE_MODELS`, else the checkout's
`REPO_MODELS`) with its card `<stem>.json` beside it is a shipped model, named by its
file stem; its card's "name" is an alias. `resolve_model` turns what the user gave (a path or a
name) into the model file. A name is user input: it is looked up in the listing and never made
into a path, so `../x` or `/etc/x` resolves only when it is a file given as a path.

Cards may carry two keys for the listing (`screener models`), both optional: "summary", an
ordered object of label -> figure (e.g. "DFDC test AUC": 0.631), and "cost", an object with
"faces_per_s", "runtime" and "machine" (how fast the model scores faces, and where that was
measured).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import legacy
from .errors import ModelError, UnknownModel

log = logging.getLogger(__name__)

# The default model and its card: trained_models/ of the checkout, which every build installs
# as the package's trained_models/ (setup.py). The checkout's copy serves editable installs and
# a checkout run without installing.
PACKAGE_MODELS = Path(__file__).resolve().parent / "trained_models"
REPO_MODELS = Path(__file__).resolve().parents[1] / "trained_models"
DEFAULT_MODEL_NAME = "screener-meso.keras"

MODEL_SUFFIXES = (".keras", *legacy.SUFFIXES)  # a value ending so names a file, never a model


def default_model_path() -> Path:
    """The shipped default model: the installed package's copy, else the checkout's."""
    for folder in (PACKAGE_MODELS, REPO_MODELS):
        if (folder / DEFAULT_MODEL_NAME).is_file():
            return folder / DEFAULT_MODEL_NAME
    raise ModelError("no default model found ({0} in {1} or {2}); pass {3}",
                     (None, DEFAULT_MODEL_NAME), (None, PACKAGE_MODELS), (None, REPO_MODELS),
                     ("a model path", None))


def read_card(model_path: Path) -> dict:
    card_path = model_path.with_suffix(".json")
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"model card {card_path} is unreadable: {e}") from e
    _check_card(card, card_path)
    return card


def _check_card(card, card_path: Path) -> None:
    """A card is user input: its fields must be what the scan takes them for. A threshold
    outside 0-1 (or NaN) would make every verdict FAKE, or every one REAL."""
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path} is not a JSON object")
    wrong = [f"{key} {card[key]!r} is not {what}" for key, kind, what in (
        ("name", str, "a text"), ("arch", str, "a text"), ("metrics", dict, "an object"),
        ("limits", list, "a list")) if key in card and not isinstance(card[key], kind)]
    if "threshold" in card:
        t = card["threshold"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            wrong.append(f"threshold {t!r} is not a number from 0 to 1")
    if wrong:
        raise ModelError(f"model card {card_path}: {'; '.join(wrong)}")


@dataclass(frozen=True)
class ShippedModel:
    name: str                 # the file stem: what --model takes
    path: Path                # the .keras file
    card: dict = field(compare=False, hash=False)  # its card (the .json beside it)
    default: bool = False     # the model a scan uses when none is named

    @property
    def card_name(self) -> str:
        name = self.card.get("name")
        return name if isinstance(name, str) else ""

    @property
    def summary(self) -> dict:
        """The card's headline figures, label -> number, in the card's order ({} if none)."""
        s = self.card.get("summary")
        return dict(s) if isinstance(s, dict) else {}

    @property
    def cost(self) -> dict:
        """The card's measured speed: faces_per_s, runtime, machine ({} if not measured)."""
        c = self.card.get("cost")
        return dict(c) if isinstance(c, dict) else {}

    @property
    def size(self) -> int:
        """The model file's size in bytes."""
        return self.path.stat().st_size

    def as_dict(self) -> dict:
        return {"name": self.name, "default": self.default, "path": str(self.path),
                "card_name": self.card_name, "arch": self.card.get("arch", "unknown"),
                "bytes": self.size, "summary": self.summary, "cost": self.cost or None}


def models_folder() -> Path:
    """The folder the shipped models are in: the installed package's, else the checkout's."""
    for folder in (PACKAGE_MODELS, REPO_MODELS):
        if (folder / DEFAULT_MODEL_NAME).is_file():
            return folder
    return PACKAGE_MODELS if PACKAGE_MODELS.is_dir() else REPO_MODELS


def shipped_models(folder: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every model in `folder` (default: `models_folder()`) that has a card: the default first,
    then by name. A card that cannot be read is left out, with a warning."""
    folder = Path(folder) if folder is not None else models_folder()
    default_stem = Path(DEFAULT_MODEL_NAME).stem
    found = []
    try:
        files = sorted(p for p in folder.glob("*.keras") if p.is_file())
    except OSError:
        return []
    for path in files:
        if not path.with_suffix(".json").is_file():
            continue
        try:
            card = read_card(path)
        except ModelError as e:
            log.warning("shipped model %s left out: %s", path.name, e)
            continue
        found.append(ShippedModel(path.stem, path, card, path.stem == default_stem))
    return sorted(found, key=lambda m: (not m.default, m.name))


def _named(models: list[ShippedModel]) -> str:
    return ", ".join(m.name + (f" (also {m.card_name})" if m.card_name and m.card_name != m.name
                               else "") for m in models) or "none"


def resolve_model(value: str | os.PathLike | None = None,
                  folder: str | os.PathLike | None = None) -> Path:
    """The model file `value` names: an existing file (a path, used as is); else a shipped
    model's name (its file stem, or its card's "name"); None: the default model. Raises
    ModelError for a path to a model file that is not there (a value ending in .keras, .h5 or
    .hdf5) and UnknownModel for anything else, naming the shipped models."""
    if value is None:
        if folder is None:
            return default_model_path()
        value = Path(DEFAULT_MODEL_NAME).stem
    text = os.fspath(value)
    if text and os.path.exists(text) and not os.path.isdir(text):
        return Path(text)
    models = shipped_models(folder)
    for match in (lambda m: m.name == text, lambda m: m.card_name == text):
        hit = next((m for m in models if match(m)), None)
        if hit is not None:
            return hit.path
    if os.path.isdir(text):  # a folder given as the model: load_model says so
        return Path(text)
    if text.lower().endswith(MODEL_SUFFIXES):
        raise ModelError(f"model file not found: {text}")
    raise UnknownModel(f"unknown model {text!r}: no such file, and no shipped model has that "
                       f"name (shipped: {_named(models)})")
