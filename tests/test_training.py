"""training.data / augment / train on tiny generated datasets (no ../shared needed)."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import augment, data, threshold, train
from training.options import parse

from helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def test_odd_sizes_modes_and_corrupt_image(tmp_path, caplog):
    d = tmp_path / "train" / "df"
    make_dataset(tmp_path, n=1)
    Image.fromarray(np.full((31, 77), 128, np.uint8), "L").save(d / "gray.png")
    Image.new("CMYK", (300, 200), (10, 200, 30, 0)).save(d / "cmyk.jpg")
    Image.new("RGBA", (256, 256), (1, 2, 3, 4)).save(d / "rgba.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    samples = data.list_split(tmp_path, "train")
    assert len(samples) == 6 and sum(s.label for s in samples) == 5  # df = fake = 1
    stream = data.BatchStream(samples, batch_size=4)
    with caplog.at_level(logging.WARNING):
        batches = list(stream)
    x = np.concatenate([b[0] for b in batches])
    assert x.shape == (5, 256, 256, 3) and x.dtype == np.uint8
    assert list(stream.stats.skipped) == [str(d / "broken.jpg")]
    assert "broken.jpg" in caplog.text
    assert len(stream.kept) == 5


def test_nearest_resize_matches_pil():
    img = np.random.default_rng(0).integers(0, 255, (100, 60, 3), dtype=np.uint8)
    out = data.resize(img, "nearest")
    assert out.shape == (256, 256, 3)
    assert np.array_equal(out, np.asarray(Image.fromarray(img).resize((256, 256), Image.NEAREST)))


def test_missing_split_and_empty_class_give_clear_errors(tmp_path):
    with pytest.raises(data.DatasetError, match="split folder not found"):
        data.list_split(tmp_path, "train")
    (tmp_path / "train" / "df").mkdir(parents=True)
    (tmp_path / "train" / "real").mkdir()
    with pytest.raises(data.DatasetError, match="has no images"):
        data.list_split(tmp_path, "train")
    with pytest.raises(data.DatasetError, match="class folder not found"):
        data.list_split(tmp_path, "train", fake="fake")


def test_class_folders_are_configurable_and_fake_is_one(tmp_path):
    for folder in ("a_fake", "z_real"):
        (tmp_path / "s" / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "s" / folder / "x.png")
    s = data.list_split(tmp_path, "s", fake="z_real", real="a_fake")
    assert {p.path.parent.name: p.label for p in s} == {"z_real": 1, "a_fake": 0}


def test_video_grouped_holdout_never_leaks():
    samples = [data.Sample(data.Path(f"/x/{c}/{v}_{f}.png"), lab, f"{c}{v}")
               for c, lab in (("df", 1), ("real", 0)) for v in range(20) for f in range(7)]
    for seed in range(5):
        keep, held = data.holdout_split(samples, 0.2, seed)
        assert len(keep) + len(held) == len(samples)
        assert not {s.video for s in keep} & {s.video for s in held}
        assert {s.label for s in held} == {0, 1}


def make_videos_without_ids(root, n_videos=8, frames=6, seed=0):
    """`df00000.png`-style names (no video id), consecutive frames of one "video" alike: each
    video is one random picture plus a little noise per frame; video 0's first frame is copied
    again at the end of the class's files, far from its video in file order."""
    rng = np.random.default_rng(seed)
    truth = {}
    for folder in ("df", "real"):
        d = root / "train" / folder
        d.mkdir(parents=True)
        k = 0
        pics = [rng.integers(0, 255, (16, 16, 3)).repeat(4, 0).repeat(4, 1) for _ in range(n_videos)]
        for v in list(range(n_videos)) + [0]:
            for f in range(frames if k < n_videos * frames else 1):
                img = np.clip(pics[v] + rng.normal(0, 8, pics[v].shape), 0, 255).astype(np.uint8)
                name = d / f"{folder}{k:05d}.png"
                Image.fromarray(img).save(name)
                truth[name] = f"{folder}{v}"
                k += 1
    return truth


def test_similar_holdout_keeps_each_video_on_one_side(tmp_path):
    truth = make_videos_without_ids(tmp_path)
    samples = data.list_split(tmp_path, "train")
    assert all(s.video is None for s in samples)
    for seed in range(4):
        keep, held = data.holdout_split(samples, 0.25, seed)  # auto: no ids -> similar
        assert len(keep) + len(held) == len(samples) and {s.label for s in held} == {0, 1}
        # the far-away copy of video 0's frame went with its video, whichever side that is
        assert not {truth[s.path] for s in keep} & {truth[s.path] for s in held}
        # the pseudo ids are the groups: one per video here
        assert len({s.group for s in keep + held}) == len(set(truth.values()))
    # blocks of consecutive files cut videos in two
    keep, held = data.holdout_split(samples, 0.25, 0, by="block", block=4)
    assert {truth[s.path] for s in keep} & {truth[s.path] for s in held}


def test_leakage_command_reports_the_leak_of_each_carve(tmp_path, capsys):
    from training import leakage
    make_videos_without_ids(tmp_path, n_videos=20)
    assert leakage.main(["--data", str(tmp_path), "--holdout", "0.25", "--by", "similar",
                         "block"]) == 0
    out = capsys.readouterr().out
    sims = {by: float(line.split("/")[-1]) for line in out.splitlines()  # p99
            for by in ("similar", "block") if f"by {by}:" in line}
    # other videos only, against a video cut in two by a block boundary
    assert sims["similar"] < 0.9 < sims["block"]


def test_cautious_threshold_moves_only_for_a_gain_beyond_its_noise():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 20)
    y = (g < 20).astype(int)
    # every real frame scores 0.55-0.6 and every fake 0.8: 0.6 is right for all, 0.5 for half
    p = np.where(y == 1, 0.8, rng.uniform(0.55, 0.6, len(y)))
    c = threshold.choose_threshold(y, p, g, "cautious")
    assert c["value"] == c["best_grid_threshold"] == 0.6 and c["gain_over_0_5"] == 0.5
    # videos whose frames err together: a small gain at 0.55 is within its noise
    p = np.clip(np.where(y == 1, 0.75, 0.3) + rng.normal(0, 0.15, 40)[g]
                + rng.normal(0, 0.1, len(g)), 0, 1)
    c = threshold.choose_threshold(y, p, g, "cautious")
    best = threshold.choose_threshold(y, p, g, "best")
    assert best["value"] != 0.5 and c["value"] == 0.5 and c["best_grid_threshold"] == best["value"]
    assert c["gain_over_0_5"] <= 2 * c["gain_stderr"]
    # resampling frames as if independent understates that noise
    assert threshold.gain_stderr(y, p, best["value"], np.arange(len(y)), 500, 1) < c["gain_stderr"]


def test_video_id_and_class_weights():
    assert data.video_id(data.Path("abc_12_0033.jpg")) == "abc_12"
    assert data.video_id(data.Path("df00012.jpg")) is None
    # screener extract's names, one face (`_frame`) and --all-faces (`_frame_face`)
    assert data.video_id(data.Path("clip-0a1b2c3d_000012.png")) == "clip-0a1b2c3d"
    assert data.video_id(data.Path("clip-0a1b2c3d_000012_1.png")) == "clip-0a1b2c3d"
    s = [data.Sample(data.Path(f"{i}"), int(i < 3), None) for i in range(12)]
    w = data.class_weights(s)
    assert w[1] * 3 == pytest.approx(w[0] * 9)  # both classes weigh the same in total


def test_augment_is_seeded_and_keeps_shape():
    img = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    aug = augment.Augment(jpeg_p=1.0, blur_p=1.0)
    a = aug(img, np.random.default_rng(7))
    b = aug(img, np.random.default_rng(7))
    assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, img)


@pytest.mark.slow
def test_train_one_epoch_save_reload_predict_and_resume(tmp_path):
    from screener.scoring import load_model
    root = make_dataset(tmp_path / "ds", n=12, videos=True)
    run = tmp_path / "run"
    args = ["--data", str(root), "--run", str(run), "--epochs", "1", "--batch-size", "8",
            "--holdout", "0.34", "--quiet", "--no-xla", "--jpeg-p", "0.5", "--blur-p", "0.5",
            "--pick-threshold"]
    assert train.main(args) == 0
    for f in ("best.keras", "best.json", "last.keras", "log.csv", "curves.png", "state.json"):
        assert (run / f).is_file(), f
    card = json.loads((run / "best.json").read_text())
    assert card["data"]["holdout_by"] == "video" and card["training"]["epochs_run"] == 1
    assert card["threshold"] in threshold.THRESHOLD_GRID and "holdout" in card["threshold_choice"]["chosen_by"]
    assert card["command"].startswith("python -m training.train --data")
    scorer = load_model(run / "best.keras")
    x = np.stack([data.load_image(s.path) for s in data.list_split(root, "train")])
    p1 = scorer.predict(x)
    p2 = load_model(run / "best.keras").predict(x)
    assert p1.shape == (24,) and np.allclose(p1, p2)
    assert np.all((p1 >= 0) & (p1 <= 1))
    # Same command with more epochs resumes from last.keras; without --quiet, its output into
    # a pipe is lines, without Keras's redrawing bar (\r, \b) and colour escapes (issue 28).
    p = subprocess.run([sys.executable, "-m", "training.train", *args[:5], "2",
                        *(x for x in args[6:] if x != "--quiet")], cwd=REPO,
                       capture_output=True, timeout=600)  # bytes: text mode reads \r as \n
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout.decode()
    assert not set("\r\b\x1b") & set(out), out
    assert [ln for ln in out.splitlines() if ln.startswith("epoch ")][0].startswith(
        "epoch 2: loss ")
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert len((run / "log.csv").read_text().splitlines()) == 3


def test_train_help_documents_every_option():
    help_text = train.parser().format_help()
    for action in train.parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
    assert "--init" in help_text and "--resize" in help_text


@pytest.mark.parametrize("command", ["training.train", "training.evaluate"])
def test_help_comes_before_tensorflow_and_keeps_its_examples_lines(command):
    """--help parses before TensorFlow loads; its examples keep their lines and name no
    developer's folders (issue 28)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", command, "--help"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    imported = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "training" in imported and not imported & {"tensorflow", "keras"}
    examples = [ln for ln in p.stdout.splitlines() if ln.startswith("    python -m ")]
    assert examples and all(ln.endswith(" \\") for ln in examples), examples
    assert "/work/" not in p.stdout


def test_lr_schedule_decays_to_floor():
    """Helpers take the frozen options, not argparse's Namespace."""
    a = parse(train.TrainOptions, train.parser(), ["--data", "x", "--run", "y", "--epochs", "4"])
    assert train.lr_at(0, a, 10) == pytest.approx(1e-3)
    assert train.lr_at(20, a, 10) == pytest.approx(1e-4)  # decay_epochs = epochs/2
    assert train.lr_at(10 ** 6, a, 10) == pytest.approx(1e-6)
    with pytest.raises(AttributeError):
        a.epochs = 5  # frozen


@pytest.mark.slow
def test_cached_trunk_fine_tune_keeps_frozen_blocks(tmp_path):
    from screener import nets
    from screener.scoring import load_model
    root = make_dataset(tmp_path / "ds", n=6, videos=True)
    init = nets.build("meso4")
    init.save(tmp_path / "init.keras")
    run = tmp_path / "run"
    assert train.main(["--data", str(root), "--run", str(run), "--epochs", "1", "--holdout", "0.5",
                       "--init", str(tmp_path / "init.keras"), "--freeze-blocks", "3",
                       "--cache-trunk", "--quiet", "--no-xla", "--batch-size", "4"]) == 0
    tuned = load_model(run / "best.keras").model
    for name in ("block1_conv", "block3_bn"):
        for w0, w1 in zip(init.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()):
            assert np.array_equal(w0, w1), name
    assert not np.array_equal(init.get_layer("dense16").get_weights()[0],
                              tuned.get_layer("dense16").get_weights()[0])
    card = json.loads((run / "best.json").read_text())
    assert card["start_point"].startswith("fine-tuned from") and card["training"]["augment"] is None


def test_init_from_copies_by_name_pads_srm_inputs_and_feeds_the_fused_head():
    from screener import nets
    from training.start import HEAD, init_from
    rng = np.random.default_rng(5)
    src = nets.build("meso4")
    src.set_weights([rng.normal(size=w.shape).astype("float32") for w in src.get_weights()])
    m = nets.build("meso4", srm=True, spectrum=True)
    copied = init_from(m, src)
    k, b = m.get_layer("block1_conv").get_weights()
    sk, sb = src.get_layer("block1_conv").get_weights()
    assert k.shape == (3, 3, 6, 8)
    np.testing.assert_array_equal(k[:, :, :3], sk)
    assert not k[:, :, 3:].any()  # the residual inputs start silent
    np.testing.assert_array_equal(b, sb)
    for a, c in zip(m.get_layer("meso_logit").get_weights(), src.get_layer("p_fake").get_weights()):
        np.testing.assert_array_equal(a, c)
    assert "p_fake" not in copied  # the fusion's own unit keeps its shape (2 inputs): not copied
    fresh = nets.build("meso4", srm=True, spectrum=True)
    before = fresh.get_layer("dense16").get_weights()[0].copy()
    assert "dense16" not in init_from(fresh, src, skip=HEAD)
    np.testing.assert_array_equal(fresh.get_layer("dense16").get_weights()[0], before)
    assert init_from(nets.build("meso4", width=2), src) == []  # no layer of the same shape


def test_spectrum_standardisation_is_fitted_and_kept(tmp_path):
    import keras

    from screener import nets
    from training.start import fit_spectrum_norm
    rng = np.random.default_rng(2)
    batches = [(rng.integers(0, 256, (16, 256, 256, 3)).astype(np.uint8), None, None)
               for _ in range(4)]
    m = nets.build(spectrum=True)
    fit_spectrum_norm(m, iter(batches), images=64)
    x = np.concatenate([b[0] for b in batches])
    z = keras.Model(m.input, m.get_layer("spectrum_norm").output).predict_on_batch(x)
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 0.05
    m.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict_on_batch(x), m.predict_on_batch(x), atol=1e-6)
