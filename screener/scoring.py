"""Load a model file and score aligned face crops: uint8 (N, 256, 256, 3) in, P(fake) out.

A model is a Keras file plus its model card, a JSON file beside it (`<model>.json`) that says
what the model is, how it was trained, its threshold and its measured metrics. Model files are
user input: they load in Keras safe mode, so a file that carries code (a Lambda layer) is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

REPO_MODELS = Path(__file__).resolve().parents[1] / "trained_models"
DEFAULT_MODEL_NAME = "screener-meso4.keras"


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
    """The shipped default model: the checkout's trained_models/, else the installed copy."""
    import sys
    for folder in (REPO_MODELS, Path(sys.prefix) / "share" / "screener" / "trained_models"):
        if (folder / DEFAULT_MODEL_NAME).is_file():
            return folder / DEFAULT_MODEL_NAME
    raise ModelError(f"no default model found ({DEFAULT_MODEL_NAME} in {REPO_MODELS}); "
                     "pass --model PATH")


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

    def __init__(self, model, card: ModelCard):
        self.model = model
        self.card = card

    def predict(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.size == 0:
            return np.zeros((0,), np.float32)
        if crops.dtype != np.uint8 or crops.shape[1:] != (256, 256, 3):
            raise ValueError(f"crops must be uint8 (N, 256, 256, 3), got {crops.dtype} {crops.shape}")
        out = []
        for i in range(0, len(crops), batch_size):
            # predict_on_batch avoids predict()'s per-call dataset setup, which dominates at
            # the batch sizes a scan uses.
            p = self.model.predict_on_batch(crops[i:i + batch_size])
            out.append(np.asarray(p, np.float32).reshape(-1))
        return np.concatenate(out)


def load_model(path: str | Path | None = None, threshold: float | None = None) -> Scorer:
    """Load a model file (default: the shipped model) with its card. Raises ModelError."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    card = read_card(path)
    model = _load_keras(path)
    known = {"name", "threshold", "arch"}
    mc = ModelCard(
        name=card.get("name", path.stem),
        threshold=float(threshold if threshold is not None else card.get("threshold", 0.5)),
        arch=card.get("arch", "unknown"),
        sha256=file_sha256(path),
        path=str(path),
        metrics=card.get("metrics", {}),
        limits=card.get("limits", []),
        extra={k: v for k, v in card.items() if k not in known | {"metrics", "limits"}},
    )
    return Scorer(model, mc)


def _load_keras(path: Path):
    import keras
    if path.suffix != ".keras":
        raise ModelError(f"{path}: unknown model file type (expected .keras)")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad files; report one
        raise ModelError(f"cannot load model {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
