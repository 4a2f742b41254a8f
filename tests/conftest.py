"""Shared fixtures: a tiny model file, one detector and one scorer per session, clip factories.
Helpers that tests import (models, placements, broken inputs) are in helpers.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import S3Server, StubScorer, W, H, bad_inputs, build_tiny_model, one_face

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def lite_cache(tmp_path_factory) -> Path:
    """LiteRT's converted models (screener.lite) go to a folder of this session, not the
    user's cache; CLI subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["SCREENER_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def scorer(tiny_model):
    from screener.scoring import load_model
    return load_model(tiny_model)


@pytest.fixture(scope="session")
def detector():
    from screener.detect import FaceDetector
    d = FaceDetector()
    yield d
    d.close()


@pytest.fixture
def stub_scorer():
    return StubScorer()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir):
    """make_clip(name, **face_clip kwargs) -> path of a clip, made once per session."""
    from screener import synth
    made: dict[str, Path] = {}

    def make(name: str, **kw) -> Path:
        if name not in made:
            kw.setdefault("width", W)
            kw.setdefault("height", H)
            kw.setdefault("n_frames", 12)
            made[name] = synth.face_clip(clip_dir / name, **kw)
        return made[name]
    return make


@pytest.fixture(scope="session")
def face_video(make_clip):
    return make_clip("face.mp4", faces=[one_face("collins")])


@pytest.fixture(scope="session")
def two_face_video(make_clip):
    return make_clip("two_faces.mp4", faces=[one_face("hopper", x=0, y=20, face_px=80),
                                             one_face("collins", x=190, y=60, face_px=72)],
                     width=400, height=260)


@pytest.fixture(scope="session")
def no_face_video(make_clip):
    return make_clip("no_face.mp4", faces=[])


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory, face_video) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, bad_inputs(folder, face_video)


@pytest.fixture(scope="session")
def extract_clips(tmp_path_factory):
    """Five short face clips (two photos, different backgrounds) in a folder (extract's tests)."""
    from screener import synth
    root = tmp_path_factory.mktemp("x")
    for i in range(5):
        synth.face_clip(root / f"clip{i}.mp4", 320, 240, 10, seed=i,
                        faces=[one_face(("collins", "hopper")[i % 2], x=50 + 8 * i)])
    return root


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A local S3 server (helpers.S3Server), started once, with this process's (and so its
    subprocesses' and a Ray cluster's) AWS_* variables pointing at it. Skipped without the s3
    extra or moto."""
    pytest.importorskip("s3fs", reason="the s3 extra is not installed (pip install -e '.[s3]')")
    pytest.importorskip("moto.server", reason="moto is not installed (pip install -e '.[test]')")
    server = S3Server(tmp_path_factory.mktemp("s3"))
    before = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.close()
