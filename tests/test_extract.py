"""screener extract: videos -> DIR/<label>/<videoid>_<frame>.png + manifest, resumable.

Clips are made here with PyAV (320x240, ~10 frames); only the last test reads ../shared.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from screener import synth
from screener.dataset import crop_name, video_id
from screener.extract import ExtractError, extract, normalize_label, read_labels
from screener.images import read_rgb
from screener.options import SampleOptions
from screener.pipeline import crops_from_video

from helpers import (SCREENER, check_consistent, completed, copy, extract_args, one_face,
                     read_csv, screener_cli as cli, signal_when, snapshot)


@pytest.fixture(scope="module")
def clips(extract_clips):
    return extract_clips

SHARED = Path(__file__).resolve().parents[2] / "shared"
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*-[0-9a-f]{8}$")


# --- names and labels -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../../etc/passwd.mp4", "..mp4", ".mp4", "-rf.mp4", "=1+1.mp4", "a b_c__d.mp4",
    "vidéo 日本.mp4", os.fsdecode(b"latin1-\xe9.mp4"), "x" * 300 + ".mp4", "a\nb\tc.mp4"])
def test_video_id_is_a_safe_name(tmp_path, name):
    vid = video_id(tmp_path / "sub" / name)
    assert ID.match(vid) and "_" not in vid and ".." not in vid and len(vid) <= 60, vid
    out = (tmp_path / "ds" / "df" / crop_name(vid, 7, 1, "png")).resolve()
    assert out.parent == (tmp_path / "ds" / "df").resolve()
    assert crop_name(vid, 7, 1, "png").split("_")[0] == vid   # training's video id


def test_video_id_stable_and_unique_across_folders(tmp_path, clips):
    a, b = copy(clips / "clip0.mp4", tmp_path / "a" / "clip.mp4"), copy(clips / "clip1.mp4",
                                                                       tmp_path / "b" / "clip.mp4")
    os.symlink(a, tmp_path / "link.mp4")
    assert video_id(a) != video_id(b)
    assert video_id(a) == video_id(tmp_path / "b" / ".." / "a" / "clip.mp4") == video_id(
        tmp_path / "link.mp4")
    assert video_id(a).startswith("clip-")


@pytest.mark.parametrize("bad", ["../x", "df/real", ".hidden", "a b", "manifest.csv", "x" * 40,
                                 "é", "-df"])
def test_unsafe_labels_are_refused(bad):
    with pytest.raises(ExtractError, match="unsafe label"):
        normalize_label(bad)


def test_label_spellings():
    assert [normalize_label(x) for x in ("DF", "fake", " real ", "", "unknown", "f2f")] == [
        "df", "df", "real", "unlabeled", "unlabeled", "f2f"]


def test_unsafe_label_in_labels_file_stops_before_writing(tmp_path, clips):
    (tmp_path / "labels.csv").write_text(f"path,label\n{clips / 'clip0.mp4'},../../evil\n")
    with pytest.raises(ExtractError, match="unsafe label"):
        extract([], tmp_path / "ds", labels_csv=tmp_path / "labels.csv")
    assert not (tmp_path / "ds").exists()
    with pytest.raises(ExtractError, match="one of"):
        extract([clips], tmp_path / "ds", label="f2f")


# --- the library ------------------------------------------------------------------------------

def test_layout_manifest_escaping_and_bad_videos(tmp_path, clips, no_face_video, detector,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy(clips / "clip0.mp4", tmp_path / "in" / "=HYPERLINK(1)_x.mp4")
    copy(no_face_video, tmp_path / "in" / "no_face.mp4")
    (tmp_path / "in" / "zero.mp4").write_bytes(b"")
    seen = []
    s = extract(["in"], "ds", label="real", frames=3, detector=detector,
                progress=lambda done, total, rec: seen.append((done, total, rec and rec.status)))
    assert (s.videos, s.extracted, s.no_face, s.crops, s.skipped) == (3, 1, 1, 3, 0)
    assert s.errors == [("in/zero.mp4", "empty file (0 bytes)")]
    assert seen == [(0, 3, None), (1, 3, "ok"), (2, 3, "no_face"), (3, 3, "error")]

    vid = video_id("in/=HYPERLINK(1)_x.mp4")
    assert vid.startswith("HYPERLINK-1-x-")
    files = sorted(p.name for p in (tmp_path / "ds" / "real").iterdir())
    assert files == [f"{vid}_000000_p1.png", f"{vid}_000004_p1.png", f"{vid}_000009_p1.png"]
    rows = read_csv(tmp_path / "ds" / "manifest.csv")
    assert [r["crop_file"] for r in rows] == [f"real/{f}" for f in files]
    assert {r["source_path"] for r in rows} == {"in/=HYPERLINK(1)_x.mp4"}
    kp = np.array(json.loads(rows[0]["keypoints"]))
    assert kp.shape == (6, 2) and float(rows[0]["detector_score"]) > 0.5
    assert float(rows[1]["time_s"]) == pytest.approx(4 / 25, abs=1e-3)
    # The crops are exactly what the scan scores (lossless PNG of the same pipeline output).
    again = crops_from_video("in/=HYPERLINK(1)_x.mp4", SampleOptions(frames=3), detector)
    for c, r in zip(again.crops, rows):
        assert np.array_equal(read_rgb(tmp_path / "ds" / r["crop_file"]), c.crop)
    videos = {r["source_path"]: r["status"] for r in read_csv(tmp_path / "ds" / "videos.csv")}
    assert videos == {"in/=HYPERLINK(1)_x.mp4": "ok", "in/no_face.mp4": "no_face",
                      "in/zero.mp4": "error"}


def test_formula_cells_are_escaped(tmp_path, clips, detector, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy(clips / "clip1.mp4", tmp_path / "=cmd.mp4")
    extract(["=cmd.mp4"], "ds", frames=1, detector=detector)
    text = (tmp_path / "ds" / "manifest.csv").read_text()
    assert "\n'=cmd.mp4," in text and "\n=cmd" not in text
    assert (tmp_path / "ds" / "unlabeled").is_dir()


def test_same_file_names_in_two_folders(tmp_path, clips, detector):
    a = copy(clips / "clip0.mp4", tmp_path / "a" / "clip.mp4")
    b = copy(clips / "clip1.mp4", tmp_path / "b" / "clip.mp4")
    s = extract([tmp_path / "a", tmp_path / "b"], tmp_path / "ds", label="df", frames=2,
                detector=detector)
    assert s.crops == 4
    ids = {p.name.split("_")[0] for p in (tmp_path / "ds" / "df").iterdir()}
    assert ids == {video_id(a), video_id(b)} and len(ids) == 2


def test_labels_file_maps_videos(tmp_path, clips, detector):
    data = tmp_path / "data"
    for i in range(3):
        copy(clips / f"clip{i}.mp4", data / f"v{i}.mp4")
    (data / "labels.csv").write_text("path,label,notes\nv0.mp4,fake,a\nv1.mp4,real,\n"
                                     f"{data / 'v2.mp4'},unknown,c\n")
    assert read_labels(data / "labels.csv") == {
        str((data / "v0.mp4").resolve()): "df", str((data / "v1.mp4").resolve()): "real",
        str((data / "v2.mp4").resolve()): "unlabeled"}
    s = extract([], tmp_path / "ds", labels_csv=data / "labels.csv", frames=1, detector=detector)
    assert s.crops_per_label == {"df": 1, "real": 1, "unlabeled": 1}
    for i, lab in enumerate(["df", "real", "unlabeled"]):
        assert [p.name.split("_")[0] for p in (tmp_path / "ds" / lab).iterdir()] == [
            video_id(data / f"v{i}.mp4")]
    # PATHs with a labels file: listed videos take their label, others are unlabeled.
    (data / "labels.csv").write_text("\ufefflabel,path\ndf,v0.mp4\n")  # any order, a BOM
    s = extract([data], tmp_path / "ds2", labels_csv=data / "labels.csv", frames=1,
                detector=detector)
    assert s.crops_per_label == {"df": 1, "unlabeled": 2}


def test_other_settings_are_refused(tmp_path, clips, detector):
    extract([clips / "clip0.mp4"], tmp_path / "ds", frames=1, detector=detector)
    with pytest.raises(ExtractError, match="frames: 1 there, 2 now"):
        extract([clips / "clip0.mp4"], tmp_path / "ds", frames=2, detector=detector)


def test_a_dataset_of_another_manifest_layout_is_refused(tmp_path, clips, detector):
    """A dataset from before people (largest-face settings, no `person` column): appending
    rows with a person under its header would shift every column after it."""
    ds = tmp_path / "ds"
    extract([clips / "clip0.mp4"], ds, frames=1, largest_face=True, detector=detector)
    manifest = ds / "manifest.csv"
    lines = manifest.read_text("utf-8").splitlines()
    manifest.write_text(lines[0].replace(",person", "") + "\n", "utf-8")
    with pytest.raises(ExtractError, match="manifest.csv has other columns"):
        extract([clips / "clip1.mp4"], ds, frames=1, largest_face=True, detector=detector)


def test_jpg_and_contact_sheet(tmp_path, clips, detector):
    s = extract([clips / "clip0.mp4", clips / "clip1.mp4"], tmp_path / "ds", label="df",
                frames=2, fmt="jpg", quality=90, contact_sheet=tmp_path / "sheet.png",
                detector=detector)
    assert s.crops == 4 and all(p.suffix == ".jpg" for p in (tmp_path / "ds" / "df").iterdir())
    sheet = read_rgb(tmp_path / "sheet.png")
    assert sheet.shape[1] > 400 and sheet.std() > 10


def test_a_contact_sheet_per_person(tmp_path, detector):
    """by="person": a block (a title row and a row of tiles) per person of each video."""
    from screener.extract import make_contact_sheet
    clip = Path(__file__).resolve().parents[1] / "sample_videos" / "two_people.mp4"
    extract([clip], tmp_path / "ds", label="real", frames=2, detector=detector)
    block = 18 + 96 + 4  # title, one row of tiles, padding
    by_label = read_rgb(make_contact_sheet(tmp_path / "ds", tmp_path / "l.png"))
    by_person = read_rgb(make_contact_sheet(tmp_path / "ds", tmp_path / "p.png", by="person"))
    assert by_label.shape[0] == block + 4 and by_person.shape[0] == 2 * block + 4


# --- worker processes -------------------------------------------------------------------------

@pytest.mark.slow
def test_worker_processes_make_the_same_dataset(tmp_path, clips, detector):
    """Two workers (the scan's WorkerPool) or none: the same files, byte for byte."""
    alone = extract([clips], tmp_path / "alone", label="df", frames=3, detector=detector,
                    workers=0)
    pooled = extract([clips], tmp_path / "pooled", label="df", frames=3, workers=2)
    assert alone.crops == pooled.crops == 15 and pooled.extracted == 5
    assert snapshot(tmp_path / "alone") == snapshot(tmp_path / "pooled")


@pytest.mark.slow
def test_a_crashing_or_stuck_video_is_an_error_and_the_run_goes_on(tmp_path, clips,
                                                                  monkeypatch):
    """In a worker, a decoder that kills its process or never returns costs that video, not
    the run (in this process it would end the run); a re-run reads the two again."""
    for i, name in enumerate(["a.mp4", "b-killme.mp4", "c-hangme.mp4", "d.mp4"]):
        copy(clips / f"clip{i}.mp4", tmp_path / "in" / name)
    monkeypatch.setenv("SCREENER_TEST_KILL_WORKER_ON", "killme")
    monkeypatch.setenv("SCREENER_TEST_HANG_WORKER_ON", "hangme")
    s = extract([tmp_path / "in"], tmp_path / "ds", frames=2, workers=2, video_timeout_s=5)
    assert (s.extracted, s.crops) == (2, 4)
    errors = {Path(p).name: e for p, e in s.errors}
    assert "worker process died" in errors["b-killme.mp4"]
    assert "longer than the 5 s limit" in errors["c-hangme.mp4"]
    check_consistent(tmp_path / "ds")
    monkeypatch.delenv("SCREENER_TEST_KILL_WORKER_ON")
    monkeypatch.delenv("SCREENER_TEST_HANG_WORKER_ON")
    again = extract([tmp_path / "in"], tmp_path / "ds", frames=2, workers=2)
    assert (again.skipped, again.extracted, again.crops, again.errors) == (2, 2, 4, [])


@pytest.mark.slow
def test_ctrl_c_while_a_worker_is_stuck_ends_at_once_and_a_rerun_resumes(tmp_path, clips):
    src = tmp_path / "in"
    for i, name in enumerate(["a.mp4", "b.mp4", "c-hangme.mp4", "d.mp4", "e.mp4"]):
        copy(clips / f"clip{i}.mp4", src / name)
    out = tmp_path / "ds"
    proc = subprocess.Popen([*SCREENER, *map(str, extract_args(src, out)), "--workers", "2"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SCREENER_TEST_HANG_WORKER_ON": "hangme"})
    # a second later d and e are read too; they wait behind the stuck one
    err = signal_when(proc, lambda: completed(out) >= 2, settle_s=1, timeout_s=60)
    assert proc.returncode == 130 and "complete videos are kept" in err, err[-2000:]
    assert "Traceback" not in err and "Exception" not in err, err[-2000:]
    check_consistent(out)
    assert [r["source_path"] for r in read_csv(out / "videos.csv")] == [
        str(src / "a.mp4"), str(src / "b.mp4")]
    r = cli(*extract_args(src, out))
    assert "2 already done" in r.stderr and "0 errors" in r.stderr
    assert len(read_csv(out / "videos.csv")) == 5


def test_a_bug_on_one_video_does_not_stop_the_run(tmp_path, clips, detector, monkeypatch):
    """The guard the scan has (workers.VideoReader.crops): an unexpected exception on one
    video is that video's error, in this process too."""
    from screener import pipeline
    real = pipeline.crops_from_video

    def flaky(path, options, det=None):
        if path.endswith("clip1.mp4"):
            raise RuntimeError("boom")
        return real(path, options, det)
    monkeypatch.setattr(pipeline, "crops_from_video", flaky)
    s = extract([clips / f"clip{i}.mp4" for i in range(3)], tmp_path / "ds", frames=1,
                detector=detector)
    assert (s.extracted, s.crops) == (2, 2)
    assert [(Path(p).name, e) for p, e in s.errors] == [
        ("clip1.mp4", "internal error: RuntimeError: boom")]
    check_consistent(tmp_path / "ds")


@pytest.mark.parametrize("name", [".extract.lock", "manifest.csv", "videos.csv", "real"])
def test_links_in_a_dataset_are_never_followed(tmp_path, clips, detector, name):
    """A dataset file written in place (its lock, its records) or a label folder that is a
    symbolic link to something of ours is refused, and what it names stays as it was."""
    ds, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    extract([clips / "clip0.mp4"], ds, label="real", frames=2, detector=detector)
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("my notes\n")
    target = elsewhere if name == "real" else elsewhere / "notes.txt"
    if (ds / name).is_dir():
        for p in (ds / name).iterdir():
            p.unlink()
        (ds / name).rmdir()
    else:
        (ds / name).unlink()
    os.symlink(target, ds / name)
    with pytest.raises((OSError, ExtractError), match="symbolic link"):
        extract([clips / "clip1.mp4"], ds, label="real", frames=2, detector=detector)
    assert sorted(os.listdir(elsewhere)) == ["notes.txt"]
    assert (elsewhere / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize("where", ["a crop", "a label folder", "the dataset"])
def test_the_contact_sheet_is_refused_inside_the_dataset(tmp_path, clips, detector, where):
    """A sheet named inside DIR would replace a crop or be read by training as one."""
    ds = tmp_path / "ds"
    extract([clips / "clip0.mp4"], ds, label="real", frames=2, detector=detector)
    crop = sorted((ds / "real").iterdir())[0]
    sheet = {"a crop": crop, "a label folder": ds / "real" / "sheet.png",
             "the dataset": ds / "sheet.png"}[where]
    before = snapshot(ds)
    with pytest.raises(ExtractError, match="inside the dataset"):
        extract([clips / "clip1.mp4"], ds, label="real", frames=2, detector=detector,
                contact_sheet=sheet)
    assert snapshot(ds) == before


def test_a_file_and_a_link_to_it_are_read_once(tmp_path, clips, detector):
    copy(clips / "clip0.mp4", tmp_path / "in" / "a.mp4")
    (tmp_path / "in" / "b.mp4").symlink_to(tmp_path / "in" / "a.mp4")
    s = extract([tmp_path / "in"], tmp_path / "ds", frames=1, detector=detector)
    assert (s.videos, s.extracted, s.skipped, s.crops) == (2, 1, 1, 1)


def test_a_time_limit_needs_workers(tmp_path, clips):
    with pytest.raises(ExtractError, match="needs worker processes"):
        extract([clips], tmp_path / "ds", workers=0, video_timeout_s=5)
    r = cli("extract", clips, "--out", tmp_path / "ds", "--workers", 0, "--video-timeout", 5,
            check=False)
    assert r.returncode == 2 and "--video-timeout needs worker processes" in r.stderr
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("text,found", [
    ("file,kind\nclip0.mp4,real\n", "'file', 'kind'"),
    ("clip0.mp4,real\n", "'clip0.mp4', 'real'"),
    ("path,kind\nclip0.mp4,real\n", "'path', 'kind'"),
    ("", "none"),
])
def test_a_labels_file_without_path_and_label_columns_is_refused(clips, tmp_path, text, found):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(ExtractError, match="columns found: " + re.escape(found)):
        read_labels(labels)
    r = cli("extract", "--labels", labels, "--out", tmp_path / "ds", check=False)
    assert r.returncode == 2 and "path and label columns" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "ds").exists()


# --- the round trip ---------------------------------------------------------------------------

def _train_help() -> str | None:
    r = subprocess.run([sys.executable, "-m", "training.train", "--help"], capture_output=True,
                       text=True, timeout=120)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.slow
def test_round_trip_extract_train_scan(tmp_path):
    """PyAV clips -> screener extract -> python -m training.train (1 epoch) -> screener scan."""
    help_text = _train_help()
    if help_text is None:
        pytest.skip("python -m training.train is not available")
    src = tmp_path / "videos"
    src.mkdir()
    labels = ["path,label"]
    for i in range(4):  # four videos per class, so training can hold out whole videos
        synth.face_clip(src / f"d{i}.mp4", 320, 240, 8, seed=10 + i,
                        faces=[one_face("collins", x=40 + 10 * i)])
        synth.face_clip(src / f"r{i}.mp4", 320, 240, 8, seed=20 + i,
                        faces=[one_face("hopper", x=40 + 10 * i)])
        labels += [f"d{i}.mp4,df", f"r{i}.mp4,real"]
    (src / "labels.csv").write_text("\n".join(labels) + "\n")
    data = tmp_path / "data" / "train"   # training reads <root>/<split>/{df,real}
    cli("extract", "--labels", src / "labels.csv", "--out", data, "--frames", "4")
    assert len(list((data / "df").glob("*.png"))) == 16
    assert len(list((data / "real").glob("*.png"))) == 16
    model = _train(help_text, tmp_path / "data", tmp_path / "run")
    report = tmp_path / "scan.csv"
    cli("scan", src, "--model", model, "--frames", "2", "--out", report)
    rows = read_csv(report)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"run"}   # the model just trained, by its card


def _train(help_text: str, root: Path, run: Path) -> Path:
    """One quick epoch on ROOT/train/{df,real} (options as `--help` lists them)."""
    for flag in ("--data", "--split", "--run", "--epochs", "--holdout", "--no-augment"):
        assert flag in help_text, f"training.train has no {flag} any more"
    r = subprocess.run([sys.executable, "-m", "training.train", "--data", str(root), "--split",
                        "train", "--run", str(run), "--epochs", "1", "--batch-size", "8",
                        "--holdout", "0.25", "--no-augment", "--no-xla", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert (run / "best.keras").is_file(), r.stdout[-2000:]
    return run / "best.keras"


# --- with ../shared: framing against the MesoNet dataset ----------------------------------------

def _eyes(detector, rgb):
    """(eye distance, eye height) as fractions of the image side, or None if no face."""
    found = detector.detect(rgb, small=False)
    if not found:
        return None
    kp = found[0].keypoints
    h, w = rgb.shape[:2]
    return float(np.hypot(*(kp[1] - kp[0])) / w), float((kp[0, 1] + kp[1, 1]) / 2 / h)


def _frontal(row) -> bool:
    """Near-frontal in the video (nose within 0.3 eye distances of the eyes' midpoint): the
    dataset's faces are, and a profile face's eye keypoints are guesses."""
    k = np.array(json.loads(row["keypoints"]))
    return abs(k[2, 0] - (k[0, 0] + k[1, 0]) / 2) < 0.3 * np.hypot(*(k[1] - k[0]))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "videos-dev").is_dir(),
                    reason="../shared/data/videos-dev is not present")
def test_framing_matches_mesonet_df(tmp_path, detector):
    """Crops of real videos are framed like the dataset the models learn from: eye distance and
    eye height, measured by the same detector on both, as fractions of the side (medians)."""
    from screener.align import resize_to_model
    videos = SHARED / "data" / "videos-dev"
    out = tmp_path / "ds"
    s = extract([], out, labels_csv=videos / "labels.csv", frames=8, detector=detector,
                contact_sheet=tmp_path / "sheet.png")
    assert not s.errors and s.crops >= 30
    rows = [r for r in read_csv(out / "manifest.csv") if _frontal(r)]
    ours = np.array([e for r in rows if (e := _eyes(detector, read_rgb(out / r["crop_file"])))])
    files = sorted((SHARED / "data" / "mesonet-df" / "validation").glob("*/*.jp*g"))
    theirs = np.array([e for p in files[::len(files) // 120]
                       if (e := _eyes(detector, resize_to_model(read_rgb(p))))])
    (d_ours, y_ours), (d_theirs, y_theirs) = np.median(ours, 0), np.median(theirs, 0)
    print(f"{len(ours)} frontal crops of {s.crops}: median eye distance / side: ours "
          f"{d_ours:.3f}, dataset {d_theirs:.3f}; eye height / side: ours {y_ours:.3f}, "
          f"dataset {y_theirs:.3f}")
    assert len(ours) >= 24 and len(theirs) >= 80
    assert abs(d_ours - d_theirs) < 0.02 and abs(y_ours - y_theirs) < 0.02
