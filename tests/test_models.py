"""Shipped models by name: the listing (`shipped.shipped_models`, `screener models`), and
`--model NAME` resolving to the shipped file (`shipped.resolve_model`), never to a path made
from the name. The shipped model may be replaced: its names and figures are read from its card."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from screener.cli import main
from screener.errors import ModelError, UnknownModel
from screener.scoring import DEFAULT_MODEL_NAME, default_model_path, read_card
from screener.shipped import ShippedModel, resolve_model, shipped_models

DEFAULT = default_model_path()
STEM = Path(DEFAULT_MODEL_NAME).stem
CARD = read_card(DEFAULT)


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def test_the_listing_has_the_default_first_with_its_summary_and_cost():
    models = shipped_models()
    first = models[0]
    assert isinstance(first, ShippedModel)
    assert first.default and first.name == STEM and first.path == DEFAULT
    assert [m.default for m in models].count(True) == 1
    assert first.card_name == CARD["name"]
    assert first.summary and all(isinstance(v, (int, float)) for v in first.summary.values())
    assert list(first.summary) == list(CARD["summary"])  # the card's order
    assert first.cost["faces_per_s"] > 0


def test_the_card_summary_is_its_own_benchmark():
    bench = CARD["metrics"]["benchmark"]
    assert CARD["summary"]["DFDC test AUC"] == bench["DFDC test groups"]["roc_auc"]
    assert CARD["summary"]["DF validation AUC"] == bench["DF validation (aligned crops)"]["roc_auc"]


def test_screener_models_shows_the_default_and_its_figures():
    r = cli("models")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"{STEM}  (default)"
    assert any(CARD["name"] in ln for ln in lines)
    for label, value in CARD["summary"].items():
        assert any(ln.strip().startswith(f"{label}:") and ln.endswith(f"{value:.3f}")
                   for ln in lines), label
    cost = CARD["cost"]
    assert any(ln.strip().startswith("cost:") and f"{cost['faces_per_s']:g} faces/s" in ln
               and f"{cost['ms_per_face']:g} ms a face" in ln for ln in lines)


def test_screener_models_json():
    r = cli("models", "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.output)
    assert listed[0]["name"] == STEM and listed[0]["default"] is True
    assert listed[0]["path"] == str(DEFAULT) and listed[0]["card_name"] == CARD["name"]
    assert listed[0]["summary"] == CARD["summary"] and listed[0]["cost"] == CARD["cost"]


def test_a_shipped_name_or_its_card_name_resolves_to_the_file(tmp_path, monkeypatch):
    assert resolve_model(STEM) == DEFAULT
    assert resolve_model(CARD["name"]) == DEFAULT
    assert resolve_model(None) == DEFAULT
    assert resolve_model(DEFAULT) == DEFAULT  # a path: as is
    monkeypatch.chdir(tmp_path)
    (tmp_path / STEM).write_bytes(b"x")  # a file of that name here is a path first
    assert resolve_model(STEM) == Path(STEM)


@pytest.mark.parametrize("name", ["nope", "../x", "../trained_models/screener-meso",
                                  "/etc/no-such-model", "screener-meso/..", ""])
def test_an_unknown_name_names_the_shipped_models(name):
    with pytest.raises(UnknownModel) as e:
        resolve_model(name)
    assert STEM in str(e.value) and "\n" not in str(e.value)


def test_a_missing_model_file_is_still_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(tmp_path / "none.keras")


@pytest.mark.parametrize("name", ["nope", "../../etc/passwd-ish"])
def test_an_unknown_name_is_one_line_and_a_usage_error_and_writes_nothing(face_video, tmp_path,
                                                                          name):
    out = tmp_path / "x.csv"
    r = cli("scan", face_video.parent, "--model", name, "--out", out)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("screener: error: unknown model") and STEM in r.stderr
    assert list(tmp_path.iterdir()) == []
    r = cli("report", "--html", tmp_path / "r.html", "--from", face_video, "--model", name)
    assert r.exit_code == 2 and "unknown model" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_shipped_name_scores_as_its_path(face_video, tmp_path):
    scores = []
    for i, model in enumerate((STEM, DEFAULT)):
        out = tmp_path / f"r{i}.csv"
        r = cli("scan", face_video, "--model", model, "--frames", 2, "--workers", 0, "--out", out,
                "--no-state", "-q")
        assert r.exit_code in (0, 1), r.stderr
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows[0]["status"] == "ok"
        scores.append((rows[0]["fake_score"], rows[0]["model"]))
    assert scores[0] == scores[1] and scores[0][0] != ""


def test_the_api_takes_a_name(face_video):
    import screener
    by_name = screener.scan([face_video], model=CARD["name"], frames=2, workers=0)
    by_path = screener.scan([face_video], model=str(DEFAULT), frames=2, workers=0)
    assert [r.fake_score for r in by_name] == [r.fake_score for r in by_path]


def test_a_second_model_in_another_folder_lists_and_resolves(tmp_path):
    shutil.copy(DEFAULT, tmp_path / DEFAULT.name)
    shutil.copy(DEFAULT.with_suffix(".json"), tmp_path / f"{STEM}.json")
    other = tmp_path / "other-model.keras"
    shutil.copy(DEFAULT, other)
    (tmp_path / "other-model.json").write_text(json.dumps({"name": "other-v2", "arch": "meso4"}))
    shutil.copy(DEFAULT, tmp_path / "no-card.keras")  # no card: not shipped
    models = shipped_models(tmp_path)
    assert [(m.name, m.default) for m in models] == [(STEM, True), ("other-model", False)]
    assert models[1].summary == {} and models[1].cost == {} and models[1].card_name == "other-v2"
    assert resolve_model("other-model", tmp_path) == other
    assert resolve_model("other-v2", tmp_path) == other
    assert resolve_model(None, tmp_path) == tmp_path / DEFAULT.name
    with pytest.raises(UnknownModel, match="other-model"):
        resolve_model("no-card", tmp_path)


def test_a_model_without_figures_is_listed_sensibly(tmp_path):
    from screener.cli import _model_lines
    shutil.copy(DEFAULT, tmp_path / "bare.keras")
    (tmp_path / "bare.json").write_text("{}")
    lines = _model_lines(shipped_models(tmp_path)[0])
    assert lines[0] == "bare"
    said = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in lines[1:]}
    assert said["figures"] == "none in its card" and said["cost"] == "not measured"
    assert said["card name"] == "(none)" and said["arch"] == "unknown"


def test_every_shipped_model_stays_small_and_carries_its_figures():
    # The bound for the default MesoNet; the wheel carries every shipped model.
    for m in shipped_models():
        assert m.size < 2_000_000, m.name
        assert m.summary and m.cost.get("faces_per_s"), m.name
