"""screener.scoring: model files of every supported kind load safely and score P(fake)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_legacy_h5
from screener import nets
from screener.errors import ModelError
from screener.scoring import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
AFCHAR = SHARED / "anchors" / "mesonet-afchar"
needs_shared = pytest.mark.skipif(not AFCHAR.is_dir(), reason="needs ../shared (MesoNet anchors)")


@pytest.mark.slow
def test_keras_roundtrip_with_card(tmp_path):
    m = nets.build("meso4")
    m.save(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(json.dumps({"name": "tiny", "threshold": 0.7, "arch": "meso4"}))
    s = load_model(tmp_path / "m.keras")
    assert s.card.name == "tiny" and s.card.threshold == 0.7 and len(s.card.sha256) == 64
    x = np.random.default_rng(0).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    assert np.allclose(s.predict(x), np.asarray(m.predict_on_batch(x)).reshape(-1), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("arch", nets.ARCHS)
def test_legacy_weights_load_flipped_to_p_fake(tmp_path, arch):
    m = nets.build(arch)
    path = tmp_path / f"{arch}.h5"
    write_legacy_h5(m, path)
    s = load_model(path)
    assert s.card.arch == arch and s.card.threshold == 0.5 and s.card.name == arch
    x = np.random.default_rng(1).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    assert np.allclose(s.predict(x), np.asarray(m.predict_on_batch(x)).reshape(-1), atol=1e-5)


def test_legacy_file_with_lambda_is_refused(tmp_path):
    path = tmp_path / "evil.hdf5"
    write_legacy_h5(nets.build("meso4"), path, ["InputLayer", "Lambda", "Conv2D", "Dense"])
    with pytest.raises(ModelError, match="Lambda"):
        load_model(path)


def test_bad_files_raise_model_error(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    (tmp_path / "m.onnx").write_bytes(b"")
    for name in ("junk.h5", "junk.keras", "m.onnx", "missing.keras"):
        with pytest.raises(ModelError):
            load_model(tmp_path / name)


def _test_images():
    out = {}
    for cls in ("df", "real"):
        for p in sorted((AFCHAR / "test_images" / cls).iterdir()):
            img = Image.open(p).convert("RGB").resize((256, 256), Image.NEAREST)
            out[(cls, p.name)] = np.asarray(img)
    return out


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("weights", ["weights/Meso4_DF.h5", "weights/MesoInception_DF.h5"])
def test_published_weights_on_sample_images(weights):
    imgs = _test_images()
    p = load_model(AFCHAR / weights).predict(np.stack(list(imgs.values())))
    for (cls, name), score in zip(imgs, p):
        assert (score > 0.8) if cls == "df" else (score < 0.2), (name, score)


@needs_shared
@pytest.mark.slow
def test_student_full_models_on_sample_images():
    imgs = _test_images()
    folder = SHARED / "anchors" / "mesonet-malayagr" / "trained_models"
    for path in sorted(folder.glob("*.hdf5")):
        p = load_model(path).predict(np.stack(list(imgs.values())))
        for (cls, name), score in zip(imgs, p):
            assert (score > 0.8) if cls == "df" else (score < 0.2), (path.name, name, score)


@pytest.mark.parametrize("card,words", [
    ({"name": "m", "threshold": "abc"}, "threshold 'abc' is not a number from 0 to 1"),
    ({"name": "m", "threshold": 5}, "threshold 5 is not a number from 0 to 1"),
    ({"name": "m", "threshold": -1}, "threshold -1 is not a number"),
    ({"name": "m", "threshold": "NaN"}, "threshold 'NaN' is not a number"),
    ({"name": "m", "threshold": True}, "threshold True is not a number"),
    ([0.5], "is not a JSON object"),
    ({"name": ["m"]}, "name ['m'] is not a text"),
    ({"name": "m", "limits": "none"}, "limits 'none' is not a list"),
], ids=["text", "above-1", "negative", "nan", "bool", "a-list", "name-a-list", "limits-text"])
def test_a_card_whose_threshold_or_fields_are_wrong_is_refused(tiny_model, tmp_path, card,
                                                               words):
    """A threshold of -1 made every video FAKE, NaN every one REAL; "abc" or a card that is a
    list was a traceback. Each is a ModelError naming the card (the CLI's exit 3)."""
    model = tmp_path / "m.keras"
    model.write_bytes(tiny_model.read_bytes())
    model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_model(model)


def test_a_bad_card_is_exit_3_with_one_line(tiny_model, face_video, tmp_path):
    from helpers import screener_cli
    model = tmp_path / "m.keras"
    model.write_bytes(tiny_model.read_bytes())
    model.with_suffix(".json").write_text(json.dumps({"name": "m", "threshold": float("nan")}))
    r = screener_cli("scan", face_video, "--model", model, "--out", tmp_path / "r.csv",
                     check=False)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"model card {model.with_suffix('.json')}: threshold nan is not a number" in r.stderr
