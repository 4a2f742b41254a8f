"""The inference stage alone on an accelerator: Keras 3 under JAX, uint8 batches (issue 7's GPU check).

    KERAS_BACKEND=jax python bench/gpu_inference.py [--batch 1024] [--seconds 20] [--out FILE]

Loads the model exactly as the scan does (`screener.scoring.load_model`: safe mode, its card)
and times `Scorer.predict`, the call the engines make, on uint8 crops of (N, 256, 256, 3):
batches copied from host memory each time, as in a scan. Also checks that the backend computes
the same function: P(fake) of 16 seeded random crops against `bench/results/gpu_reference.json`
(written on a CPU with TensorFlow by `--write-reference`).

The device machine has JAX but no Keras: carry the wheels (see /work/.library/device/README.md):
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_17_x86_64 -d .whl keras==3.15.0 namex optree
then, there:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site KERAS_BACKEND=jax python3 bench/gpu_inference.py --out $OUT/gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT / "bench/results/gpu_reference.json"


def reference_crops(n: int = 16) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=20, help="time spent measuring")
    ap.add_argument("--write-reference", action="store_true",
                    help="write the reference scores with this backend (on a CPU) and stop")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    import keras

    from screener.device import framework_sees_accelerator
    from screener.scoring import load_model
    scorer = load_model(a.model)
    ref = reference_crops()
    if a.write_reference:
        scores = scorer.predict(ref).astype(float).round(6).tolist()
        REFERENCE.write_text(json.dumps({"model_sha256": scorer.card.sha256,
                                         "backend": keras.backend.backend(),
                                         "p_fake": scores}, indent=1))
        print(f"wrote {REFERENCE}")
        return

    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "backend": keras.backend.backend(), "accelerator": framework_sees_accelerator(),
           "model": scorer.card.name, "batch": a.batch}
    if keras.backend.backend() == "jax":
        import jax
        res["devices"] = [str(d) for d in jax.devices()]
    if REFERENCE.is_file():
        want = json.loads(REFERENCE.read_text())
        if want["model_sha256"] == scorer.card.sha256:
            got = scorer.predict(ref)
            res["max_abs_diff_vs_cpu_reference"] = float(np.abs(got - want["p_fake"]).max())

    x = np.random.default_rng(0).integers(0, 256, (a.batch, 256, 256, 3), dtype=np.uint8)
    t = time.perf_counter()
    scorer.predict(x, batch_size=a.batch)  # compile
    res["first_call_s"] = round(time.perf_counter() - t, 2)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < a.seconds:
        scorer.predict(x, batch_size=a.batch)
        n += a.batch
    res["faces_per_s"] = round(n / (time.perf_counter() - t))
    res["goal_faces_per_s"] = 20000
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
