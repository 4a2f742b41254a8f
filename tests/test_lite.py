"""LiteRT runs the model on CPUs (screener.lite): the Keras model's scores, converted once per
model file and kept; a kept model scores in a fresh process without TensorFlow; a damaged kept
file, an unwritable cache or a conversion that disagrees falls back, never to another score."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from screener import lite
from screener.pipeline import crops_from_video
from screener.scoring import default_model_path, load_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not lite.available(), reason="ai-edge-litert is not installed")]


def inception_with_batchnorm_stats(path, seed=1):
    """A MesoInception-4 whose BatchNorm layers are far from identity (negative scales too), so
    the CPU twin's rewrites and the conversion are both exercised. Seeded: an untrained network
    scores every image within ~1e-3 of one value, and how far apart depends on its draw."""
    import keras
    from screener import nets
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = nets.build("mesoinception4")
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(-1.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 2, var.shape)])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def crops(face_video, two_face_video, detector):
    """Real aligned face crops from generated videos, and noise."""
    faces = [c.crop for v in (face_video, two_face_video)
             for c in crops_from_video(v, detector=detector).crops]
    noise = np.random.default_rng(5).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    return np.concatenate([np.stack(faces), noise])


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    return inception_with_batchnorm_stats(tmp_path_factory.mktemp("inception") / "inception.keras")


def keras_scores(path, crops):
    s = load_model(path, runtime="keras")
    p = s.predict(crops)
    assert s.runtime.startswith("keras")
    return p


@pytest.mark.parametrize("which", ["meso4", "meso4-window", "mesoinception4", "shipped"])
def test_litert_gives_the_keras_models_scores(which, crops, inception, tmp_path):
    if which.startswith("meso4"):
        import keras
        from screener import nets
        keras.utils.set_random_seed(0)
        path = tmp_path / f"{which}.keras"
        nets.build("meso4", window=nets.FACE_WINDOW if "window" in which else None).save(path)
    else:
        path = inception if which == "mesoinception4" else default_model_path()
    s = load_model(path)
    p = s.predict(crops)
    assert s.runtime == "litert"
    want = keras_scores(path, crops)
    assert p.shape == want.shape == (len(crops),)
    assert np.abs(p - want).max() < 1e-5
    # The crops' scores differ by far more than the tolerance: the comparison tests something.
    assert p.std() > 20 * 1e-5, p.std()


def test_a_kept_model_scores_in_a_fresh_process_without_tensorflow(crops, inception, tmp_path):
    np.save(tmp_path / "crops.npy", crops)
    code = ("import json, sys, numpy as np\n"
            "from screener.scoring import load_model\n"
            f"s = load_model({str(inception)!r})\n"
            "s.load_now()\n"
            f"p = s.predict(np.load({str(tmp_path / 'crops.npy')!r}))\n"
            "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules,"
            " 'runtime': s.runtime, 'p': p.tolist()}))")
    env_cache = {"SCREENER_CACHE_DIR": str(tmp_path / "cache")}

    def run():
        import os
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env_cache, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["runtime"] == second["runtime"] == "litert"
    assert first["tf"] and not second["tf"] and not second["keras"]  # converted once, then kept
    assert second["p"] == first["p"]
    assert np.abs(np.array(second["p"]) - keras_scores(inception, crops)).max() < 1e-5
    assert lite.cached_path(load_model(inception).card.sha256).name in \
        [p.name for p in (tmp_path / "cache" / "lite").iterdir()]


def test_a_damaged_kept_model_is_converted_again(crops, inception, tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENER_CACHE_DIR", str(tmp_path))
    s = load_model(inception)
    kept = lite.cached_path(s.card.sha256)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"not a flatbuffer" * 100)
    p = s.predict(crops)
    assert s.runtime == "litert"
    assert np.abs(p - keras_scores(inception, crops)).max() < 1e-5
    assert kept.read_bytes()[4:8] == b"TFL3"  # replaced by a real conversion


def test_an_unwritable_cache_still_scores(crops, inception, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("SCREENER_CACHE_DIR", str(blocker / "cache"))
    s = load_model(inception)
    p = s.predict(crops)
    assert s.runtime == "litert"
    assert np.abs(p - keras_scores(inception, crops)).max() < 1e-5
    assert blocker.read_text().startswith("the cache folder")


def test_a_conversion_that_disagrees_is_refused(crops, inception, tmp_path, monkeypatch):
    """A converter that produced another network (here: another model's weights) is caught by
    the check against Keras: the scan scores with Keras and keeps nothing."""
    monkeypatch.setenv("SCREENER_CACHE_DIR", str(tmp_path / "cache"))
    other = load_model(inception_with_batchnorm_stats(tmp_path / "other.keras", seed=2)).model
    real_convert = lite.convert
    monkeypatch.setattr(lite, "convert", lambda net: real_convert(other))
    s = load_model(inception)
    p = s.predict(crops)
    assert s.runtime.startswith("keras")
    assert np.abs(p - keras_scores(inception, crops)).max() < 1e-6
    assert not lite.cached_path(s.card.sha256).exists()


def test_faces_per_second_times_every_net_in_every_round():
    from screener import nets
    small = lite.LiteNet(lite.convert(nets.build("meso4")), threads=1)
    fused = lite.LiteNet(lite.convert(nets.build("meso4", spectrum=True)), threads=1)
    fps = lite.faces_per_second([small, fused], faces=16, rounds=2, batch=8)
    assert fps.shape == (2, 2) and np.all(fps > 0)
