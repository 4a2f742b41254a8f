"""The heat maps of the visual report, computed where the model is and handed to the page.

The page (`html_report.render`) only shows what it is given; the scan (`run.scan_reports`, with
the model it scored with) and `screener report` (`html_report.rebuild`, with `--model` or the
scan's model file) hand it `explain`, a function of the detailed videos' thumbnails that
returns, for each key crop, the Grad-CAM heat map and the feature maps of each conv block
(`html_parts.heat`, from `explain.Explainer`), and a line saying why there are none. Maps are
kept in the state's heat cache under the model's SHA-256 and the face's bytes, so only what the
cache lacks loads the model (and TensorFlow).
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import partial
from pathlib import Path

import numpy as np

from . import html_parts as parts
from .media import VideoMedia, decode_jpeg

log = logging.getLogger(__name__)


def explainer(model=None, meta: dict | None = None, heat_cache=None,
              model_sha: str | None = None):
    """The `explain` the page is given: `model` a Keras model or a model file (None: meta's
    model path, when that file is there with the same SHA-256); `heat_cache` a
    `state.HeatCache`, under `model_sha` (found by itself for a file or meta's model)."""
    return partial(explain, model=model, meta=meta or {}, heat_cache=heat_cache,
                   model_sha=model_sha)


def explain(got: dict[int, VideoMedia], *, model=None, meta: dict, heat_cache=None,
            model_sha: str | None = None) -> tuple[dict[int, dict], str]:
    """Heat maps of the key crops of `got` (thumbnails by result index): {index: heat}, and
    why some are missing ("" when none is)."""
    with_crop = [i for i in got if got[i] is not None and got[i].key_crop is not None]
    sha = (model_sha or sha_of_model(model, meta)) if heat_cache is not None else None
    keys = {i: heat_key(sha, got[i].key_crop.jpeg) for i in with_crop} if sha else {}
    cached = heat_cache.get(keys.values()) if keys else {}
    heats = {i: cached[k] for i, k in keys.items() if k in cached}
    todo, why_not = [i for i in with_crop if i not in heats], ""
    if todo:  # only what the cache lacks loads the model (and TensorFlow)
        ex, why_not = _explainer(model, meta)
        if ex is not None:
            try:
                crops = np.stack([decode_jpeg(got[i].key_crop.jpeg) for i in todo])
                for i, c, e in zip(todo, crops, ex.explain_many(crops)):
                    heats[i] = parts.heat(c, e)
            except Exception as exc:  # the heat maps are lost, not the report
                log.warning("no heat maps: %s", exc)
                why_not = f"no heat maps: {exc}"
    if keys:
        heat_cache.keep({keys[i]: heats[i] for i in keys if i in heats})
    return heats, why_not


# Part of every heat-map key: bump it when heat()'s output changes, so kept maps are redone.
HEAT_VERSION = 1


def heat_key(model_sha256: str, face_bytes: bytes) -> str:
    return f"{HEAT_VERSION}:{model_sha256}:{hashlib.sha256(face_bytes).hexdigest()}"


def sha_of_model(model, meta: dict) -> str | None:
    """SHA-256 of the model the heat maps come from; None when it cannot be named (a model
    object in hand), and then nothing is cached."""
    if model is None:
        return (meta.get("model") or {}).get("sha256") or None
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        from .scoring import file_sha256
        return file_sha256(Path(model))
    return None


def _explainer(model, meta: dict):
    """(Explainer or None, why not): from a Keras model, a model file, or meta's model path."""
    try:
        from .explain import Explainer, ExplainUnavailable
        if model is None:
            m = meta.get("model") or {}
            path = m.get("path")
            if not path or not Path(path).is_file():
                return None, ("heat maps need the model: pass --model (the scan's model file "
                              f"{path or '(unknown)'} is not there)")
            from .scoring import file_sha256
            if m.get("sha256") and file_sha256(Path(path)) != m["sha256"]:
                return None, (f"heat maps need the scan's model: {path} has changed since the "
                              "scan; pass --model")
            model = path
        if isinstance(model, (str, os.PathLike)):
            from .scoring import load_model
            model = load_model(model).model
        return Explainer(model), ""
    except ExplainUnavailable as e:
        return None, f"no heat maps: {e}"
    except Exception as e:  # a model that cannot load costs the heat maps, not the report
        log.warning("no heat maps: %s", e)
        return None, f"no heat maps: {e}"
