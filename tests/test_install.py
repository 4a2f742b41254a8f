"""What an install carries and runs with (issue 22): the default model inside the wheel, one
TensorFlow, and no native library's chatter on stderr from any command."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import copy, write_legacy_h5

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CARD = json.loads((REPO / "trained_models" / "screener-meso.json").read_text())
# What `git ls-files` would give, without needing git: the tree minus what a build or a run makes.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "artifacts", "runs", "data", "report.*")


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not (importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")),
                    reason="building the wheel offline needs setuptools and wheel in this venv")
def test_the_wheel_alone_carries_the_default_model_and_scans_with_it(tmp_path, face_video):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    pip = [sys.executable, "-m", "pip", "-q"]
    built = subprocess.run([sys.executable, "-m", "pip", "-v", "wheel", "--no-deps",
                            "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
                           check=True, capture_output=True, text=True, timeout=300)
    # setuptools warns of a data folder missing from `packages` (issue 28): nothing of ours may
    # warn. (A fresh venv's setuptools 65 with a new `wheel` says bdist_wheel moved: theirs.)
    warned = re.findall(r"\w*(?:Warning|InformationOnly): .*", built.stdout + built.stderr)
    assert [w for w in warned if "canonical location of the 'bdist_wheel'" not in w] == []
    (wheel,) = (tmp_path / "dist").glob("screener-*.whl")
    # Every file of screener/ goes in (data folders too); training/ is the checkout's.
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {f.relative_to(src).as_posix() for f in (src / "screener").rglob("*")
              if f.is_file() and "__pycache__" not in f.parts}
    assert source - names == set() and {n.split("/")[0] for n in names} == {
        "screener", f"screener-{wheel.name.split('-')[1]}.dist-info"}
    site = tmp_path / "site"
    subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    for name in ("screener-meso.keras", "screener-meso.json"):
        shipped = site / "screener" / "trained_models" / name
        assert shipped.read_bytes() == (REPO / "trained_models" / name).read_bytes(), name

    # Elsewhere, with the installed copy first on the path (this venv holds the dependencies).
    elsewhere = tmp_path / "elsewhere"
    video = copy(face_video, elsewhere / "clip.mp4")
    env = dict(os.environ, PYTHONPATH=str(site))
    found = subprocess.run([sys.executable, "-c", "import screener.scoring as s; "
                            "print(s.__file__); print(s.default_model_path())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module, model = found.stdout.split()
    assert Path(module).is_relative_to(site) and Path(model).is_relative_to(site)
    p = subprocess.run([str(site / "bin" / "screener"), "scan", video.name, "--no-state",
                        "--out", "report.csv"], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = rows(elsewhere / "report.csv")
    assert row["status"] == "ok" and row["model"] == CARD["name"], row


def test_one_distribution_owns_the_tensorflow_folder():
    """setup.cfg asks for `tensorflow`, never `tensorflow-cpu` as well (the gpu extra's CUDA
    build would then share a folder with a CPU-only one)."""
    from screener.device import tensorflow_distributions
    assert tensorflow_distributions() == ["tensorflow"]


# --- stderr: screener's own lines only ----------------------------------------------------------

def run_quiet(tmp_path, args, cache: Path, *, python_module="screener") -> subprocess.CompletedProcess:
    env = dict(os.environ, SCREENER_CACHE_DIR=str(cache))
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "OPENCV_LOG_LEVEL"):
        env.pop(name, None)  # what screener sets itself, not the test session's
    return subprocess.run([sys.executable, "-m", python_module, *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def foreign_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("screener: ")]


def test_no_native_library_speaks_on_stderr(tmp_path, face_video, tiny_model):
    """Each command that loads TensorFlow, with an empty model cache: the first scan with a
    model (it converts it for LiteRT), --model X.h5, --html (the heat maps load Keras),
    --model notes.csv, and training's --help: with -q nothing on stderr but errors, without
    -q nothing but screener's own lines."""
    out = tmp_path / "r.csv"
    h5 = tmp_path / "Meso4_like.h5"
    from screener import nets
    write_legacy_h5(nets.build("meso4"), h5)
    (tmp_path / "notes.csv").write_text("path,label\n")
    first = ["scan", face_video, "--no-state", "--out", out, "--model", tiny_model]
    commands = {
        "first scan, converts": (first, tmp_path / "c1"),
        "first scan, converts, -q": (first + ["-q"], tmp_path / "c2"),
        "legacy .h5, -q": (["scan", face_video, "--no-state", "--out", out, "--model", h5, "-q"],
                           tmp_path / "c3"),
        "--html heat maps": (first + ["--html", tmp_path / "r.html"], tmp_path / "c4"),
    }
    for what, (args, cache) in commands.items():
        p = run_quiet(tmp_path, args, cache)
        assert p.returncode == 0, (what, p.stderr[-2000:])
        assert foreign_lines(p.stderr) == [], what
        if "-q" in args:
            assert p.stderr == "", what
    p = run_quiet(tmp_path, ["scan", face_video, "--no-state", "--model", tmp_path / "notes.csv",
                             "-q"], tmp_path / "c5")
    assert p.returncode == 3 and p.stderr.splitlines() == [
        f"screener: error: {tmp_path / 'notes.csv'}: unknown model file type (expected .keras, "
        ".h5 or .hdf5)"]
    p = run_quiet(tmp_path, ["--help"], tmp_path / "c6", python_module="training.train")
    assert p.returncode == 0 and p.stderr == "" and "--data" in p.stdout
