"""Golden reports: the CSV, JSON and frames CSV of a scan, byte for byte (times aside).

What is scanned: a copy of `sample_videos/` and clips made here (one face, two faces, a face
too small, no face, the broken files of `bad_inputs`, a name a spreadsheet would evaluate and
a non-ASCII one), with a Meso-4 whose weights come from a fixed seed (`build_seeded_model`):
nothing depends on the shipped model in `trained_models/`, which may be replaced at any time.
The scans go through the command line, as a user runs them, on the CPU (`--device cpu`: the
model under LiteRT, the same numbers on every run of this machine), from a folder of their own
so every path in the reports is relative:

- `stream.json`, `stream_frames.csv`: `--no-state`, JSON, `--every 0.25 --all-faces`;
- `state.csv`, `state_frames.csv`: an incremental scan (a new state: it scans everything);
- `reused.json`, `reused_frames.csv`: the same state again into another report (every row
  reused from the state);
- the same CSV again on standard output, from a streaming scan and from the state.

Times aside: the JSON reports' `elapsed_s`, and the model's SHA-256 (a .keras file records
when it was saved) are replaced by placeholders before comparing.

The goldens were captured with the code before the refactor of issue 20 and must not change
unless the report format changes on purpose. Then regenerate them with
`SCREENER_GOLDEN_UPDATE=1 python -m pytest tests/test_golden.py`, read `git diff tests/golden/`
line by line, and commit the files with the change that explains them. In update mode a test
writes its goldens and is skipped: it compares nothing, so it never passes (output compared with
the goldens it just wrote would prove nothing).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import bad_inputs, one_face

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("SCREENER_GOLDEN_UPDATE"))
_updated: set[str] = set()  # goldens written by this session: later checks compare with them
THRESHOLD = 0.45  # between the seeded model's scores of the sample clips: FAKE and REAL rows


def build_seeded_model(folder: Path, seed: int = 20) -> Path:
    """A Meso-4 with weights drawn from numpy's generator with a fixed seed (He-scaled, the
    last layer scaled up so scores spread over the unit interval), and its card."""
    from screener import nets
    model = nets.build("meso4")
    rng = np.random.default_rng(seed)
    for layer in nets.weight_layers(model):
        weights = [rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[:-1])), w.shape).astype(w.dtype)
                   if w.ndim >= 2 else w for w in layer.get_weights()]
        if layer.name == "p_fake":
            weights[0] = weights[0] * 40
        layer.set_weights(weights)
    path = folder / "golden.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({
        "name": "golden-seeded", "arch": "meso4", "threshold": THRESHOLD,
        "metrics": {"test": {"auc": 0.5}}, "limits": ["weights from a seed: not a detector"]}))
    return path


def make_clips(folder: Path) -> None:
    """Small clips, encoded with one thread (libx264's output depends on its thread count)."""
    from screener import synth
    folder.mkdir()
    one = {"options": {"threads": "1"}, "width": 320, "height": 240, "n_frames": 12}
    face = synth.face_clip(folder / "face.mp4", faces=[one_face("collins")], **one)
    synth.face_clip(folder / "two_faces.mp4", **{**one, "width": 400, "height": 260},
                    faces=[one_face("hopper", x=0, y=20, face_px=80),
                           one_face("collins", x=190, y=60, face_px=72)])
    synth.face_clip(folder / "small_face.mp4", faces=[one_face("hopper", face_px=40)], **one)
    synth.face_clip(folder / "no_face.mp4", faces=[], seed=3, **one)
    synth.face_clip(folder / "café.mp4", faces=[one_face("hopper", face_px=100)], drift_px=2,
                    **one)
    bad_inputs(folder / "bad", face)
    shutil.copyfile(face, folder.parent / "=SUM(1).mp4")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    shutil.copytree(ROOT / "sample_videos", root / "sample_videos",
                    ignore=shutil.ignore_patterns("*.py", "*.md"))
    make_clips(root / "clips")
    (root / "model").mkdir()
    build_seeded_model(root / "model")
    return root


def screener(root: Path, *args: str) -> str:
    """`screener scan` on the workspace's inputs; its standard output."""
    cmd = [sys.executable, "-m", "screener", "scan", "sample_videos", "clips", "=SUM(1).mp4",
           "--model", "model/golden.keras", "--device", "cpu", "-q", *args]
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


def timeless(text: str) -> str:
    text = re.sub(r'"elapsed_s": [0-9.eE+-]+', '"elapsed_s": 0', text)
    return re.sub(r'"sha256": "[0-9a-f]{64}"', '"sha256": "(the model file\'s)"', text)


def check(*named: tuple[str, str], update: bool = UPDATE, folder: Path = GOLDEN) -> None:
    """Compare each (golden name, text) with its golden. In update mode write them instead
    (the first text of a name this session) and skip the test: nothing was compared."""
    if update:
        for name, text in named:
            if name not in _updated:
                folder.mkdir(exist_ok=True)
                (folder / name).write_bytes(timeless(text).encode("utf-8"))
                _updated.add(name)
        pytest.skip("SCREENER_GOLDEN_UPDATE: the goldens were written, nothing was compared")
    for name, text in named:
        path = folder / name
        assert path.is_file(), f"no golden {path}: SCREENER_GOLDEN_UPDATE=1 makes it"
        want = path.read_bytes().decode("utf-8")
        assert timeless(text) == want, f"{name} differs from its golden (see the docstring)"


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_streaming_scan_writes_the_golden_json_and_frames(workspace):
    screener(workspace, "--no-state", "--out", "stream.json", "--frames-out",
             "stream_frames.csv", "--every", "0.25", "--all-faces")
    check(("stream.json", read(workspace / "stream.json")),
          ("stream_frames.csv", read(workspace / "stream_frames.csv")))


def test_incremental_scan_writes_the_golden_csv_and_frames(workspace):
    screener(workspace, "--out", "state.csv", "--frames-out", "state_frames.csv")
    # Every row again from the state, into JSON, and as CSV on standard output.
    screener(workspace, "--state", "state.csv.state.sqlite", "--out", "reused.json",
             "--frames-out", "reused_frames.csv")
    again = screener(workspace, "--state", "state.csv.state.sqlite")
    check(("state.csv", read(workspace / "state.csv")),
          ("state_frames.csv", read(workspace / "state_frames.csv")),
          ("reused.json", read(workspace / "reused.json")),
          ("state_frames.csv", read(workspace / "reused_frames.csv")), ("state.csv", again))


def test_streaming_scan_to_stdout_writes_the_golden_csv(workspace):
    check(("state.csv", screener(workspace, "--no-state")))


def test_update_mode_writes_the_goldens_and_compares_nothing(tmp_path):
    """With SCREENER_GOLDEN_UPDATE set the test compared its output with itself and passed."""
    with pytest.raises(pytest.skip.Exception, match="nothing was compared"):
        check(("x.csv", "a,b\n"), ("x.csv", "other\n"), update=True, folder=tmp_path)
    assert (tmp_path / "x.csv").read_text() == "a,b\n"  # the first text of the session
    with pytest.raises(AssertionError, match="differs from its golden"):
        check(("x.csv", "other\n"), update=False, folder=tmp_path)
    check(("x.csv", "a,b\n"), update=False, folder=tmp_path)
