"""training.metrics and training.evaluate: figures checked against hand-computed values."""
import json

import numpy as np
import pytest
from PIL import Image

from screener import nets
from training import evaluate, metrics


def test_binary_report_by_hand():
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.05]
    r = metrics.binary_report(y, s, 0.5)
    # predictions: 1 1 0 | 1 0 0 0 -> TP 2, FN 1, FP 1, TN 3
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["confusion_matrix"]["matrix"] == [[2, 1], [1, 3]]
    assert r["per_class"]["fake"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["fake"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["real"]["recall"] == pytest.approx(3 / 4)
    assert r["per_class"]["real"]["f1"] == pytest.approx(3 / 4)
    # AUC: of the 12 (fake, real) pairs, the fake scores higher in 4 + 3 + 2 = 9.
    assert r["roc_auc"] == pytest.approx(9 / 12)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_eer_by_hand():
    assert metrics.eer([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)
    assert metrics.eer([1, 0], [0.1, 0.9]) == pytest.approx(1.0)
    # One fake below one real among 2 + 2: FPR = FNR = 0.5 at the crossing.
    assert metrics.eer([1, 1, 0, 0], [0.9, 0.3, 0.6, 0.1]) == pytest.approx(0.5)
    assert metrics.eer([1, 1], [0.2, 0.3]) is None


def test_video_scores_average_frames():
    ids, y, s = metrics.video_scores(["a", "a", "b", None], [1, 1, 0, 0], [0.2, 0.6, 0.3, 0.9])
    assert ids == ["a", "b"] and y.tolist() == [1, 0] and s == pytest.approx([0.4, 0.3])
    with pytest.raises(ValueError):
        metrics.video_scores(["a", "a"], [1, 0], [0.1, 0.2])


@pytest.mark.slow
def test_evaluate_command_writes_reports(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("df", "real"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for v in range(2):
            for f in range(2):
                img = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / "val" / cls / f"{cls}{v}_{f}.png")
    (tmp_path / "val" / "df" / "bad_9.png").write_bytes(b"garbage")
    nets.build("meso4").save(tmp_path / "m.keras")
    out = tmp_path / "out"
    rc = evaluate.main(["--model", str(tmp_path / "m.keras"), "--data", str(tmp_path / "val"),
                        "--out", str(out), "--card-key", "val"])
    assert rc == 0
    r = json.loads((out / "metrics.json").read_text())
    assert r["image"]["n"] == 8 and r["skipped"] == 1 and r["video"]["n"] == 4
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["metrics"]["val"]["image"]["accuracy"] == r["image"]["accuracy"]
    for f in ("metrics.md", "roc.png", "scores.csv"):
        assert (out / f).is_file()
    assert evaluate.main(["--model", str(tmp_path / "m.keras"), "--data", str(tmp_path / "nope")]) == 2
