"""An extract's dataset folder (screener/dataset.py): a run killed at any instant resumes and
ends as an uninterrupted run, a rerun repairs what a crash left and deletes nothing it did not
write, and a folder that is not one of its datasets, or an output that is an input, is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from screener.dataset import video_id

from helpers import (SCREENER, check_consistent, completed, copy, extract_args, read_csv,
                     screener_cli as cli, signal_when, snapshot)


@pytest.fixture(scope="module")
def clips(extract_clips):
    return extract_clips


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory):
    """An uninterrupted CLI run over the clips: what every resumed run must end as."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    cli(*extract_args(clips, out))
    return out


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_dataset(clips, reference, tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([*SCREENER, *map(str, extract_args(clips, out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill as soon as the first video is complete: the second one is being written.
    signal_when(proc, lambda: completed(out) >= 1, signal.SIGKILL, poll_s=0.005)
    assert proc.returncode == -signal.SIGKILL
    check_consistent(out)
    done = len(read_csv(out / "videos.csv"))
    assert 1 <= done < 5, "not killed midway"
    r = cli(*extract_args(clips, out))
    assert f"{done} already done" in r.stderr
    assert snapshot(out) == snapshot(reference)


@pytest.mark.slow
def test_leftovers_of_every_crash_point_are_cleaned_up(reference, clips, tmp_path):
    """The states a kill can leave, made by hand as extract leaves them: crops named in the
    journal but without rows, rows without the video's completion record, a half-written last
    line, a temporary file. A re-run repairs them and deletes nothing else: a file is removed
    only when the dataset's own records (manifest, journal) name it as its own."""
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    videos = (out / "videos.csv").read_text().splitlines(keepends=True)
    (out / "videos.csv").write_text("".join(videos[:-2]))     # last two videos not complete
    manifest = (out / "manifest.csv").read_text()
    (out / "manifest.csv").write_text(manifest + manifest.splitlines()[-1][:25])  # torn line
    last = read_csv(reference / "manifest.csv")[-1]["crop_file"]
    (out / last).unlink()                                       # a crop never renamed
    (out / last).with_name(f".{Path(last).name}.k2j4h1.tmp").write_bytes(b"half")  # atomic_write's
    gone = video_id("gone.mp4")                                 # a video never completed
    orphan = f"real/{gone}_000003.png"
    shutil.copy(out / read_csv(reference / "manifest.csv")[0]["crop_file"], out / orphan)
    (out / ".extract.journal").write_text(
        json.dumps({"video_id": gone, "files": [orphan, f"real/{gone}_000004.png"]}) + "\n"
        + '{"video_id": "torn')                                 # a kill mid-line
    foreign = {"real/notes.txt": b"mine", "real/IMG-20240101_123456.jpg": b"a holiday",
               f"real/{video_id('other.mp4')}_000001.png": b"named like a crop",
               "real/.x_000001.png.tmp": b"named like a temporary file", ".draft.tmp": b"x"}
    for rel, data in foreign.items():
        (out / rel).write_bytes(data)
    r = cli(*extract_args(clips, out))
    assert "3 already done" in r.stderr
    assert snapshot(out) == {**snapshot(reference),
                             **{rel: hashlib.sha256(d).hexdigest() for rel, d in foreign.items()}}


@pytest.mark.slow
def test_a_folder_that_is_not_a_dataset_is_refused(clips, tmp_path):
    """Clean-up in a folder of other files could delete them: such a folder is refused,
    naming what is in it; a folder a killed run left with only its lock is a dataset."""
    out = tmp_path / "photos"
    (out / "holiday").mkdir(parents=True)
    (out / "holiday" / "IMG-20240101_123456.jpg").write_bytes(b"a photo")
    (out / ".draft.tmp").write_bytes(b"a draft")
    before = snapshot(out)
    r = cli(*extract_args(clips / "clip0.mp4", out), check=False)
    assert r.returncode == 2
    assert "is not empty and is not an extract dataset" in r.stderr
    assert ".draft.tmp" in r.stderr and "holiday" in r.stderr
    assert snapshot(out) == before and sorted(os.listdir(out)) == [".draft.tmp", "holiday"]
    started = tmp_path / "started"
    started.mkdir()
    (started / ".extract.lock").write_text("")
    cli(*extract_args(clips / "clip0.mp4", started))
    assert len(read_csv(started / "videos.csv")) == 1


@pytest.mark.slow
def test_an_output_that_is_an_input_is_refused(clips, tmp_path):
    src = tmp_path / "videos"
    copy(clips / "clip0.mp4", src / "a.mp4")
    labels = src / "labels.csv"
    labels.write_text("path,label\na.mp4,real\n")
    before = snapshot(src)
    for args in (["--out", src, "--label", "real"],                      # the input folder
                 ["--out", tmp_path / "ds", "--contact-sheet", src / "a.mp4"],
                 ["--labels", labels, "--out", tmp_path / "ds", "--contact-sheet", labels]):
        r = cli("extract", src, "--frames", 1, *args, check=False)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "is the same file as" in r.stderr and "refusing to overwrite it" in r.stderr
    r = cli("extract", src, "--frames", 1, "--out", tmp_path / "ds", "--contact-sheet",
            tmp_path / "ds" / "extract.json", check=False)
    assert r.returncode == 2 and "are the same file" in r.stderr
    assert snapshot(src) == before and not (tmp_path / "ds").exists()
