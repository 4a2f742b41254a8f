"""training.prepare: the fetched sources' training trees, built from generated copies (the real
copies are never needed here)."""
import csv

import numpy as np
import pytest
from PIL import Image

from training import prepare, sources


def _image(path, rng, base):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)).save(path)


def make_dfdc_copy(root, people=30, fakes=3, seed=0):
    """A DeepFake-Detection-shaped copy: faces_224/<video>.jpg and metadata.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(people):
        real = f"r{p:03d}.mp4"
        rows.append([real, 224, 224, "REAL", ""])
        _image(root / "faces_224" / f"r{p:03d}.jpg", rng, 80)
        for k in range(fakes):
            rows.append([f"f{p:03d}x{k}.mp4", 224, 224, "FAKE", real])
            _image(root / "faces_224" / f"f{p:03d}x{k}.jpg", rng, 160)
    rows.append(["gone.mp4", 224, 224, "FAKE", "r000.mp4"])  # listed, no image
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoname", "original_width", "original_height", "label", "original"])
        w.writerows(rows)
    return root


def test_dfdc_excludes_held_out_people_and_groups_by_the_real_video(tmp_path):
    src = make_dfdc_copy(tmp_path / "copy")
    excluded = tmp_path / "excluded.txt"
    # r001 excludes that person's real and every fake made from it; f002x0 only itself.
    excluded.write_text("# held out\nr001.mp4\nf002x0.mp4\n")
    out = tmp_path / "out"
    assert prepare.main(["--dfdc", str(src), "--excluded", str(excluded), "--out", str(out)]) == 0
    with open(out / "dfdc" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    videos = {r["video"] for r in rows}
    assert not videos & {"r001.mp4", "f001x0.mp4", "f001x1.mp4", "f001x2.mp4", "f002x0.mp4"}
    assert len(rows) == 30 * 4 - 4 - 1 and "gone.mp4" not in videos
    for r in rows:
        assert r["group"] == (r["original"] or r["video"])
        assert (out / "dfdc" / r["file"]).is_file()
    # A person never straddles the splits, and the split is the benchmark's hash of the group.
    sp = sources.splits(sources.Source("dfdc", out / "dfdc"))
    side = {}
    for name, samples in sp.items():
        for s in samples:
            group = s.group_key.split(":", 1)[1]
            assert side.setdefault(group, name) == name == sources.split_of(group)


def test_dfdc_needs_the_exclusion_list(tmp_path):
    with pytest.raises(SystemExit):
        prepare.main(["--dfdc", str(make_dfdc_copy(tmp_path / "c", 2)), "--out", str(tmp_path / "o")])


def make_ffpp_copy(root, videos=40, seed=0):
    """image/train/<method>/roi_N.jpg where every method's roi_N shows video N's frame (as
    FF++'s fakes share their target's frame), with small changes per method; image/test/ too,
    which must never be read."""
    rng = np.random.default_rng(seed)
    for v in range(videos):
        frame = rng.integers(0, 256, (8, 8, 3)).repeat(5, 0).repeat(5, 1).astype(np.float64)
        for method in ("youtube",) + prepare.FFPP_METHODS:
            img = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
            path = root / "image" / "train" / method / f"roi_{v}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
    _image(root / "image" / "test" / "youtube" / "test_roi_0.jpg", rng, 100)
    return root


def test_ffpp_groups_a_videos_real_and_fakes_and_carves_a_selection(tmp_path):
    src = make_ffpp_copy(tmp_path / "copy")
    out = tmp_path / "out"
    assert prepare.main(["--ffpp", str(src), "--out", str(out), "--select", "0.3"]) == 0
    with open(out / "ffpp" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 * 5 and not any("test" in r["file"] for r in rows)
    by_video = {}
    for r in rows:
        v = r["file"].rsplit("_", 1)[1]
        by_video.setdefault(v, set()).add((r["group"], r["split"]))
    # Each video's five crops are one group on one side; unrelated videos are not merged.
    assert all(len(g) == 1 for g in by_video.values())
    assert len({next(iter(g))[0] for g in by_video.values()}) == 40
    sp = sources.splits(sources.Source("ffpp", out / "ffpp"))
    assert not sp["test"] and 5 * 4 <= len(sp["select"]) <= 5 * 20
    assert {s.label for s in sp["select"]} == {0, 1}


def test_a_bad_split_column_is_named(tmp_path):
    root = tmp_path / "s"
    _image(root / "real" / "a.jpg", np.random.default_rng(0), 90)
    (root / "metadata.csv").write_text("file,label,group,split\nreal/a.jpg,real,g1,holdout\n")
    with pytest.raises(sources.DatasetError, match="holdout"):
        sources.splits(sources.Source("s", root))
