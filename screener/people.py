"""Faces linked into people across a video's sampled frames.

`link(faces)` gives each face a person id (0, 1, ... in order of first appearance). Sampled
frames are visited in order; each person found so far predicts where their face will be (its
last box moved by its recent motion), and the faces of a frame are assigned to people by one
optimal assignment (`scipy.optimize.linear_sum_assignment`) over a score of:

- position: the face near where the person's face was predicted, of a similar size;
- appearance: the aligned crop's descriptor (`describe`: a hue/saturation histogram and a grid
  of local binary pattern histograms of the face, each a standard face description, cosine
  similarity of the two), against the person's running descriptor.

A face is linked to a person when it is where that person was expected to be and looks alike
enough (`LinkOptions.near_alike`), or wherever it is when it looks very alike (`reid_alike`:
a person leaving and coming back, or a cut to another shot). Two faces of one frame are never
one person. Boxes alone are ambiguous where paths cross; the appearance term decides there.
Faces that match nobody start a new person.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# The face inside the aligned 256x256 crop (screener.align's template): brow to chin, ear to ear.
_FACE = (slice(40, 232), slice(40, 216))
_LBP_GRID = (5, 6)
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@dataclass(frozen=True)
class LinkOptions:
    near_px: float = 1.0        # a face within this many face widths of where it was expected
    size_ratio: float = 1.6     # ... and at most this much larger or smaller
    near_alike: float = 0.80    # ... links when its descriptor is at least this alike
    reid_alike: float = 0.93    # anywhere, a face this alike links (a return, a cut)
    memory: float = 0.7         # the share of a person's descriptor kept at each new face


def describe(crop: np.ndarray) -> np.ndarray:
    """A unit vector describing the face of an aligned 256x256 RGB crop: its hue/saturation
    histogram and a 5x6 grid of 8-neighbour local binary pattern histograms (square-rooted so
    cosine similarity is the Hellinger affinity), weighted alike."""
    face = np.ascontiguousarray(crop[_FACE])
    hsv = cv2.cvtColor(face, cv2.COLOR_RGB2HSV)
    colour = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    grey = cv2.resize(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), (96, 112),
                      interpolation=cv2.INTER_AREA).astype(np.int16)
    centre = grey[1:-1, 1:-1]
    code = np.zeros(centre.shape, np.uint8)
    h, w = grey.shape
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (grey[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= centre).astype(np.uint8) << bit
    rows = np.array_split(np.arange(code.shape[0]), _LBP_GRID[0])
    cols = np.array_split(np.arange(code.shape[1]), _LBP_GRID[1])
    texture = np.concatenate([np.bincount(code[r[0]:r[-1] + 1, c[0]:c[-1] + 1].ravel(),
                                          minlength=256) for r in rows for c in cols])
    parts = []
    for v in (colour, texture):
        v = np.sqrt(v.astype(np.float64) / max(v.sum(), 1))
        parts.append(v / max(np.linalg.norm(v), 1e-12))
    d = np.concatenate(parts)
    return (d / np.linalg.norm(d)).astype(np.float32)


@dataclass
class _Person:
    id: int
    box: np.ndarray          # x, y, w, h of the last face
    step: np.ndarray         # its centre's motion per sampled frame
    seen: int                # the sampled frame of the last face
    descriptor: np.ndarray
    faces: int = 1

    def expected(self, n: int) -> np.ndarray:
        return _centre(self.box) + self.step * (n - self.seen)


def _centre(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2], np.float64)


def _score(p: _Person, n: int, box, desc, o: LinkOptions) -> float:
    """How well a face fits a person (higher is better), -inf when it may not be theirs."""
    alike = float(p.descriptor @ desc)
    size = max(p.box[2], box[2])
    off = float(np.linalg.norm(_centre(box) - p.expected(n))) / size
    ratio = size / max(min(p.box[2], box[2]), 1e-6)
    if off <= o.near_px and ratio <= o.size_ratio and alike >= o.near_alike:
        return 1.0 + alike - 0.5 * off
    if alike >= o.reid_alike:
        return alike
    return -np.inf


@dataclass
class Linker:
    """Links faces frame by frame; `add(n, boxes, descriptors)` returns the frame's person ids."""
    options: LinkOptions = field(default_factory=LinkOptions)
    people: list[_Person] = field(default_factory=list)

    def add(self, n: int, boxes, descriptors) -> list[int]:
        from scipy.optimize import linear_sum_assignment
        o = self.options
        ids = [-1] * len(boxes)
        if self.people and len(boxes):
            s = np.array([[_score(p, n, b, d, o) for b, d in zip(boxes, descriptors)]
                          for p in self.people])
            rows, cols = linear_sum_assignment(np.where(np.isfinite(s), -s, 1e9))
            for r, c in zip(rows, cols):
                if np.isfinite(s[r, c]):
                    ids[c] = self.people[r].id
                    self._update(self.people[r], n, boxes[c], descriptors[c])
        for k, (b, d) in enumerate(zip(boxes, descriptors)):
            if ids[k] < 0:
                p = _Person(len(self.people), np.asarray(b, np.float64), np.zeros(2), n,
                            np.asarray(d, np.float32))
                self.people.append(p)
                ids[k] = p.id
        return ids

    def _update(self, p: _Person, n: int, box, desc) -> None:
        box = np.asarray(box, np.float64)
        gap = max(n - p.seen, 1)
        step = (_centre(box) - _centre(p.box)) / gap
        # A jump (a return, a cut) says nothing of motion.
        p.step = 0.5 * p.step + 0.5 * step if np.linalg.norm(step) < p.box[2] else np.zeros(2)
        p.box, p.seen, p.faces = box, n, p.faces + 1
        d = self.options.memory * p.descriptor + (1 - self.options.memory) * desc
        p.descriptor = (d / np.linalg.norm(d)).astype(np.float32)


def link(faces, frame_times_s=None, options: LinkOptions = LinkOptions()) -> list[int]:
    """A person id for each face of `faces` (objects with `time_s`, `box` and `crop`).
    `frame_times_s` lists every sampled frame's time, faces or not, so a person's expected
    motion spans the frames where no face was found; without it only frames with faces count."""
    by_time: dict[float, list[int]] = {}
    for k, f in enumerate(faces):
        by_time.setdefault(f.time_s, []).append(k)
    times = sorted(set(frame_times_s or ()) | set(by_time))
    linker = Linker(options)
    ids: list[int] = [0] * len(faces)
    for n, t in enumerate(times):
        ks = by_time.get(t, [])
        if ks:
            got = linker.add(n, [faces[k].box for k in ks], [describe(faces[k].crop) for k in ks])
            for k, person in zip(ks, got):
                ids[k] = person
    return ids
