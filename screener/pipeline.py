"""The per-video unit of work: sampled frames -> faces -> aligned 256x256 crops -> people.

`crops_from_video` is what every engine runs for one video (in-process, in a process pool, or as
a Ray task) and what `extract` writes to disk. It never raises for a bad video: the reason goes
into `VideoCrops.error`, so one bad file never stops a batch. Every face above the minimum size
is kept and linked into people across the sampled frames (`people.link`), here, so every engine
and `extract` see the same people; `SampleOptions.largest_face` keeps only the largest face of a
frame and links nothing. Scoring is not done here: crops from many videos are batched together
by the engine.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from . import align, detect, people
from .errors import VideoError
from .options import SampleOptions
from .sources import readable
from .video import NO_FRAME, VideoInfo, open_video

log = logging.getLogger(__name__)


@dataclass
class FaceCrop:
    frame_index: int
    time_s: float
    box: tuple[float, float, float, float]   # x, y, w, h in frame pixels
    keypoints: np.ndarray                    # (6, 2) frame pixels
    score: float                             # detector confidence
    crop: np.ndarray = field(repr=False)     # (256, 256, 3) uint8
    face_index: int = 0                      # 0 = largest face of its frame
    person: int | None = None                # 1, 2, ... in order of appearance (None: not linked)


@dataclass
class VideoCrops:
    path: str
    info: VideoInfo | None = None
    frames_sampled: int = 0
    frames_with_face: int = 0
    faces_too_small: int = 0
    faces_cut_off: int = 0   # more than align.MAX_OUTSIDE of the crop outside the frame
    crops: list[FaceCrop] = field(default_factory=list)
    error: str | None = None
    frame_times_s: list[float] = field(default_factory=list)  # every sampled frame's time

    @property
    def ok(self) -> bool:
        return self.error is None


def find_faces(detector: detect.FaceDetector, rgb: np.ndarray, options: SampleOptions,
               n: int = 0, prev: list[detect.Face] = ()) -> list[detect.Face]:
    """The faces of the `n`-th sampled frame of a video at or above `options.min_score`,
    largest first: the faces `prev` kept from the previous sampled frame, each followed with
    one close-up run, or a search of the whole frame (every `research_every`-th frame, and
    whenever a face cannot be followed or two follow the same one)."""
    again = prev and options.research_every > 0 and n % options.research_every != 0
    found = None
    if again:
        tracked = [detector.track(rgb, p) for p in prev]
        if all(t is not None for t in tracked) and not any(
                detect._iou(a.box, b.box) >= 0.3
                for i, a in enumerate(tracked) for b in tracked[i + 1:]):
            found = sorted(tracked, key=lambda f: -f.size_px)
    if found is None:
        found = detector.detect(rgb, "largest" if options.largest_face else "people")
    return [f for f in found if f.score >= options.min_score]


def crops_from_video(path, options: SampleOptions = SampleOptions(),
                     detector: detect.FaceDetector | None = None) -> VideoCrops:
    """Sample a video (a file, or an object: see screener.sources), find and align its faces.
    Bad input ends up in `.error`, never raised."""
    path = str(path)
    result = VideoCrops(path)
    try:
        detector = detector or detect.default_detector()
        # An object in a store is copied to a local file for as long as it is read.
        with readable(path) as local:
            info, frames = open_video(local, options.frames, options.every_s, name=path)
            result.info = info
            prev = []  # the faces followed from the previous sampled frame
            for n, frame in enumerate(frames):
                result.frames_sampled += 1
                result.frame_times_s.append(frame.time_s)
                found = find_faces(detector, frame.rgb, options, n, prev)
                big = [f for f in found if f.size_px >= options.min_face]
                result.faces_too_small += len(found) - len(big)
                whole = [f for f in big if align.outside_share(frame.rgb.shape, f.keypoints)
                         <= align.MAX_OUTSIDE]
                result.faces_cut_off += len(big) - len(whole)
                big = whole
                if options.largest_face:
                    big = big[:1]
                prev = big
                if big:
                    result.frames_with_face += 1
                for k, face in enumerate(big):
                    result.crops.append(FaceCrop(
                        frame.index, frame.time_s, tuple(float(v) for v in face.box),
                        face.keypoints, face.score, align.align(frame.rgb, face.keypoints),
                        k))
            if not options.largest_face:
                ids = people.link(result.crops, result.frame_times_s)
                for crop, person in zip(result.crops, ids):
                    crop.person = person + 1
    except VideoError as e:
        result.error = str(e)
    except MemoryError:
        result.error = "out of memory while decoding (frames too large?)"
    except Exception as e:  # a decoder or detector bug on one file must not stop the batch
        result.error = internal_error(path, e).error
    if result.error is None and result.frames_sampled == 0:
        result.error = NO_FRAME
    return result


def internal_error(path, e: BaseException, logged: bool = False) -> VideoCrops:
    """A bug met while reading a video, not a bad video: the video becomes an error row and
    the run goes on. Logged with its traceback here unless it was where it happened."""
    if not logged:
        log.error("%s: unexpected failure", path, exc_info=e)
    return VideoCrops(str(path), error=f"internal error: {type(e).__name__}: {e}")
