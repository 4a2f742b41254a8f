"""The visual report: one self-contained HTML file that shows why a video looks fake.

- Summary: counts by verdict and status, the model (threshold, card metrics, stated limits),
  date and elapsed time. A table of every video, sortable and filterable (a little vanilla JS),
  error and no-face rows with their reasons.
- Details for the highest-scoring videos (every FAKE one and the top of the table: at least
  100, at most 500, or `details`; so a report of thousands of videos stays quick to open): a
  timeline of P(fake) over the sampled frames (inline SVG: threshold line, gaps where no face
  was found), the k most and k least fake faces
  (the thumbnails `media` kept during the scan), and for the most fake face a Grad-CAM heat map
  and the feature maps of each conv block (computed where the model is: `heatmaps`).

Safety: file names are user input. The page is built with jinja2 with autoescaping on, every
image is a data: URI, and a Content-Security-Policy meta tag allows only the page's own script
and style (by hash) and data: images: nothing loads from the network and an injected script
would not run even if something slipped past the escaping.

Sources: `write_html` takes results (and their media) in hand; `rebuild` reads a state file (the
incremental scan's, with thumbnails) or a JSON/CSV report (rows only). The page's pieces (rows,
cards, timelines, heat maps) are made in html_parts.py.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import heapq
import logging
import os
from importlib import resources
from typing import Callable, Iterable

from . import html_parts as parts
from .media import VideoMedia
from .files import atomic_write
from .report import plural, safe_text
from .verdict import FAKE, LOW_EVIDENCE_FACES, LOW_EVIDENCE_SHARE, OK, VideoResult

log = logging.getLogger(__name__)

# Videos shown with thumbnails, timeline and heat map: by default every FAKE one and the top of
# the table, at least DEFAULT_DETAILS and at most MAX_DETAILS (the page's size grows ~50 KB each).
DEFAULT_DETAILS = 100
MAX_DETAILS = 500
TABLE_THUMBS = 100      # of those, the ones with a thumbnail in the table row
PAGE = 500              # table rows displayed at once (the page's script shows more on demand)


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
               | None = None, explain=None, details: int | None = None,
               elapsed_s: float | None = None, finished_at: float | None = None,
               complete: bool = True, source: str = "") -> dict:
    """Write the report to `path` atomically. `media`: thumbnails by result index (or a function
    of the detail indices returning them); by default each result's own `.media`. `explain`:
    the heat maps of the detailed videos' key crops, computed where the model is
    (`heatmaps.explainer`); None: no heat maps. Returns figures (bytes, details, explained)."""
    results = list(results)
    html, stats = render(results, meta=meta, media=media, explain=explain, details=details,
                         elapsed_s=elapsed_s, finished_at=finished_at, complete=complete,
                         source=source)
    data = html.encode("utf-8", "backslashreplace")  # a stray surrogate never loses the page
    with atomic_write(path, "wb", encoding=None, newline=None) as f:
        f.write(data)
    stats["bytes"] = len(data)
    return stats


def render(results: list[VideoResult], *, meta=None, media=None, explain=None,
           details: int | None = None, elapsed_s=None, finished_at=None, complete=True,
           source: str = "") -> tuple[str, dict]:
    meta = meta or {}
    picked = detail_indices(results, details)
    if media is None:
        got = {i: results[i].media for i in picked if getattr(results[i], "media", None)}
    elif callable(media):
        got = media(picked)
    else:
        got = media
    heats, why_not = explain({i: got.get(i) for i in picked}) if explain else ({}, "")
    cards, explained = [], 0
    for i in picked:
        card = parts.detail(i, results[i], got.get(i), heats.get(i), why_not)
        explained += card["explained"]
        cards.append(card)
    thumbs_in_table = {c["i"]: c["row_thumb"] for c in cards[:TABLE_THUMBS] if c["row_thumb"]}
    detailed = set(picked)
    # Highest score first, as the page's script sorts by default; unscored rows last.
    order = sorted(range(len(results)), key=lambda i: (results[i].fake_score is None,
                                                       -(results[i].fake_score or 0.0), i))
    rows = [parts.row(i, results[i], thumbs_in_table.get(i), i in detailed) for i in order]
    counts = {c: 0 for c in parts.CATEGORIES}
    for row in rows:
        counts[row["cat"]] = counts.get(row["cat"], 0) + 1
    flagged_without = max(0, counts[FAKE] - len([c for c in cards if c["verdict"] == FAKE]))
    css, js = _asset("report.css"), _asset("report.js")
    when = dt.datetime.fromtimestamp(finished_at if finished_at is not None
                                     else dt.datetime.now().timestamp(), dt.timezone.utc)
    page = _template().render(
        css=css, js=js, csp=_csp(css, js), rows=rows, cards=cards, counts=counts,
        categories=parts.CATEGORIES, total=len(rows), model=parts.model_info(meta, results),
        sampling=parts.sampling_text(meta.get("options") or {}), version=meta.get("screener", ""),
        low_evidence=(f"fewer than {LOW_EVIDENCE_FACES} faces or a face in under "
                      f"{LOW_EVIDENCE_SHARE:.0%} of the sampled frames"),
        date=when.strftime("%Y-%m-%d %H:%M UTC"), elapsed=parts.duration(elapsed_s),
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
        env.filters["num"] = parts.num
        env.filters["plural"] = plural
        _TEMPLATE = env.get_template("report.html.j2")
    return _TEMPLATE


def _csp(css: str, js: str) -> str:
    def h(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    return (f"default-src 'none'; img-src data:; style-src {h(css)}; script-src {h(js)}; "
            "base-uri 'none'; form-action 'none'")


# --- rebuilding from saved results ----------------------------------------------------------

def rebuild(html_path, *, state=None, report=None, model=None, model_sha: str | None = None,
            details: int | None = None) -> dict:
    """Write the report from a state file (rows, per-frame scores and thumbnails) or, without
    one, from a JSON or CSV report (rows only: no timeline or thumbnails). A report's default
    state (`<report>.state.sqlite`) is used when it exists. `model` (for heat maps and a CSV
    report's card) is a model file, a shipped model's name or a loaded model. Raises StateError, ValueError,
    UnknownModel and ModelError (the model), and OutputConflict when `html_path` is a video of
    the scan, its model or its card."""
    from . import state as state_mod
    from .shipped import resolve_model
    if isinstance(model, (str, os.PathLike)):  # a model file or a shipped model's name
        model = resolve_model(model)
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
        _not_an_input(html_path, [os.fsdecode(k) for k in keys], run.get("meta"), model)
        from .heatmaps import explainer
        meta = run.get("meta") or {}
        return write_html(html_path, results, meta=meta, media=media,
                          explain=explainer(model, meta, state_mod.HeatCache(state), model_sha),
                          details=details, elapsed_s=run.get("elapsed_s"),
                          finished_at=run.get("finished_at"), complete=run.get("complete", True),
                          source=f"state {safe_text(os.fspath(state))}")
    if report is None:
        raise ValueError("give a state file or a report file")
    from .report import read_report
    results, meta, extra = read_report(report)
    _not_an_input(html_path, [r.path for r in results], meta, model)
    if "model" not in meta:  # a CSV report: its rows name the model, nothing carries its card
        meta["model"] = parts.card_by_name(results, model)
    # A report holds no per-frame scores or faces: no detail cards, the page says so.
    return write_html(html_path, results, meta=meta, details=0,
                      elapsed_s=extra.get("elapsed_s"), finished_at=os.path.getmtime(report),
                      complete=extra.get("complete", True),
                      source=f"report {safe_text(os.fspath(report))} (rows only)")


def _not_an_input(html_path, videos: list[str], meta, model) -> None:
    """Raise OutputConflict when the page would replace a video the scan read, its model file
    or card, or the model given for the heat maps (outputs.check_outputs)."""
    from .outputs import check_outputs
    from .scoring import model_inputs
    card = meta.get("model") if isinstance(meta, dict) else None
    scan_model = card.get("path") if isinstance(card, dict) else None
    models = [m for m in (scan_model, model) if isinstance(m, (str, os.PathLike)) and m]
    check_outputs([("the visual report", html_path)],
                  [*(("the scanned video", v) for v in videos),
                   *(named for m in models for named in model_inputs(m))])


__all__ = ["Collector", "write_html", "render", "rebuild", "DEFAULT_DETAILS"]
