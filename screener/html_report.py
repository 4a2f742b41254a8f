"""The visual report: one self-contained HTML file that shows why a video looks fake.

- Summary: counts by verdict and status, the model (threshold, card metrics, stated limits),
  date and elapsed time. A table of every video, sortable and filterable (a little vanilla JS),
  error and no-face rows with their reasons.
- Details for the highest-scoring videos (every FAKE one and the top of the table: at least
  100, at most 500, or `details`; so a report of thousands of videos stays quick to open): a timeline of P(fake) over the sampled frames
  (inline SVG: threshold line, gaps where no face was found), the k most and k least fake faces
  (the thumbnails `media` kept during the scan), and for the most fake face a Grad-CAM heat map
  and the feature maps of each conv block (`explain`, computed here with the model).

Safety: file names are user input. The page is built with jinja2 with autoescaping on, every
image is a data: URI, and a Content-Security-Policy meta tag allows only the page's own script
and style (by hash) and data: images: nothing loads from the network and an injected script
would not run even if something slipped past the escaping.

Sources: `write_html` takes results (and their media) in hand; `rebuild` reads a state file (the
incremental scan's, with thumbnails) or a JSON/CSV report (rows only).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import heapq
import json
import logging
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .media import VideoMedia, encode_jpeg, decode_jpeg
from .files import atomic_write
from .report import plural, safe_text
from .verdict import (ERROR, FAKE, LOW_EVIDENCE_FACES, LOW_EVIDENCE_SHARE, MISSING, NO_FACE, OK,
                      REAL, VideoResult)

log = logging.getLogger(__name__)

# Videos shown with thumbnails, timeline and heat map: by default every FAKE one and the top of
# the table, at least DEFAULT_DETAILS and at most MAX_DETAILS (the page's size grows ~50 KB each).
DEFAULT_DETAILS = 100
MAX_DETAILS = 500
TABLE_THUMBS = 100      # of those, the ones with a thumbnail in the table row
PAGE = 500              # table rows displayed at once (the page's script shows more on demand)
CATEGORIES = (FAKE, REAL, NO_FACE, ERROR, MISSING)


# --- collecting results during a scan ------------------------------------------------------

class Collector:
    """Keeps what a report needs from a streaming scan: every row without its thumbnails, and
    the thumbnails of the highest-scoring videos only (`details`, else MAX_DETAILS: bounded
    memory)."""

    def __init__(self, details: int | None = None):
        self.details = details
        self._keep = MAX_DETAILS if details is None else details
        self.results: list[VideoResult] = []
        self._top: list[tuple[float, int, VideoMedia]] = []  # min-heap on score

    def add(self, r: VideoResult) -> None:
        m = getattr(r, "media", None)
        if m is not None:
            r = _without_media(r)
        i = len(self.results)
        self.results.append(r)
        if m is not None and r.fake_score is not None and self._keep > 0:
            item = (float(r.fake_score), -i, m)
            if len(self._top) < self._keep:
                heapq.heappush(self._top, item)
            elif item[:2] > self._top[0][:2]:
                heapq.heapreplace(self._top, item)

    def media(self) -> dict[int, VideoMedia]:
        return {-neg_i: m for _, neg_i, m in self._top}


def _without_media(r: VideoResult) -> VideoResult:
    from dataclasses import replace
    return replace(r, media=None)


# --- the page -------------------------------------------------------------------------------

def detail_indices(results: list[VideoResult], details: int | None = None) -> list[int]:
    """The videos shown in detail: scored ones, highest fake_score first (so every FAKE one
    comes before any REAL one); `details` of them, or by default every FAKE one, at least
    DEFAULT_DETAILS and at most MAX_DETAILS."""
    scored = [i for i, r in enumerate(results) if r.status == OK and r.fake_score is not None]
    scored.sort(key=lambda i: (-results[i].fake_score, i))
    if details is None:
        fake = sum(1 for i in scored if results[i].verdict == FAKE)
        details = min(max(DEFAULT_DETAILS, fake), MAX_DETAILS)
    return scored[:max(details, 0)]


def write_html(path, results: Iterable[VideoResult], *, meta: dict | None = None,
               media: dict[int, VideoMedia] | Callable[[list[int]], dict[int, VideoMedia]]
               | None = None, model=None, details: int | None = None,
               elapsed_s: float | None = None, finished_at: float | None = None,
               complete: bool = True, source: str = "", heat_cache=None,
               model_sha: str | None = None) -> dict:
    """Write the report to `path` atomically. `media`: thumbnails by result index (or a function
    of the detail indices returning them); by default each result's own `.media`. `model`: a
    Keras model (or a model file) to explain the most fake faces; None: from meta's model path
    when that file is there with the same SHA-256, else no heat maps. `heat_cache`: a
    `state.HeatCache` that keeps heat maps between pages, under `model_sha` (the SHA-256 of the
    model file; found by itself for a file or meta's model). Returns figures (bytes, details,
    explained)."""
    results = list(results)
    html, stats = render(results, meta=meta, media=media, model=model, details=details,
                         elapsed_s=elapsed_s, finished_at=finished_at, complete=complete,
                         source=source, heat_cache=heat_cache, model_sha=model_sha)
    data = html.encode("utf-8", "backslashreplace")  # a stray surrogate never loses the page
    with atomic_write(path, "wb", encoding=None, newline=None) as f:
        f.write(data)
    stats["bytes"] = len(data)
    return stats


def render(results: list[VideoResult], *, meta=None, media=None, model=None,
           details: int | None = None, elapsed_s=None, finished_at=None, complete=True,
           source: str = "", heat_cache=None, model_sha: str | None = None) -> tuple[str, dict]:
    meta = meta or {}
    picked = detail_indices(results, details)
    if media is None:
        got = {i: results[i].media for i in picked if getattr(results[i], "media", None)}
    elif callable(media):
        got = media(picked)
    else:
        got = media
    with_crop = [i for i in picked if got.get(i) is not None and got[i].key_crop is not None]
    sha = (model_sha or _model_sha(model, meta)) if heat_cache is not None else None
    keys = {i: heat_key(sha, got[i].key_crop.jpeg) for i in with_crop} if sha else {}
    cached = heat_cache.get(keys.values()) if keys else {}
    heats = {i: cached[k] for i, k in keys.items() if k in cached}
    todo, why_not = [i for i in with_crop if i not in heats], ""
    if todo:  # only what the cache lacks loads the model (and TensorFlow)
        explainer, why_not = _explainer(model, meta)
        if explainer is not None:
            try:
                crops = np.stack([decode_jpeg(got[i].key_crop.jpeg) for i in todo])
                for i, c, e in zip(todo, crops, explainer.explain_many(crops)):
                    heats[i] = _heat(c, e)
            except Exception as exc:  # the heat maps are lost, not the report
                log.warning("no heat maps: %s", exc)
                why_not = f"no heat maps: {exc}"
    if keys:
        heat_cache.keep({keys[i]: heats[i] for i in keys if i in heats})
    cards, explained = [], 0
    for i in picked:
        card = _detail(i, results[i], got.get(i), heats.get(i), why_not)
        explained += card["explained"]
        cards.append(card)
    thumbs_in_table = {c["i"]: c["row_thumb"] for c in cards[:TABLE_THUMBS] if c["row_thumb"]}
    detailed = set(picked)
    # Highest score first, as the page's script sorts by default; unscored rows last.
    order = sorted(range(len(results)), key=lambda i: (results[i].fake_score is None,
                                                       -(results[i].fake_score or 0.0), i))
    rows = [_row(i, results[i], thumbs_in_table.get(i), i in detailed) for i in order]
    counts = {c: 0 for c in CATEGORIES}
    for row in rows:
        counts[row["cat"]] = counts.get(row["cat"], 0) + 1
    flagged_without = max(0, counts[FAKE] - len([c for c in cards if c["verdict"] == FAKE]))
    css, js = _asset("report.css"), _asset("report.js")
    when = dt.datetime.fromtimestamp(finished_at if finished_at is not None
                                     else dt.datetime.now().timestamp(), dt.timezone.utc)
    page = _template().render(
        css=css, js=js, csp=_csp(css, js), rows=rows, cards=cards, counts=counts,
        categories=CATEGORIES, total=len(rows), model=_model_info(meta, results),
        sampling=sampling_text(meta.get("options") or {}), version=meta.get("screener", ""),
        low_evidence=(f"fewer than {LOW_EVIDENCE_FACES} faces or a face in under "
                      f"{LOW_EVIDENCE_SHARE:.0%} of the sampled frames"),
        date=when.strftime("%Y-%m-%d %H:%M UTC"), elapsed=_duration(elapsed_s),
        complete=complete, flagged_without=flagged_without, source=source,
        explain_note=why_not, page=PAGE)
    return page, {"videos": len(rows), "details": len(cards), "explained": explained}


def _asset(name: str) -> str:
    return resources.files("screener").joinpath("templates", name).read_text("utf-8")


_TEMPLATE = None


def _template():
    global _TEMPLATE
    if _TEMPLATE is None:
        import jinja2
        env = jinja2.Environment(loader=jinja2.PackageLoader("screener", "templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True)
        env.filters["num"] = _num
        env.filters["plural"] = plural
        _TEMPLATE = env.get_template("report.html.j2")
    return _TEMPLATE


def _csp(css: str, js: str) -> str:
    def h(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    return (f"default-src 'none'; img-src data:; style-src {h(css)}; script-src {h(js)}; "
            "base-uri 'none'; form-action 'none'")


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _duration(s: float | None) -> str:
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
             "every face of a frame" if options.get("all_faces") else
             "the largest face of each frame"]
    if options.get("min_face"):
        parts.append(f"faces narrower than {options['min_face']} px not scored")
    return "; ".join(p for p in parts if p)


def _category(r: VideoResult) -> str:
    if r.status == OK:
        return r.verdict if r.verdict in (FAKE, REAL) else REAL
    return r.status if r.status in CATEGORIES else ERROR


def _row(i: int, r: VideoResult, thumb: str | None, detailed: bool) -> dict:
    path = safe_text(str(r.path))
    folder, name = os.path.split(path)
    return dict(i=i, path=path, name=name or path, folder=folder, cat=_category(r),
                status=r.status, verdict=r.verdict, score=_round(r.fake_score),
                max=_round(r.fake_score_max), share=_round(r.fake_share), faces=r.faces_scored, frames=r.frames_sampled,
                with_face=r.frames_with_face, duration=r.duration_s,
                reason=safe_text(r.error or r.note or ""), thumb=thumb, detailed=detailed)


def _round(v, digits: int = 4):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _model_info(meta: dict, results: list[VideoResult]) -> dict:
    m = dict(meta.get("model") or {})
    if not m.get("name"):
        m["name"] = next((r.model for r in results if r.model), "")
    if m.get("threshold") is None:
        m["threshold"] = next((r.threshold for r in results if r.threshold is not None), None)
    metrics = _metrics_table(m.get("metrics") or {})
    limits = m.get("limits") or []
    if isinstance(limits, str):
        limits = [limits]
    return dict(name=str(m.get("name") or "unknown"), arch=str(m.get("arch") or ""),
                threshold=m.get("threshold"), sha256=str(m.get("sha256") or "")[:12],
                metrics=metrics, limits=[str(x) for x in limits])


# The headline numbers of a model card's metrics, in this order; the rest (per-class figures,
# confusion matrices, data paths) stays in the card.
HEADLINE = ("n", "accuracy", "image_accuracy", "balanced_accuracy", "roc_auc", "auc", "eer",
            "precision", "recall", "f1", "video_accuracy", "video_roc_auc")
SKIP = ("per_class", "confusion_matrix")


def _metrics_table(metrics: dict) -> list[dict]:
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
                              [_num(r[c], 4) if isinstance(r[c], float) else str(r[c])
                               for c in columns]) for path, r in members]})
    return out


# --- per-video details ----------------------------------------------------------------------

def _detail(i: int, r: VideoResult, m: VideoMedia | None, heat: dict | None, why_not: str) -> dict:
    threshold = r.threshold if r.threshold is not None else 0.5
    card = dict(i=i, name=safe_text(os.path.basename(str(r.path)) or str(r.path)),
                path=safe_text(str(r.path)), verdict=r.verdict, score=r.fake_score,
                max=r.fake_score_max, share=r.fake_share, threshold=threshold,
                note=safe_text(r.note or ""), timeline=timeline(r, threshold), most=[], least=[], heat=None,
                row_thumb=None, explained=0, explain_note="")
    if m is None:
        card["explain_note"] = "no thumbnails were kept for this video"
        return card
    card["most"] = [_thumb(t) for t in m.most_fake]
    card["least"] = [_thumb(t) for t in m.least_fake]
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


# Part of every heat-map key: bump it when _heat's output changes, so kept maps are redone.
HEAT_VERSION = 1


def heat_key(model_sha256: str, face_bytes: bytes) -> str:
    return f"{HEAT_VERSION}:{model_sha256}:{hashlib.sha256(face_bytes).hexdigest()}"


def _model_sha(model, meta: dict) -> str | None:
    """SHA-256 of the model the heat maps come from; None when it cannot be named (a model
    object in hand), and then nothing is cached."""
    if model is None:
        return (meta.get("model") or {}).get("sha256") or None
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        from .scoring import file_sha256
        return file_sha256(Path(model))
    return None


def _heat(crop: np.ndarray, e) -> dict:
    """What the model says of a face, as the detail card shows it (plain JSON: it is kept in
    the state, and depends only on the model and the face)."""
    from . import explain
    return dict(
        p_fake_here=float(e.p_fake), flat=not bool(e.heat.max() > 0),
        crop=_uri(encode_jpeg(crop, 128, 80)),
        overlay=_uri(encode_jpeg(explain.overlay(crop, e.heat), 128, 80)),
        blocks=[_feature_block(b, a) for b, a in e.feature_maps])


def _feature_block(name: str, maps: np.ndarray) -> dict:
    from . import explain
    grid = explain.feature_grid(maps)
    scale = max(1, 32 // min(32, maps.shape[0]))  # show 8x8 maps as 32 px tiles
    # Large tiles compress best as JPEG; 8 px ones as PNG (JPEG blurs their hard edges).
    src = _uri(encode_jpeg(grid, None, 70)) if scale == 1 else _png_uri(grid)
    return dict(name=name, shape="×".join(map(str, maps.shape)), src=src,
                width=grid.shape[1] * scale, height=grid.shape[0] * scale)


def _png_uri(rgb: np.ndarray) -> str:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(64).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(t) -> dict:
    return dict(src=t.data_uri, time_s=t.time_s, p_fake=t.p_fake, frame=t.frame_index)


def _uri(jpeg: bytes) -> str:
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


def timeline(r: VideoResult, threshold: float, width: int = 640, height: int = 140) -> dict:
    """P(fake) over the sampled frames as SVG drawing data: a line through the largest face of
    each frame, broken where a sampled frame had no face (those frames are ticks on the axis),
    dots for other faces, and the threshold line."""
    times = sorted(float(t) for t in (r.frame_times_s or []))
    faces = sorted(r.faces, key=lambda f: (f.time_s, f.face_index))
    t_max = max([r.duration_s or 0.0] + times + [f.time_s for f in faces]) or 1.0
    s = _Scale(40, width - 24, t_max, 10, height - 24)
    step = float(np.median(np.diff(times))) if len(times) > 1 else t_max / 20
    main = {round(f.time_s, 6): f.p_fake for f in faces if f.face_index == 0}
    others = [(s.x(f.time_s), s.y(f.p_fake)) for f in faces if f.face_index != 0]
    sampled = times or sorted(main)
    segments, current, gaps, bands = [], [], [], []
    for t in sampled:
        p = main.get(round(t, 6))
        if p is None:
            gaps.append(s.x(t))
            x0, x1 = s.x(max(t - step / 2, 0)), s.x(min(t + step / 2, t_max))
            bands.append((x0, round(max(x1 - x0, 1.0), 1)))
            if current:
                segments.append(current)
            current = []
        else:
            current.append((s.x(t), s.y(p)))
    if current:
        segments.append(current)
    paths = " ".join("M" + " L".join(f"{x},{y}" for x, y in seg) for seg in segments)
    dots = [pt for seg in segments for pt in seg]
    ticks = [dict(x=s.x(t), label=f"{t:.0f} s" if t_max >= 10 else f"{t:.1f} s")
             for t in np.linspace(0, t_max, 5)]
    return dict(width=width, height=height, path=paths, dots=dots, others=others, gaps=gaps,
                bands=bands,
                thr_y=s.y(threshold), y0=s.y(0), y_half=s.y(0.5), y1=s.y(1), x0=s.x0, x1=s.x1,
                ticks=ticks, base=height - 24, n_sampled=len(sampled), n_gaps=len(gaps))


def _explainer(model, meta: dict):
    """(Explainer or None, why not): from a Keras model, a model file, or meta's model path."""
    try:
        from .explain import Explainer, ExplainUnavailable
        if model is None:
            m = meta.get("model") or {}
            path = m.get("path")
            if not path or not Path(path).is_file():
                return None, ("heat maps need the model: pass --model (the scan's model file "
                              f"{path or '(unknown)'} is not there)")
            from .scoring import file_sha256
            if m.get("sha256") and file_sha256(Path(path)) != m["sha256"]:
                return None, (f"heat maps need the scan's model: {path} has changed since the "
                              "scan; pass --model")
            model = path
        if isinstance(model, (str, os.PathLike)):
            from .scoring import load_model
            model = load_model(model).model
        return Explainer(model), ""
    except ExplainUnavailable as e:
        return None, f"no heat maps: {e}"
    except Exception as e:  # a model that cannot load costs the heat maps, not the report
        log.warning("no heat maps: %s", e)
        return None, f"no heat maps: {e}"


# --- rebuilding from saved results ----------------------------------------------------------

def rebuild(html_path, *, state=None, report=None, model=None, model_sha: str | None = None,
            details: int | None = None) -> dict:
    """Write the report from a state file (rows, per-frame scores and thumbnails) or, without
    one, from a JSON or CSV report (rows only: no timeline or thumbnails). A report's default
    state (`<report>.state.sqlite`) is used when it exists. Raises StateError, ValueError."""
    from . import state as state_mod
    if state is None and report is not None:
        beside = state_mod.default_state_path(report)
        if beside.is_file():
            state = beside
    if state is not None:
        saved = state_mod.read_saved(state)
        keys = [k for k, _ in saved.results]
        results = [r for _, r in saved.results]

        def media(indices: list[int]) -> dict[int, VideoMedia]:
            blobs = saved.media(keys[i] for i in indices)
            return {i: VideoMedia.from_bytes(blobs[keys[i]]) for i in indices if keys[i] in blobs}
        run = saved.last_run
        return write_html(html_path, results, meta=run.get("meta") or {}, media=media,
                          model=model, details=details, elapsed_s=run.get("elapsed_s"),
                          finished_at=run.get("finished_at"), complete=run.get("complete", True),
                          source=f"state {safe_text(os.fspath(state))}",
                          heat_cache=state_mod.HeatCache(state), model_sha=model_sha)
    if report is None:
        raise ValueError("give a state file or a report file")
    results, meta, extra = read_report(report)
    # A report holds no per-frame scores or faces: no detail cards, the page says so.
    return write_html(html_path, results, meta=meta, model=model, details=0,
                      elapsed_s=extra.get("elapsed_s"), finished_at=os.path.getmtime(report),
                      complete=extra.get("complete", True),
                      source=f"report {safe_text(os.fspath(report))} (rows only)")


def read_report(path) -> tuple[list[VideoResult], dict, dict]:
    """Rows of a JSON or CSV report as VideoResults (no faces), its header and its tail."""
    from dataclasses import fields
    known = {f.name: f.type for f in fields(VideoResult)}
    text = Path(path).read_text("utf-8")
    if text.lstrip().startswith("{"):
        try:
            d = json.loads(text)
        except ValueError:  # a killed streaming run: its rows are one per line
            d = {"videos": [json.loads(line.strip().rstrip(","))
                            for line in text.splitlines() if line.strip().startswith('{"path"')],
                 "complete": False}
        rows = d.get("videos", [])
        meta = {k: d[k] for k in ("screener", "model", "options") if k in d}
        extra = {k: d[k] for k in ("elapsed_s", "complete") if k in d}
    else:
        import csv
        import io
        rows = list(csv.DictReader(io.StringIO(text)))
        meta, extra = {}, {}
    results = []
    for row in rows:
        kw = {}
        for k, v in row.items():
            if k not in known or k in ("faces", "frame_times_s", "media"):
                continue
            if isinstance(v, str) and known[k] != "str":  # a number, or no value
                v = None if v == "" else float(v) if "." in v or "e" in v else int(v)
            elif isinstance(v, str) and v.startswith("'") and v[1:2] in "=+-@\t\r\n":
                v = v[1:]  # undo the CSV formula guard
            kw[k] = v
        results.append(VideoResult(**kw))
    return results, meta, extra


__all__ = ["Collector", "write_html", "render", "rebuild", "read_report", "timeline",
           "DEFAULT_DETAILS"]
