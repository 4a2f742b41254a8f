"""training.spectrum: a frequency branch trained on cached features, fused with a MesoNet."""
import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
keras = pytest.importorskip("keras")

from screener import nets  # noqa: E402
from screener.scoring import load_model  # noqa: E402
from training import spectrum  # noqa: E402


def _faces(root, n, seed):
    """`real`: full-band texture; `df`: the same kind of texture made at half size and enlarged,
    so it lacks the top of the spectrum (what upsampling leaves), with the same mean and range."""
    rng = np.random.default_rng(seed)
    for label in ("real", "df"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(n):
            if label == "real":
                img = rng.integers(60, 200, (256, 256, 3)).astype(np.uint8)
            else:
                small = rng.integers(60, 200, (128, 128, 3)).astype(np.uint8)
                img = cv2.resize(small, (256, 256), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(folder / f"{label}{i:03d}.png"), img)


def test_the_branch_learns_the_spectrum_and_keeps_the_base_mesonet(tmp_path, monkeypatch):
    # No augmentation: a JPEG round trip or blur would blur the very difference the test plants.
    from training.augment import Augment
    monkeypatch.setattr(spectrum, "scan_augment", lambda: Augment(0, 0, 0, 0, hflip=False))
    _faces(tmp_path / "src", 48, 0)
    keras.utils.set_random_seed(0)
    base = nets.build("meso4", name="base")
    base.save(tmp_path / "base.keras")
    run = tmp_path / "run"
    assert spectrum.main(["--base", str(tmp_path / "base.keras"),
                          "--source", f"toy={tmp_path / 'src'}", "--cache", str(tmp_path / "cache"),
                          "--run", str(run), "--epochs", "30"]) == 0
    report = json.loads((run / "spectrum.json").read_text())
    # The base is an untrained MesoNet; the branch alone separates the two kinds on the part
    # that the head never saw, and the fusion leans on it.
    assert report["fusion_part_auc"]["spectrum"]["toy"] > 0.95
    assert report["fusion_part_auc"]["fused"]["toy"] > 0.95
    assert report["fusion"]["spectrum_weight"] > abs(report["fusion"]["meso_weight"])
    assert report["head_images"] + report["fusion_images"] == sum(report["images"].values())

    fused = load_model(run / "model.keras", runtime="keras")  # safe mode, with its card
    assert fused.card.name == "run" and fused.card.threshold == 0.5
    assert fused.card.extra["frequency_branch"]["fusion"] == report["fusion"]
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3, 256, 256, 3)).astype(np.uint8)
    # The MesoNet part is the base's, weight for weight: its logit is the base's.
    logit = keras.Model(fused.model.input, fused.model.get_layer("meso_logit").output)
    p_base = np.asarray(base.predict_on_batch(x)).reshape(-1)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(logit.predict_on_batch(x)).reshape(-1))),
                               p_base, atol=1e-5)
    # And P(fake) is the fitted unit over the two logits.
    spec = keras.Model(fused.model.input, fused.model.get_layer("spectrum_logit").output)
    f = report["fusion"]
    z = (f["meso_weight"] * np.asarray(logit.predict_on_batch(x)).reshape(-1)
         + f["spectrum_weight"] * np.asarray(spec.predict_on_batch(x)).reshape(-1) + f["bias"])
    np.testing.assert_allclose(fused.predict(x), 1 / (1 + np.exp(-z)), atol=1e-5)

    # A second run with the same images reads the cache instead of the images.
    for p in (tmp_path / "src").rglob("*.png"):
        p.write_bytes(b"")  # would be unreadable now
    assert spectrum.main(["--base", str(tmp_path / "base.keras"),
                          "--source", f"toy={tmp_path / 'src'}", "--cache", str(tmp_path / "cache"),
                          "--run", str(tmp_path / "run2"), "--epochs", "2"]) == 0
    assert json.loads((tmp_path / "run2" / "spectrum.json").read_text())["images"] == report["images"]


def test_the_fitting_part_is_split_by_group():
    groups = np.array([f"g{i // 3}" for i in range(3000)])  # 1,000 groups of three
    fit = spectrum.fit_part(groups, 1)
    for g in np.unique(groups)[:50]:
        assert len(set(fit[groups == g])) == 1  # a group is on one side
    assert 0.75 < fit.mean() < 0.85
    # Each source weighs the same, split evenly between its classes, however many images.
    w = spectrum.balance(np.array(["a"] * 90 + ["b"] * 10), np.array([0] * 80 + [1] * 10 + [0, 1] * 5))
    cells = [w[:80].sum(), w[80:90].sum(), w[90::2].sum(), w[91::2].sum()]
    np.testing.assert_allclose(cells, [25.0] * 4)
