"""The benchmarks' own inputs, through screener's public modules: a face placed in a synthetic
clip, and a real Meso-4 model file whose output is a constant (verdicts known in advance).
Never imports tests/ (tests/helpers.py builds on this one)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

W, H = 320, 240  # the clips' frame size


def one_face(name="collins", x=None, y=None, face_px=90):
    """A face of `face_px` pixels, centred unless placed at (x, y)."""
    from screener.synth import Placement
    side = round(face_px * 2.2)
    x = (W - side) // 2 if x is None else x
    y = (H - side) // 2 if y is None else y
    return Placement(name, x, y, face_px)


def constant_model(folder: Path, p_fake: float = 0.7, name: str = "bench-constant",
                   file_name: str = "constant.keras") -> Path:
    """A Meso-4 .keras file that always says `p_fake` (last layer: zero weights, the bias
    logit(p_fake)), with its card beside it."""
    from screener import nets
    model = nets.build("meso4")
    last = model.get_layer("p_fake")
    kernel, bias = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.full_like(bias, np.log(p_fake / (1 - p_fake)))])
    path = Path(folder) / file_name
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({"name": name, "threshold": 0.5}))
    return path
