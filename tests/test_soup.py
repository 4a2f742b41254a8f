"""training.soup: weight averaging of same-architecture models (no ../shared needed)."""
import json

import keras
import numpy as np

from screener import nets
from screener.scoring import load_model
from training import data as td
from training import soup
from helpers import make_dataset


def _saved(tmp_path, name, arch="meso4", seed=0):
    keras.utils.set_random_seed(seed)
    model = nets.build(arch, name="tiny")
    # Random BatchNorm statistics too, so the test sees them averaged like every other weight.
    model.set_weights([np.random.default_rng(seed).normal(0.5, 0.1, w.shape).astype(w.dtype)
                       if "batch" in v.path else w
                       for w, v in zip(model.get_weights(), model.weights)])
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path, model


def test_soup_is_the_mean_of_the_weights_and_a_soup_of_one_model_predicts_the_same(tmp_path):
    a_path, a = _saved(tmp_path, "a", seed=1)
    b_path, b = _saved(tmp_path, "b", seed=2)
    model, _ = soup.make_soup([a_path, b_path])
    for got, wa, wb in zip(model.get_weights(), a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(got, (wa.astype(np.float64) + wb) / 2, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(wa, wb) for wa, wb in zip(a.get_weights(), b.get_weights()))

    same, _ = soup.make_soup([a_path, a_path])
    x = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    np.testing.assert_allclose(same.predict_on_batch(x), a.predict_on_batch(x), atol=1e-6)


def test_cli_writes_a_loadable_soup_with_holdout_figures_and_threshold(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=12, videos=True)
    a_path, _ = _saved(tmp_path, "a", seed=1)
    b_path, _ = _saved(tmp_path, "b", seed=2)
    out = tmp_path / "out" / "soup.keras"
    rc = soup.main([str(a_path), str(b_path), "--out", str(out), "--data", str(data),
                    "--holdout", "0.34", "--pick-threshold", "--name", "mixed"])
    assert rc == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert [i["path"] for i in card["ingredients"]] == [str(a_path), str(b_path)]
    _, held = td.holdout_split(td.list_split(data, "train"), 0.34, 1234)  # train's carve
    assert card["holdout"]["images"] == len(held) < 24 and 0 <= card["holdout"]["roc_auc"] <= 1
    assert all("roc_auc" in i["holdout"] for i in card["ingredients"])
    assert card["threshold"] == card["threshold_choice"]["value"]
    scorer = load_model(out)
    assert scorer.card.name == "mixed" and scorer.card.threshold == card["threshold"]
    assert "soup" in capsys.readouterr().out


def test_other_architectures_or_one_model_are_refused_in_one_line(tmp_path, capsys):
    a_path, _ = _saved(tmp_path, "a", "meso4")
    i_path, _ = _saved(tmp_path, "i", "mesoinception4")
    out = tmp_path / "soup.keras"
    assert soup.main([str(a_path), str(i_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ingredient 2 has other layers" in err and len(err.strip().splitlines()) == 1
    assert soup.main([str(a_path), "--out", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert not out.exists()
