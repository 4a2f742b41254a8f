"""training.sources and training.mix: several datasets in one run, split by group, balanced
batches with pseudo-fakes; one epoch of training on generated data (no ../shared needed)."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from training import mix, sources, train
from training.data import FAKE, REAL


def make_grouped(root, groups=40, fakes_per_group=2, size=48, seed=0):
    """A DFDC-like layout: metadata.csv (file,label,group), a real per group and fakes made from
    it, which share its group. Fakes are brighter, so a model can learn something."""
    rng = np.random.default_rng(seed)
    rows = []
    for folder in ("real", "df"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for g in range(groups):
        for k in range(1 + fakes_per_group):
            label = "real" if k == 0 else "df"
            name = f"{label}/g{g:03d}_{k}.jpg"
            base = 60 if k == 0 else 170
            img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name)
            rows.append({"file": name, "label": label, "group": f"person{g}"})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "label", "group"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_groups_never_straddle_the_splits(tmp_path):
    root = make_grouped(tmp_path / "g", groups=200, fakes_per_group=1)
    sp = sources.splits(sources.Source.parse(f"g={root}"))
    assert sum(len(v) for v in sp.values()) == 400
    sides = {}
    for name, samples in sp.items():
        for s in samples:
            assert sides.setdefault(s.group, name) == name  # a person's real and fake together
    counts = {k: len({s.group for s in v}) for k, v in sp.items()}
    assert 10 <= counts["test"] <= 50 and 5 <= counts["select"] <= 40  # ~15% and ~10% of 200
    # the same split in every run, from the group's name alone
    again = sources.splits(sources.Source.parse(f"g={root}@3"))
    assert {k: [s.path for s in v] for k, v in again.items()} == \
        {k: [s.path for s in v] for k, v in sp.items()}


def test_aligned_png_copies_match_their_tables_jpg_names(tmp_path):
    root = make_grouped(tmp_path / "g", groups=6)
    for p in list(root.rglob("*.jpg")):
        Image.open(p).save(p.with_suffix(".png"))
        p.unlink()
    sp = sources.splits(sources.Source(name="g", root=root))
    assert sum(len(v) for v in sp.values()) == 18


def test_source_specs_and_layout_errors(tmp_path):
    s = sources.Source.parse("dfdc=/data/x@2.5")
    assert (s.name, str(s.root), s.weight) == ("dfdc", "/data/x", 2.5)
    for bad in ("nopath", "=x", "a=x@0", "a=x@heavy"):
        with pytest.raises(ValueError):
            sources.Source.parse(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.DatasetError, match="none of the known layouts"):
        sources.splits(sources.Source("e", tmp_path / "empty"))
    root = tmp_path / "bad"
    root.mkdir()
    (root / "metadata.csv").write_text("path,kind\nx.jpg,real\n")
    with pytest.raises(sources.DatasetError, match="needs columns file, label and group"):
        sources.splits(sources.Source("b", root))


def _pools(tmp_path, n_groups=30):
    a = sources.splits(sources.Source("a", make_grouped(tmp_path / "a", n_groups, seed=1)))
    b = sources.splits(sources.Source("b", make_grouped(tmp_path / "b", n_groups, seed=2)))
    return [mix.Pool(a["train"], tmp_path / "cache"), mix.Pool(b["train"], tmp_path / "cache")]


def test_batches_balance_sources_and_classes_and_label_pseudo_fakes_one(tmp_path):
    pools = _pools(tmp_path)
    stream = mix.MixedStream(pools, [3, 1], batch_size=64, sbi_share=0.5, seed=0)
    slots = [s for step in range(40) for s in stream.slots(0, step)]
    by_pool = np.bincount([s.pool for s in slots]) / len(slots)
    assert by_pool == pytest.approx([0.75, 0.25], abs=0.03)
    labels = np.array([FAKE if s.sbi else int(pools[s.pool].labels[s.index]) for s in slots])
    assert labels.mean() == pytest.approx(0.5, abs=0.03)
    blended = [s for s in slots if s.sbi]
    assert len(blended) / labels.sum() == pytest.approx(0.5, abs=0.05)
    assert all(pools[s.pool].labels[s.index] == REAL for s in blended)  # made from reals
    x, y, w = stream._batch(0, 3)
    expect = [FAKE if s.sbi else int(pools[s.pool].labels[s.index]) for s in stream.slots(0, 3)]
    assert x.shape == (64, 256, 256, 3) and list(y) == expect and (w == 1).all()
    # a resumed run sees the same batch
    again = mix.MixedStream(_pools(tmp_path), [3, 1], batch_size=64, sbi_share=0.5, seed=0)
    assert np.array_equal(again._batch(0, 3)[0], x)


def test_a_source_of_reals_only_needs_pseudo_fakes(tmp_path):
    pools = _pools(tmp_path)
    reals_only = mix.Pool([s for s in pools[0].samples if s.label == REAL], tmp_path / "cache")
    with pytest.raises(ValueError, match="fakes unless pseudo-fakes"):
        mix.MixedStream([reals_only], [1])
    stream = mix.MixedStream([reals_only], [1], batch_size=32, sbi_share=0.1)
    slots = [s for step in range(20) for s in stream.slots(0, step)]
    # every fake slot is a pseudo-fake, whatever the share: half the slots, not a tenth of half
    assert np.mean([s.sbi for s in slots]) == pytest.approx(0.5, abs=0.06)


@pytest.mark.slow
def test_one_epoch_with_pseudo_fakes_from_two_sources(tmp_path):
    a = make_grouped(tmp_path / "a", 40, seed=1)
    b = make_grouped(tmp_path / "b", 40, seed=2)
    run = tmp_path / "run"
    args = ["--run", str(run), "--source", f"a={a}", "--source", f"b={b}@2", "--sbi-share", "0.5",
            "--epochs", "1", "--epoch-images", "64", "--batch-size", "16", "--quiet", "--no-xla",
            "--window", "--cache-dir", str(tmp_path / "cache"), "--jpeg-p", "0.5", "--cut-p", "0.5",
            "--resample-p", "0.5", "--noise-p", "0.5"]
    assert train.main(args) == 0
    card = json.loads((run / "best.json").read_text())
    assert card["data"]["sbi_share"] == 0.5 and set(card["data"]["sources"]) == {"a", "b"}
    assert card["data"]["sources"]["b"]["weight"] == 2.0
    assert card["data"]["holdout_sets"] == ["a", "b", "sbi"]
    assert card["options"]["window"] == [32, 24, 224, 232]
    log = list(csv.DictReader(open(run / "log.csv")))
    assert len(log) == 1 and "sbi=" in log[0]["holdout_auc_by_set"]
    from screener import nets
    from screener.scoring import load_model
    assert nets.window_of(load_model(run / "best.keras").model) == nets.FACE_WINDOW
    # --data and --source together are refused
    assert train.main(args + ["--data", str(a)]) == 2
