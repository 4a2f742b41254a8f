"""training.benchmark and training.align on a generated copy of ../shared's layout (faces from
the bundled public-domain photos, clips made with PyAV): every set is read, aligned and scored,
and the clip verdicts are the scan's own."""
import csv
import json

import cv2
import numpy as np
import pytest

from screener import synth
from training import align, benchmark, sources

pytestmark = pytest.mark.slow


def _face(rng, name):
    """A face crop like a dataset's: a portrait, shifted and scaled a little, noisy."""
    img = synth.portrait(name)
    s = rng.uniform(0.9, 1.1)
    m = np.float32([[s, 0, rng.uniform(-8, 8)], [0, s, rng.uniform(-8, 8)]])
    img = cv2.warpAffine(img, m, img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _save(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[:, :, ::-1])


def _table(path, columns, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    rng = np.random.default_rng(0)
    data = root / "data"
    for split in ("train", "validation"):
        for cls, name in (("df", "hopper"), ("real", "collins")):
            for v in range(2):
                for f in range(2):
                    _save(data / "mesonet-df" / split / cls / f"{cls}{v}_{f}.jpg", _face(rng, name))
    # DFDC-like: group names picked so that two fall in the test share
    groups, k = [], 0
    while sum(sources.split_of(g) == "test" for g in groups) < 2 or len(groups) < 6:
        g = f"src{k}.mp4"
        k += 1
        if sources.split_of(g) == "test" or len(groups) < 4:
            groups.append(g)
    rows = []
    for g in groups:
        for label, name in (("real", "collins"), ("df", "hopper")):
            f = f"{label}/{g[:-4]}.jpg"
            _save(data / "wild-faces/dfdc" / f, _face(rng, name))
            rows.append({"file": f, "label": label, "video": g, "original": "", "group": g})
    _table(data / "wild-faces/dfdc/metadata.csv", ["file", "label", "video", "original", "group"], rows)
    rows = []
    for method in ("youtube", "deepfakes", "faceswap"):
        for i in range(3):
            f = f"{method}/test_roi_{i}.jpg"
            _save(data / "wild-faces/ffpp" / f, _face(rng, "collins" if method == "youtube" else "hopper"))
            rows.append({"file": f, "label": "real" if method == "youtube" else "df",
                         "method": method, "source_split": "test"})
    _table(data / "wild-faces/ffpp/metadata.csv", ["file", "label", "method", "source_split"], rows)
    for folder, n in (("wild-faces/celebdf-hard", 2), ("videos-dev", 1)):
        d = data / folder
        d.mkdir(parents=True)
        rows = []
        for i in range(n):
            for label, name in (("real", "collins"), ("df", "hopper")):
                clip = f"{label}{i}.mp4"
                synth.face_clip(d / clip, 320, 240, 8, faces=[synth.Placement(name, 60, 20, 90)], seed=i)
                rows.append({"path": clip, "label": label})
        rows.append({"path": "nobody.mp4", "label": "unknown"})  # unlabelled: left out
        _table(d / "labels.csv", ["path", "label"], rows)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import keras

    from screener import nets
    keras.utils.set_random_seed(4)
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    nets.build("meso4", window=nets.FACE_WINDOW).save(path)
    return path


def test_every_set_is_scored_and_clip_verdicts_are_the_scans(shared, model, tmp_path):
    import screener
    out = tmp_path / "bench"
    assert benchmark.main(["--model", str(model), "--shared", str(shared), "--work",
                           str(tmp_path / "work"), "--out", str(out)]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    fig = report["models"][str(model)]["figures"]
    assert fig["df-val"]["n"] == 8 and fig["df-val"]["video"]["n"] == 4
    assert fig["dfdc-test"]["n"] == 4  # two groups, a real and a fake each
    assert fig["ffpp-deepfakes"]["n"] == fig["ffpp-faceswap"]["n"] == 6 and fig["ffpp-all"]["n"] == 9
    assert fig["celebdf-hard"]["n"] == 4 and fig["videos-dev"]["n"] == 2
    assert set(fig["aggregations"]) == {"df-val videos", "celebdf-hard", "videos-dev"}
    assert set(fig["aggregations"]["celebdf-hard"]) == set(benchmark.AGGREGATIONS)
    md = (out / "benchmark.md").read_text()
    assert "FF++ deepfakes vs youtube" in md and "celebdf-hard" in md
    # the clip figures are what `screener scan` says of the same clips with the same model
    clips = fig["celebdf-hard"]["clips"]
    scanned = {r.path.rsplit("/", 1)[-1]: r for r in screener.scan(
        [shared / "data/wild-faces/celebdf-hard" / c["clip"] for c in clips], model=model,
        workers=0)}
    for c in clips:
        assert scanned[c["clip"]].verdict == c["verdict"]
        assert scanned[c["clip"]].fake_score == pytest.approx(c["p_fake"], abs=1e-4)
    # the aligned copies carry faces.csv with each face's keypoints, and the tables
    faces = align.read_faces(tmp_path / "work" / "dfdc-aligned")
    assert len(faces) == 12 and all(r["keypoints"].shape == (6, 2) for r in faces.values()
                                    if r["outcome"] == "aligned")
    assert (tmp_path / "work" / "dfdc-aligned" / "metadata.csv").is_file()


def test_aggregations():
    p = np.array([0.1, 0.2, 0.3, 0.9])
    assert benchmark.aggregate(p, "mean", 0.5) == pytest.approx(0.375)
    assert benchmark.aggregate(p, "median", 0.5) == pytest.approx(0.25)
    assert benchmark.aggregate(p, "top-quarter mean", 0.5) == pytest.approx(0.9)
    assert benchmark.aggregate(p, "share at or above threshold", 0.3) == pytest.approx(0.5)
