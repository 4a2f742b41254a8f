"""The visual report's pieces: table rows, the model's card, detail cards with their timeline
(P(fake) over the sampled frames, as SVG drawing data), thumbnails and heat maps, as the page's
template (templates/report.html.j2) takes them. Every value that came from a file name or a
model card is text here; the template escapes it.
"""
from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .media import VideoMedia, encode_jpeg
from .report import safe_text
from .verdict import ERROR, FAKE, MISSING, NO_FACE, OK, REAL, VideoResult

CATEGORIES = (FAKE, REAL, NO_FACE, ERROR, MISSING)


def num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min" \
        if s >= 3600 else f"{int(s // 60)} min {int(s % 60):02d} s"


def sampling_text(options: dict) -> str:
    """The scan's sampling options (the report header's "options") in words."""
    if not options:
        return ""
    every, frames = options.get("every_s"), options.get("frames")
    parts = [f"one frame every {every:g} s" if every else
             f"{frames} frames per video, spread evenly" if frames else "",
             faces_text(options)]
    if options.get("min_face"):
        parts.append(f"faces narrower than {options['min_face']} px not scored")
    return "; ".join(p for p in parts if p)


def faces_text(options: dict) -> str:
    """The header's face mode in words (SampleOptions.key: `people`, or `all_faces` as written
    before people were linked, when it was the only mode)."""
    if options.get("people"):
        return "every face, linked into people; the most suspicious person decides"
    return "every face of a frame" if options.get("all_faces") else \
        "the largest face of each frame"


def category(r: VideoResult) -> str:
    if r.status == OK:
        return r.verdict if r.verdict in (FAKE, REAL) else REAL
    return r.status if r.status in CATEGORIES else ERROR


def row(i: int, r: VideoResult, thumb: str | None, detailed: bool) -> dict:
    path = safe_text(str(r.path))
    folder, name = os.path.split(path)
    return dict(i=i, path=path, name=name or path, folder=folder, cat=category(r),
                status=r.status, verdict=r.verdict, score=rounded(r.fake_score),
                max=rounded(r.fake_score_max), share=rounded(r.fake_share), faces=r.faces_scored, frames=r.frames_sampled,
                with_face=r.frames_with_face, duration=r.duration_s,
                reason=safe_text(r.error or r.note or ""), thumb=thumb, detailed=detailed)


def rounded(v, digits: int = 4):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def model_info(meta: dict, results: list[VideoResult]) -> dict:
    m = dict(meta.get("model") or {})
    if not m.get("name"):
        m["name"] = next((r.model for r in results if r.model), "")
    if m.get("threshold") is None:
        m["threshold"] = next((r.threshold for r in results if r.threshold is not None), None)
    metrics = metrics_table(m.get("metrics") or {})
    limits = m.get("limits") or []
    if isinstance(limits, str):
        limits = [limits]
    return dict(name=str(m.get("name") or "unknown"), arch=str(m.get("arch") or ""),
                threshold=m.get("threshold"), sha256=str(m.get("sha256") or "")[:12],
                metrics=metrics, limits=[str(x) for x in limits],
                card=str(m.get("card") or ""), no_card=str(m.get("no_card") or ""))


def card_by_name(results: list[VideoResult], model=None) -> dict:
    """The card of the model a CSV report's rows name (a CSV has no header to carry it), as the
    page's model: from `model` (a model file) or else the shipped model, whichever card has
    that name; when neither has, {"no_card": why}."""
    from .scoring import ModelError, default_model_path, read_card
    names = sorted({r.model for r in results if r.model})
    files = [Path(model)] if isinstance(model, (str, os.PathLike)) else []
    try:
        files.append(default_model_path())
    except ModelError:
        pass
    for path in files:
        try:
            card = read_card(path)
        except ModelError:
            continue
        if names == [card.get("name", path.stem)]:
            return dict(name=names[0], arch=card.get("arch", ""), metrics=card.get("metrics"),
                        limits=card.get("limits"), card=str(path.with_suffix(".json")))
    named = f"names the model {', '.join(names)}" if names else "names no model"
    return {"no_card": f"A CSV report does not carry the model card, and this one {named}, "
                       "whose card was not found: `screener report --model FILE` with the "
                       "scan's model file shows it."}


# The headline numbers of a model card's metrics, in this order; the rest (per-class figures,
# confusion matrices, data paths) stays in the card.
HEADLINE = ("n", "accuracy", "image_accuracy", "balanced_accuracy", "roc_auc", "auc", "eer",
            "precision", "recall", "f1", "video_accuracy", "video_roc_auc")
SKIP = ("per_class", "confusion_matrix")


def metrics_table(metrics: dict) -> list[dict]:
    """[{"caption", "columns": [...], "rows": [(label, [cells])]}]: one row per evaluated set
    (the nested keys above the numbers), and one table per set of metrics measured: sets that
    report other figures (say, other models' published weights) get their own table, not a row
    of empty cells in this one; the key all of a table's rows share is its caption."""
    rows: dict[tuple, dict] = {}

    def walk(d: dict, path: tuple):
        for k, v in d.items():
            if k in SKIP:
                continue
            if isinstance(v, dict):
                walk(v, path + (str(k).replace("_", " "),))
            elif k in HEADLINE and isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.setdefault(path or ("test",), {})[k] = v
    walk(metrics, ())
    tables: dict[tuple, list] = {}
    for path, r in rows.items():
        tables.setdefault(tuple(c for c in HEADLINE if c in r), []).append((path, r))
    out = []
    for columns, members in tables.items():
        first = {path[0] for path, _ in members}
        shared = len(first) == 1 and len(members) > 1 and all(len(p) > 1 for p, _ in members)
        out.append({"caption": next(iter(first)) if shared else "",
                    "columns": list(columns),
                    "rows": [(" · ".join(path[1:] if shared else path),
                              [num(r[c], 4) if isinstance(r[c], float) else str(r[c])
                               for c in columns]) for path, r in members]})
    return out


def detail(i: int, r: VideoResult, m: VideoMedia | None, heat: dict | None, why_not: str) -> dict:
    threshold = r.threshold if r.threshold is not None else 0.5
    card = dict(i=i, name=safe_text(os.path.basename(str(r.path)) or str(r.path)),
                path=safe_text(str(r.path)), verdict=r.verdict, score=r.fake_score,
                max=r.fake_score_max, share=r.fake_share, threshold=threshold,
                note=safe_text(r.note or ""), timeline=timeline(r, threshold),
                people=people_strip(r, m), fake_person=r.fake_person, most=[], least=[], heat=None,
                row_thumb=None, explained=0, explain_note="")
    if m is None:
        card["explain_note"] = "no thumbnails were kept for this video"
        return card
    card["most"] = [thumb(t) for t in m.most_fake]
    card["least"] = [thumb(t) for t in m.least_fake]
    card["row_thumb"] = card["most"][0]["src"] if card["most"] else None
    if m.key_crop is None:
        return card
    if heat is None:
        card["explain_note"] = why_not
        return card
    card["heat"] = dict(heat, time_s=m.key_crop.time_s, p_fake=m.key_crop.p_fake,
                        exact=m.key_crop.jpeg[:4] == b"RIFF")  # lossless WebP: the very pixels scored
    card["explained"] = 1
    return card


def heat(crop: np.ndarray, e) -> dict:
    """What the model says of a face, as the detail card shows it (plain JSON: it is kept in
    the state, and depends only on the model and the face)."""
    from . import explain
    return dict(
        p_fake_here=float(e.p_fake), flat=not bool(e.heat.max() > 0),
        crop=uri(encode_jpeg(crop, 128, 80)),
        overlay=uri(encode_jpeg(explain.overlay(crop, e.heat), 128, 80)),
        blocks=[feature_block(b, a) for b, a in e.feature_maps])


def feature_block(name: str, maps: np.ndarray) -> dict:
    from . import explain
    grid = explain.feature_grid(maps)
    scale = max(1, 32 // min(32, maps.shape[0]))  # show 8x8 maps as 32 px tiles
    # Large tiles compress best as JPEG; 8 px ones as PNG (JPEG blurs their hard edges).
    src = uri(encode_jpeg(grid, None, 70)) if scale == 1 else png_uri(grid)
    return dict(name=name, shape="×".join(map(str, maps.shape)), src=src,
                width=grid.shape[1] * scale, height=grid.shape[0] * scale)


def png_uri(rgb: np.ndarray) -> str:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(64).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumb(t) -> dict:
    return dict(src=t.data_uri, time_s=t.time_s, p_fake=t.p_fake, frame=t.frame_index)


def uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


@dataclass
class _Scale:
    x0: float
    x1: float
    t_max: float
    y0: float
    y1: float

    def x(self, t: float) -> float:
        return round(self.x0 + (self.x1 - self.x0) * (t / self.t_max if self.t_max else 0), 1)

    def y(self, p: float) -> float:
        return round(self.y1 - (self.y1 - self.y0) * min(max(p, 0.0), 1.0), 1)


PERSON_COLOURS = 6  # person k is drawn in colour class p{k % 6} (report.css)


def timeline(r: VideoResult, threshold: float, width: int = 640, height: int = 140) -> dict:
    """P(fake) over the sampled frames as SVG drawing data: a line through the largest face of
    each frame, broken where a sampled frame had no face (those frames are ticks on the axis),
    dots for other faces, and the threshold line. With several people: a line per person, broken
    where they were not seen, the one who decides the verdict drawn thicker."""
    times = sorted(float(t) for t in (r.frame_times_s or []))
    faces = sorted(r.faces, key=lambda f: (f.time_s, f.face_index))
    t_max = max([r.duration_s or 0.0] + times + [f.time_s for f in faces]) or 1.0
    s = _Scale(40, width - 24, t_max, 10, height - 24)
    step = float(np.median(np.diff(times))) if len(times) > 1 else t_max / 20
    main = {round(f.time_s, 6): f.p_fake for f in faces if f.face_index == 0}
    others = [(s.x(f.time_s), s.y(f.p_fake)) for f in faces if f.face_index != 0]
    sampled = times or sorted({round(f.time_s, 6) for f in faces})
    seen = {round(f.time_s, 6) for f in faces}
    gaps, bands = [], []
    for t in sampled:
        if round(t, 6) not in seen:
            gaps.append(s.x(t))
            x0, x1 = s.x(max(t - step / 2, 0)), s.x(min(t + step / 2, t_max))
            bands.append((x0, round(max(x1 - x0, 1.0), 1)))
    people = []
    if len(r.persons) > 1:  # a line per person; nobody is "other"
        others, by_person = [], {}
        for f in faces:
            by_person.setdefault(f.person, {})[round(f.time_s, 6)] = f.p_fake
        for q in r.persons:
            path, pts = _line(s, sampled, by_person.get(q.id, {}))
            people.append(dict(id=q.id, path=path, dots=pts, decides=q.id == r.fake_person,
                               cls=f"p{(q.id - 1) % PERSON_COLOURS}"))
        paths, dots = "", []
    else:
        paths, dots = _line(s, sampled, main)
    ticks = [dict(x=s.x(t), label=f"{t:.0f} s" if t_max >= 10 else f"{t:.1f} s")
             for t in np.linspace(0, t_max, 5)]
    return dict(width=width, height=height, path=paths, dots=dots, others=others, gaps=gaps,
                bands=bands, people=people,
                thr_y=s.y(threshold), y0=s.y(0), y_half=s.y(0.5), y1=s.y(1), x0=s.x0, x1=s.x1,
                ticks=ticks, base=height - 24, n_sampled=len(sampled), n_gaps=len(gaps))


def _line(s: _Scale, sampled: list[float], p_at: dict) -> tuple[str, list]:
    """An SVG path through P(fake) at the sampled times found in `p_at`, broken where one is
    missing, and its points."""
    segments, current = [], []
    for t in sampled:
        p = p_at.get(round(t, 6))
        if p is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((s.x(t), s.y(p)))
    if current:
        segments.append(current)
    return (" ".join("M" + " L".join(f"{x},{y}" for x, y in seg) for seg in segments),
            [pt for seg in segments for pt in seg])


def people_strip(r: VideoResult, m: VideoMedia | None) -> list[dict]:
    """Each person of a video of several: their most fake face, score, faces and time span,
    and whether they decide the verdict or have too little evidence to."""
    if len(r.persons) < 2:
        return []
    faces = {t.person: t for t in (m.people if m is not None else [])}
    return [dict(id=q.id, src=faces[q.id].data_uri if q.id in faces else None,
                 score=q.fake_score, faces=q.faces, first_s=q.first_s, last_s=q.last_s,
                 decides=q.id == r.fake_person, low=q.low_evidence,
                 cls=f"p{(q.id - 1) % PERSON_COLOURS}") for q in r.persons]
