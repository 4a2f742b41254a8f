"""Per-video aggregation: P(fake) of each scored face -> one VideoResult with a verdict.

The faces of a video are linked into people (`pipeline`, `people.link`). Each person is judged
as a whole video once was: the mean P(fake) of their faces, and "low evidence" when they have
few faces or appear in few of the sampled frames (a passer-by). The video's fake_score and
verdict are those of its most suspicious person with enough evidence (`fake_person`); a person
with low evidence is reported but never decides. When nobody has enough evidence (or faces are
not linked: largest-face mode), every face counts, pooled, and the note says how thin that is.
The verdict is FAKE when fake_score is at or above the threshold.

A video without a score never gets a verdict: status `no_face` (it was read, no face was found)
or `error` (it could not be read; `error` says why); nor does the row an incremental scan keeps
of a file that is gone (`missing`, `VideoResult.gone`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np


OK, NO_FACE, ERROR = "ok", "no_face", "error"
MISSING = "missing"  # an incremental scan's kept row of a file that is gone (--keep-missing)
FAKE, REAL = "FAKE", "REAL"

# A verdict that rests on few faces is said to: fewer than LOW_EVIDENCE_FACES scored faces, or
# a face in under LOW_EVIDENCE_SHARE of the sampled frames (people walking past, backs of heads,
# faces too small). The verdict stays what the scores say; the `note` column says how thin it is.
LOW_EVIDENCE_FACES = 8
LOW_EVIDENCE_SHARE = 0.25


@dataclass
class FaceScore:
    """One scored face: a row of `--frames-out`. Box and keypoints are in source-frame pixels."""
    path: str
    frame_index: int
    face_index: int      # 0 is the largest face of its frame (the only one with --largest-face)
    time_s: float
    box_x: float
    box_y: float
    box_w: float
    box_h: float
    detector_score: float
    p_fake: float
    person: int | None = None  # 1, 2, ... in order of appearance; None with --largest-face


@dataclass
class PersonResult:
    """One person of a video: their faces' scores, judged as a video's used to be."""
    id: int                      # 1, 2, ... in order of first appearance
    fake_score: float            # mean P(fake) over their faces
    fake_score_max: float
    faces: int
    frames: int                  # sampled frames with their face
    first_s: float               # their first and last face's time
    last_s: float
    low_evidence: bool           # too few faces or frames to decide (see LOW_EVIDENCE_*)


@dataclass
class VideoResult:
    """One report row. The field order is the report's column order (see README "Scanning")."""
    path: str
    status: str                          # ok | no_face | error | missing
    verdict: str = ""                    # FAKE | REAL, "" unless status is ok
    fake_score: float | None = None      # mean P(fake) over fake_person's faces (or all)
    fake_score_median: float | None = None
    fake_score_max: float | None = None
    fake_share: float | None = None      # share of faces with P(fake) >= threshold
    faces_scored: int = 0
    frames_sampled: int = 0
    frames_with_face: int = 0
    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str = ""
    model: str = ""
    threshold: float | None = None
    error: str = ""                      # why there is no verdict (not ok), else ""
    note: str = ""                       # "low evidence: N of M frames" (see LOW_EVIDENCE_*)
    people: int | None = None            # people with enough evidence, judged (ok rows)
    fake_person: int | None = None       # the one whose faces give fake_score (None: pooled)
    # Not report columns: each person found (judged or not), the scored faces (--frames-out)
    # and the time of every sampled frame (a timeline shows the gaps where no face was found).
    persons: list[PersonResult] = field(default_factory=list, repr=False)
    faces: list[FaceScore] = field(default_factory=list, repr=False)
    frame_times_s: list[float] = field(default_factory=list, repr=False)
    # Thumbnails for the visual report (media.VideoMedia): a few small JPEGs, not compared.
    media: object = field(default=None, repr=False, compare=False)

    def row(self) -> dict:
        """The report columns, in order, as plain Python values (None where there is no value)."""
        return {name: getattr(self, name) for name in COLUMNS}


    def gone(self) -> "VideoResult":
        """The kept row of a file that is gone (--keep-missing): the video as last scanned, but
        no verdict, score or faces, which a reader would take for a current finding; `error`
        says what the last scan found."""
        if self.status == OK:
            last = f"{self.verdict}, fake_score {self.fake_score:.3f}"
        else:
            last = f"{self.status}: {self.error}" if self.error else self.status
        return replace(self, status=MISSING, verdict="", fake_score=None, fake_score_median=None,
                       fake_score_max=None, fake_share=None, note="", people=None,
                       fake_person=None, persons=[], faces=[],
                       frame_times_s=[], media=None,
                       error=f"no longer found (--keep-missing); the last scan said {last}")


NOT_COLUMNS = ("persons", "faces", "frame_times_s", "media")
COLUMNS = tuple(f.name for f in fields(VideoResult) if f.name not in NOT_COLUMNS)
FACE_COLUMNS = tuple(f.name for f in fields(FaceScore))


@dataclass
class ScoreStats:
    mean: float
    median: float
    max: float
    share_at_or_above: float


def score_stats(p_fake, threshold: float) -> ScoreStats:
    """Mean, median, max and share at or above `threshold` of a non-empty array of P(fake)."""
    p = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("no scores to aggregate")
    if not np.all(np.isfinite(p)):
        raise ValueError("scores contain NaN or infinity")
    return ScoreStats(mean=float(p.mean()), median=float(np.median(p)), max=float(p.max()),
                      share_at_or_above=float(np.mean(p >= threshold)))


def _video_fields(info) -> dict:
    if info is None:
        return {}
    return dict(duration_s=float(info.duration_s), fps=float(info.fps), width=int(info.width),
                height=int(info.height), codec=str(info.codec))


def error_result(path: str, reason: str, *, info=None, model: str = "",
                 threshold: float | None = None, frames_sampled: int = 0) -> VideoResult:
    return VideoResult(path=str(path), status=ERROR, error=_one_line(reason), model=model,
                       threshold=threshold, frames_sampled=frames_sampled, **_video_fields(info))


def aggregate(video, p_fake, *, model: str, threshold: float) -> VideoResult:
    """Build a video's result from its crops (a pipeline.VideoCrops) and their P(fake) scores,
    one score per crop in the same order. A video without a sampled frame is an error
    (pipeline.crops_from_video says so); the thumbnails are the caller's (media.keep)."""
    p = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if video.error:
        return error_result(video.path, video.error, info=video.info, model=model,
                            threshold=threshold, frames_sampled=video.frames_sampled)
    if len(p) != len(video.crops):
        raise ValueError(f"{len(p)} scores for {len(video.crops)} crops of {video.path}")
    base = dict(path=str(video.path), frames_sampled=video.frames_sampled,
                frames_with_face=video.frames_with_face, model=model, threshold=threshold,
                frame_times_s=[float(t) for t in getattr(video, "frame_times_s", [])],
                **_video_fields(video.info))
    if len(p) == 0:
        reason = f"no face found in {video.frames_sampled} sampled frames"
        skipped = [f"{n} faces {why}" for n, why in (
            (getattr(video, "faces_too_small", 0), "smaller than the minimum face size"),
            (getattr(video, "faces_cut_off", 0), "cut off by the frame edge")) if n]
        if skipped:
            reason += f" ({' and '.join(skipped)} were skipped)"
        return VideoResult(status=NO_FACE, error=reason, **base)
    if not np.all(np.isfinite(p)):  # a failure is never a score
        return error_result(video.path, "the model returned NaN scores", info=video.info,
                            model=model, threshold=threshold, frames_sampled=video.frames_sampled)
    faces = [FaceScore(path=str(video.path), frame_index=int(c.frame_index),
                       face_index=int(getattr(c, "face_index", 0)),
                       person=getattr(c, "person", None), time_s=float(c.time_s),
                       box_x=float(c.box[0]), box_y=float(c.box[1]), box_w=float(c.box[2]),
                       box_h=float(c.box[3]), detector_score=float(c.score), p_fake=float(pf))
             for c, pf in zip(video.crops, p)]
    persons = judge_people(faces, video.frames_sampled, threshold)
    judged = [q for q in persons if not q.low_evidence]
    decider = max(judged, key=lambda q: q.fake_score, default=None)
    mine = p if decider is None else np.array([f.p_fake for f in faces
                                               if f.person == decider.id])
    s = score_stats(mine, threshold)
    note = "" if decider else low_evidence(len(p), video.frames_with_face, video.frames_sampled)
    return VideoResult(status=OK, verdict=FAKE if s.mean >= threshold else REAL,
                       fake_score=s.mean, fake_score_median=s.median, fake_score_max=s.max,
                       fake_share=s.share_at_or_above, faces_scored=len(p),
                       people=len(judged) if persons else None,
                       fake_person=decider.id if decider else None, persons=persons,
                       faces=faces, note=note, **base)


def judge_people(faces: list[FaceScore], frames_sampled: int, threshold: float
                 ) -> list[PersonResult]:
    """Each person's result from a video's scored faces (in order of their ids); [] when the
    faces were not linked into people."""
    by_person: dict[int, list[FaceScore]] = {}
    for f in faces:
        if f.person is not None:
            by_person.setdefault(int(f.person), []).append(f)
    out = []
    for pid in sorted(by_person):
        mine = by_person[pid]
        s = score_stats([f.p_fake for f in mine], threshold)
        frames = len({f.frame_index for f in mine})
        times = [f.time_s for f in mine]
        out.append(PersonResult(pid, s.mean, s.max, len(mine), frames, min(times), max(times),
                                bool(low_evidence(len(mine), frames, frames_sampled))))
    return out


def low_evidence(faces_scored: int, frames_with_face: int, frames_sampled: int) -> str:
    """The note of a verdict that rests on few faces, else ""."""
    if faces_scored < LOW_EVIDENCE_FACES or frames_with_face < LOW_EVIDENCE_SHARE * frames_sampled:
        return f"low evidence: {frames_with_face} of {frames_sampled} frames"
    return ""


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class Summary:
    """Counts over a scan's results, for the final line and the JSON report."""
    videos: int = 0
    fake: int = 0
    real: int = 0
    no_face: int = 0
    errors: int = 0
    low_evidence: int = 0   # of the fake and real ones: verdicts on few faces (VideoResult.note)

    def add(self, r: VideoResult) -> None:
        self.videos += 1
        if r.status == ERROR:
            self.errors += 1
        elif r.status == NO_FACE:
            self.no_face += 1
        elif r.verdict == FAKE:
            self.fake += 1
        else:
            self.real += 1
        if r.status == OK and r.note:
            self.low_evidence += 1
