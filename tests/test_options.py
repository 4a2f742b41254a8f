"""screener.options: the option objects, checked where they are made, and the keywords the
Python API takes for them (the same names as their fields)."""
from __future__ import annotations

import pytest

import screener
from screener.options import (EngineOptions, OptionsError, ReportOptions, SampleOptions,
                              ScanOptions, StateOptions, from_keywords)


def test_scan_takes_the_sampling_keywords_the_cli_has(face_video, scorer):
    """screener.scan(paths, min_face=...) raised TypeError before the options were objects."""
    [normal] = screener.scan([face_video], scorer=scorer, frames=3, workers=0)
    [small] = screener.scan([face_video], scorer=scorer, frames=3, workers=0, min_face=200)
    assert normal.status == "ok" and normal.faces_scored == 3
    assert small.status == "no_face" and "smaller than the minimum face size" in small.error
    [same] = screener.scan([face_video], ScanOptions(sample=SampleOptions(frames=3, min_face=200),
                                                     engine=EngineOptions(workers=0)),
                           scorer=scorer)
    assert same == small


def test_keywords_land_on_their_objects():
    options, report, state = from_keywords(with_report=True, with_state=True, frames=8,
                                           min_face=48, engine="ray", workers=3, model="m.keras",
                                           out="r.JSON", state="s.sqlite", settle_s=5)
    assert options.sample == SampleOptions(frames=8, min_face=48)
    assert options.engine == EngineOptions("ray", workers=3) and options.model == "m.keras"
    assert report == ReportOptions(out="r.JSON", fmt="json")
    assert state == StateOptions(path="s.sqlite", settle_s=5)
    base = ScanOptions(threshold=0.7, sample=SampleOptions(frames=4))
    assert from_keywords(options=base, largest_face=True) == ScanOptions(
        threshold=0.7, sample=SampleOptions(frames=4, largest_face=True))


def test_a_keyword_no_object_has_is_a_type_error():
    with pytest.raises(TypeError, match="min_faces"):
        screener.scan(["x.mp4"], min_faces=64)
    with pytest.raises(TypeError, match="settle_s"):  # a state's option, not a plain scan's
        from_keywords(settle_s=5)


@pytest.mark.parametrize("make, says", [
    (lambda: SampleOptions(frames=0), "frames must be at least 1"),
    (lambda: SampleOptions(every_s=0), "every_s must be positive"),
    (lambda: SampleOptions(min_score=1.5), "min_score"),
    (lambda: EngineOptions(address="head:6379"), "^address needs engine ray$"),
    (lambda: EngineOptions(workers=0, video_timeout_s=5),
     r"^video_timeout_s needs worker processes \(workers 1 or more\)$"),
    (lambda: EngineOptions(batch_size=0), "batch_size"),
    (lambda: ScanOptions(runtime="gpu"), "unknown runtime 'gpu'"),
    (lambda: ScanOptions(threshold=2), "threshold"),
    (lambda: ReportOptions(fmt="xml"), "unknown report format"),
    (lambda: StateOptions(settle_s=-1), "settle_s"),
])
def test_bad_values_are_refused_where_the_object_is_made(make, says):
    with pytest.raises(OptionsError, match=says):
        make()


def test_a_ray_engine_may_have_a_time_limit_without_local_workers():
    assert EngineOptions("ray", workers=0, video_timeout_s=5).video_timeout_s == 5


def test_the_sampling_options_name_a_stored_row_as_they_always_did():
    """An incremental state keys its rows by SampleOptions.key(): largest-face mode keeps the
    names of the time it was the only mode (a state made then, migrated, stays valid for it);
    people, the default, has its own, so a state scanned the other way is rescanned."""
    before = dict(frames=32, every_s=None, all_faces=False, min_face=64, min_score=0.6,
                  research_every=8)
    assert SampleOptions(largest_face=True).key() == before
    assert SampleOptions().key() == {**{k: v for k, v in before.items() if k != "all_faces"},
                                     "people": True}
    assert SampleOptions().key(SampleOptions.SHOWN) == dict(frames=32, every_s=None,
                                                            people=True, min_face=64)


def test_extract_takes_the_same_objects_or_keywords(tmp_path, face_video, detector):
    a = screener.extract([face_video], tmp_path / "a", frames=2, min_face=48, detector=detector)
    b = screener.extract([face_video], tmp_path / "b", sample=SampleOptions(frames=2, min_face=48),
                         detector=detector)
    assert a.crops == b.crops == 2
    assert (tmp_path / "a" / "extract.json").read_text() == \
        (tmp_path / "b" / "extract.json").read_text()
    with pytest.raises(TypeError, match="threshold"):
        screener.extract([face_video], tmp_path / "c", threshold=0.5)
