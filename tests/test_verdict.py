"""Aggregation arithmetic: per-face P(fake) -> one verdict per video."""
from types import SimpleNamespace

import numpy as np
import pytest

from screener.verdict import (COLUMNS, FACE_COLUMNS, Summary, VideoResult, aggregate,
                              error_result, score_stats)

INFO = SimpleNamespace(duration_s=2.0, fps=25.0, width=320, height=240, codec="h264")


def video(n_crops, frames_sampled=8, frames_with_face=None, error=None, too_small=0):
    crops = [SimpleNamespace(frame_index=i, face_index=0, time_s=i / 25, box=(1, 2, 90, 90),
                             score=0.9, crop=None) for i in range(n_crops)]
    return SimpleNamespace(path="v.mp4", info=INFO, frames_sampled=frames_sampled,
                           frames_with_face=n_crops if frames_with_face is None else frames_with_face,
                           faces_too_small=too_small, crops=crops, error=error)


def test_stats_arithmetic():
    s = score_stats([0.1, 0.2, 0.6, 0.9], threshold=0.6)
    assert s.mean == pytest.approx(0.45)
    assert s.median == pytest.approx(0.4)
    assert s.max == pytest.approx(0.9)
    assert s.share_at_or_above == pytest.approx(0.5)  # 0.6 counts: "at or above"


def test_stats_refuse_empty_and_nan():
    with pytest.raises(ValueError):
        score_stats([], 0.5)
    with pytest.raises(ValueError):
        score_stats([0.5, float("nan")], 0.5)


@pytest.mark.parametrize("scores, threshold, verdict", [
    ([0.5, 0.5], 0.5, "FAKE"),          # mean exactly at the threshold is FAKE
    ([0.49, 0.5], 0.5, "REAL"),
    ([0.1, 0.1, 0.1, 0.95], 0.5, "REAL"),   # one very fake face does not decide: the mean does
    ([0.9, 0.8, 0.2], 0.6, "FAKE"),
    ([0.3], 0.2, "FAKE"),               # --threshold moves the verdict
])
def test_verdict_uses_mean_and_threshold(scores, threshold, verdict):
    r = aggregate(video(len(scores)), scores, model="m", threshold=threshold)
    assert r.status == "ok" and r.verdict == verdict
    assert r.fake_score == pytest.approx(np.mean(scores))
    assert r.fake_score_median == pytest.approx(np.median(scores))
    assert r.fake_score_max == pytest.approx(max(scores))
    assert r.fake_share == pytest.approx(np.mean(np.array(scores) >= threshold))
    assert r.faces_scored == len(scores) == len(r.faces)
    assert r.model == "m" and r.threshold == threshold and r.error == ""
    assert (r.width, r.height, r.fps, r.duration_s, r.codec) == (320, 240, 25.0, 2.0, "h264")


def test_face_rows_carry_each_score():
    r = aggregate(video(3), [0.1, 0.2, 0.3], model="m", threshold=0.5)
    assert [f.p_fake for f in r.faces] == pytest.approx([0.1, 0.2, 0.3])
    assert [f.frame_index for f in r.faces] == [0, 1, 2]
    assert (r.faces[0].box_x, r.faces[0].box_w, r.faces[0].detector_score) == (1, 90, 0.9)


def test_no_face_has_no_score_and_says_why():
    r = aggregate(video(0, frames_sampled=8, too_small=3), [], model="m", threshold=0.5)
    assert (r.status, r.verdict, r.fake_score, r.faces_scored) == ("no_face", "", None, 0)
    assert "8 sampled frames" in r.error and "3 faces smaller" in r.error


def test_error_is_never_a_score():
    r = aggregate(video(0, frames_sampled=0, error="truncated\nmp4"), [], model="m",
                  threshold=0.5)
    assert (r.status, r.verdict, r.fake_score) == ("error", "", None)
    assert r.error == "truncated mp4"  # one line
    r = aggregate(video(2), [0.5, float("nan")], model="m", threshold=0.5)
    assert r.status == "error" and r.fake_score is None
    # A video without a sampled frame comes from the per-video unit as an error (pipeline).
    from screener.video import NO_FRAME
    r = aggregate(video(0, frames_sampled=0, error=NO_FRAME), [], model="m", threshold=0.5)
    assert r.status == "error" and r.error == "no frame could be decoded"


def test_score_count_must_match_crops():
    with pytest.raises(ValueError):
        aggregate(video(2), [0.5], model="m", threshold=0.5)


def test_columns_are_the_documented_schema():
    assert COLUMNS == (
        "path", "status", "verdict", "fake_score", "fake_score_median", "fake_score_max",
        "fake_share", "faces_scored", "frames_sampled", "frames_with_face", "duration_s", "fps",
        "width", "height", "codec", "model", "threshold", "error", "note", "people",
        "fake_person")
    assert FACE_COLUMNS == ("path", "frame_index", "face_index", "time_s", "box_x", "box_y",
                            "box_w", "box_h", "detector_score", "p_fake", "person")
    assert tuple(error_result("x", "bad").row()) == COLUMNS


def test_summary_counts():
    s = Summary()
    for r in [VideoResult("a", "ok", "FAKE"), VideoResult("b", "ok", "REAL"),
              VideoResult("c", "no_face"), VideoResult("d", "error"),
              VideoResult("e", "ok", "FAKE", note="low evidence: 2 of 32 frames")]:
        s.add(r)
    assert vars(s) == dict(videos=5, fake=2, real=1, no_face=1, errors=1, low_evidence=1)
