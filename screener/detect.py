"""Find faces with mediapipe BlazeFace: a box, six keypoints and a score per face.

One face pipeline for everything: scan, extract and training.align all call `FaceDetector`, then
`align.align`, so a model is always trained on crops framed exactly as the scan frames them.

Detection combines the two BlazeFace models mediapipe 0.10.21 shipped (vendored in
`screener/models/`, Apache-2.0; nothing is downloaded):
- short-range (128 px input) on the whole frame: faces that fill the frame;
- full-range (192 px input) on the whole frame: faces down to ~5% of the frame width;
- full-range on overlapping tiles when the frame is large: small faces in 1080p and 4K.
Overlapping detections are merged by IoU.
"""
from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .options import MIN_SCORE
from .quiet import silenced

log = logging.getLogger(__name__)

MODELS = Path(__file__).parent / "models"
SHORT_RANGE = MODELS / "face_detection_short_range.tflite"
FULL_RANGE = MODELS / "face_detection_full_range_sparse.tflite"

# BlazeFace keypoints, in mediapipe's order, as seen in the image: 0 the eye on the image's
# left (the subject's right eye), 1 the other eye, 2 nose tip, 3 mouth centre, 4 and 5 ears.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")

# MIN_FACE_PX (the smallest face scored) and MIN_SCORE (the lowest detector score kept) are
# defined with the options they are the defaults of.
# Frames whose larger side is at least this get full-range tiles as well (see bench/faces.py).
TILE_FROM_PX = 1280
TILE_PX = 960
# Full-range candidates down to this score go to the close-up check; one the check cannot
# confirm is kept only above REFINE_KEEP_SCORE. (Tight face crops pasted on real 1080p frames:
# full-range scores them 0.5-0.8 and misses 40% at 96 px with a 0.5 cut; the check scores them
# ~0.9. See bench/faces.py.)
CANDIDATE_SCORE = 0.25
# Short-range detections below this are often small faces with loose boxes: look further.
SURE_SCORE = 0.75
REFINE_KEEP_SCORE = 0.8


@dataclass
class Face:
    """A detected face. Box and keypoints are in pixels of the frame it came from."""
    box: tuple[float, float, float, float]  # x, y, width, height
    keypoints: np.ndarray                    # (6, 2) x, y
    score: float
    crop: np.ndarray | None = field(default=None, repr=False)  # (256, 256, 3) uint8 once aligned

    @property
    def size_px(self) -> float:
        return float(self.box[2])


def _close_all(*detectors):
    for d in detectors:
        if d is not None:
            try:
                with silenced(2):  # LiteRT logs each accelerator it destroys
                    d.close()
            except Exception:  # at interpreter exit mediapipe's executor may be gone already
                d._handle = None  # so its __del__ does not try (and fail) again


_open_detectors: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


def _close_open_detectors():
    for det in list(_open_detectors):
        det.close()


# mediapipe runs its calls on a thread pool that is shut down by threading's exit hook; ours must
# run before it (threading runs these hooks in reverse order of registration).
if hasattr(threading, "_register_atexit"):
    import concurrent.futures.thread  # noqa: F401  (registers its hook first)
    threading._register_atexit(_close_open_detectors)


class _NoTensorFlow:
    """Import hook that hides TensorFlow while mediapipe imports.

    mediapipe.tasks imports `tensorflow.tools.docs` only for its API docs, falling back to a
    no-op when TensorFlow is absent. With TensorFlow installed that costs every detector process
    seconds of start-up and hundreds of MB of memory for nothing (docs/performance.md).
    """
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _mediapipe():
    import sys
    if "mediapipe.tasks.python" not in sys.modules and "tensorflow" not in sys.modules:
        hook = _NoTensorFlow()
        sys.meta_path.insert(0, hook)
        try:
            import mediapipe.tasks.python  # noqa: F401
        finally:
            sys.meta_path.remove(hook)
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    return mp, BaseOptions, vision


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def tiles(width: int, height: int, tile_px: int = TILE_PX) -> list[tuple[int, int, int, int]]:
    """Overlapping square-ish tiles (x, y, w, h) covering the frame; a face up to a quarter of a
    tile wide is whole in at least one of them."""
    def spans(length):
        if length <= tile_px:
            return [(0, length)]
        n = int(np.ceil((length - tile_px / 4) / (tile_px * 3 / 4)))
        starts = np.linspace(0, length - tile_px, n).round().astype(int)
        return [(int(s), tile_px) for s in starts]
    return [(x, y, w, h) for y, h in spans(height) for x, w in spans(width)]


class FaceDetector:
    """BlazeFace short-range + full-range (+ tiles on large frames). Not thread-safe: make one
    per worker process or thread (creating one takes ~20 ms)."""

    def __init__(self, min_score: float = MIN_SCORE, full_range: bool = True,
                 tile_from_px: int | None = TILE_FROM_PX, tile_px: int = TILE_PX):
        mp, BaseOptions, vision = _mediapipe()

        def make(model: Path, confidence: float):
            opts = vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(model)),
                min_detection_confidence=confidence, min_suppression_threshold=0.3)
            return vision.FaceDetector.create_from_options(opts)

        self.min_score = min_score
        with silenced(2):  # the TFLite runtime prints a warning per sparse tensor
            self._short = make(SHORT_RANGE, min_score)
            # Full-range only proposes: its candidates are confirmed by the close-up check.
            self._full = make(FULL_RANGE, min(min_score, CANDIDATE_SCORE)) if full_range else None
        self.tile_from_px = tile_from_px
        self.tile_px = tile_px
        # Close before interpreter teardown: mediapipe's own __del__ fails once modules are gone.
        self._finalizer = weakref.finalize(self, _close_all, self._short, self._full)
        _open_detectors.add(self)

    def close(self):
        self._finalizer()

    def _run(self, detector, rgb: np.ndarray, dx: int = 0, dy: int = 0) -> list[Face]:
        mp = _mediapipe()[0]
        h, w = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        # LiteRT inside mediapipe warns, once per process, the first time the model's input
        # tensor happens to be misaligned ("Reallocating memory and copying data"; harmless):
        # that is any call, not the first (malloc decides), so every call runs with fd 2 off.
        # Only this thread runs here: a worker process, or the main one with no workers.
        with silenced(2):
            detections = detector.detect(image).detections
        faces = []
        for d in detections:
            b = d.bounding_box
            kp = np.array([[k.x * w + dx, k.y * h + dy] for k in d.keypoints], np.float32)
            faces.append(Face((b.origin_x + dx, b.origin_y + dy, b.width, b.height), kp,
                              float(d.categories[0].score)))
        return faces

    def detect(self, rgb: np.ndarray, mode: str = "all", small: bool = True) -> list[Face]:
        """Faces in an RGB uint8 frame, largest first (no crops yet).

        mode "all": short-range, full-range and (on large frames) tiles, merged.
        mode "largest": a cascade that stops at the first stage finding a face (short-range
            only when it is sure: score >= SURE_SCORE), then full-range, then tiles. Enough
            when only the largest face matters: a face the short-range model finds is at least
            ~20% of the frame wide, and a larger one would have been found by it too. Most
            frames with a face cost one short-range run.
        mode "people": every face "all" finds, with the largest exactly as "largest" finds it
            (a full-range duplicate never replaces it): a one-person video scores the same
            with faces linked into people as with the largest face only. One search: each
            model runs once for both.
        mode "whole": short-range and full-range, no tiles.
        mode "crop" (or small=False): short-range only, for an image that is a face crop.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
        if not small:
            mode = "crop"
        if mode not in ("all", "largest", "people", "whole", "crop"):
            raise ValueError(f"unknown detection mode {mode!r}")
        found = [self._sharpen(rgb, f) for f in self._run(self._short, rgb)]
        sure = any(f.score >= SURE_SCORE for f in found)
        if self._full is None or mode == "crop" or (mode == "largest" and sure):
            return merge(found)
        short = found
        found = short + self._confirm(rgb, self._run(self._full, rgb), short)
        h, w = rgb.shape[:2]
        first = None  # people: the faces "largest" would return
        if mode == "people" and found:
            first = merge(short if sure else found)
        if (mode in ("all", "people") or (mode == "largest" and not found)) and \
                self.tile_from_px and max(w, h) >= self.tile_from_px:
            tiny: list[Face] = []
            for x, y, tw, th in tiles(w, h, self.tile_px):
                tiny += self._run(self._full, rgb[y:y + th, x:x + tw], x, y)
            found += self._confirm(rgb, tiny, found)
        if mode != "people":
            return merge(found)
        everything = merge(found)
        if first is None:  # nothing before the tiles: "largest" searches them, as "all" did
            first = everything
        return sorted(first[:1] + [f for f in everything
                                   if all(_iou(f.box, g.box) < 0.3 for g in first[:1])],
                      key=lambda f: -f.size_px)

    def track(self, rgb: np.ndarray, prev: Face) -> Face | None:
        """The face seen at `prev` in an earlier frame of the same video, found again in this
        one with a single close-up run (the check `_refine` does) instead of the whole-frame
        cascade (two or three runs, plus tiles). None when it is not there, not sure, or has
        changed size: the caller then searches the whole frame."""
        found = self._refine(rgb, prev, inherit_score=False)
        if found is None or found is prev or found.score < SURE_SCORE:
            return None
        if not 2 / 3 <= found.size_px / prev.size_px <= 3 / 2:
            return None
        return found

    def _sharpen(self, rgb: np.ndarray, face: Face) -> Face:
        """Short-range sees the whole frame at 128 px: a face under a third of the frame gets
        keypoints a few percent of the crop off (eyes too high). A close-up places them."""
        if 3 * max(face.box[2], face.box[3]) > 0.9 * max(rgb.shape[:2]):
            return face
        return self._refine(rgb, face) or face

    def _confirm(self, rgb, candidates: list[Face], known: list[Face]) -> list[Face]:
        """Close-up check of full-range candidates, except those a surer detection covers."""
        new = [c for c in merge(candidates)
               if all(_iou(c.box, k.box) < 0.3 or k.score < c.score for k in known)]
        return [r for r in (self._refine(rgb, c) for c in new) if r is not None]

    def _refine(self, rgb: np.ndarray, face: Face, inherit_score: bool = True) -> Face | None:
        """Re-detect a face found small with short-range on a close-up of it.

        The full-range model sees a 64 px face in a 1080p tile as ~13 px: enough to find it,
        not to place its eyes. The short-range model on a crop of 3 face widths places them
        within a few pixels, and rejects most false alarms. A face it cannot confirm is kept
        as found when its score is high, dropped otherwise.
        """
        x, y, w, h = face.box
        side = 3.0 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
        x1, y1 = int(min(cx + side / 2, rgb.shape[1])), int(min(cy + side / 2, rgb.shape[0]))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        close = rgb[y0:y1, x0:x1]
        # Upscale tiny regions: BlazeFace's anchors are tuned for faces of 20-80% of its input.
        f = max(1.0, 192 / close.shape[1])
        if f > 1:
            close = cv2.resize(close, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
        again = self._run(self._short, close)
        best = max(again, key=lambda g: _iou(g.box, ((face.box[0] - x0) * f, (face.box[1] - y0) * f,
                                                     w * f, h * f)), default=None)
        if best is None or _iou(best.box, ((x - x0) * f, (y - y0) * f, w * f, h * f)) < 0.3:
            return face if face.score >= REFINE_KEEP_SCORE else None
        bx, by, bw, bh = best.box
        return Face((bx / f + x0, by / f + y0, bw / f, bh / f),
                    best.keypoints / f + [x0, y0],
                    max(best.score, face.score) if inherit_score else best.score)


def merge(faces: list[Face], iou: float = 0.3) -> list[Face]:
    """Keep the best-scoring detection of each group of overlapping ones; largest first."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(_iou(f.box, k.box) < iou for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: -f.size_px)



_local = threading.local()


def default_detector() -> FaceDetector:
    """A detector for this thread, created on first use and kept (model load paid once)."""
    det = getattr(_local, "detector", None)
    if det is None:
        det = _local.detector = FaceDetector()
    return det
