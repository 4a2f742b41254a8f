"""Turn videos into a face dataset that `python -m training.train` reads directly.

The crops come from `pipeline.crops_from_video`, the scan's own per-video unit (read by the
scan's `engines.workers.VideoReader`), so a model trained on them sees faces framed as the scan
frames them. Labels come from `--label` (one for all) or a labels file. The folder, its names
and its crash safety are `dataset.Dataset`'s: a rerun resumes, and ends as an uninterrupted run.
`make_contact_sheet` draws sample crops per label, to check them at a glance.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterable

from .dataset import (FORMATS, SAFE_LABEL, Dataset, ExtractError, _read_csv, dataset_files,
                      video_id)
from .discover import find_videos
from .files import atomic_write
from .options import EngineOptions, OptionsError, SampleOptions, ScanOptions, from_keywords
from .outputs import check_outputs
from .report import plural
from .sources import is_remote, resolved

log = logging.getLogger(__name__)

UNLABELED = "unlabeled"
LABELS = ("df", "real", UNLABELED)   # what --label accepts
# Spellings a labels file may use for the same classes.
LABEL_ALIASES = {"fake": "df", "deepfake": "df", "": UNLABELED, "unknown": UNLABELED,
                 "unlabelled": UNLABELED, "none": UNLABELED, "?": UNLABELED}


@dataclass
class ExtractSummary:
    out_dir: str
    videos: int = 0                    # found in the inputs
    skipped: int = 0                   # already complete in DIR (resumed)
    extracted: int = 0                 # done now, with at least one face
    no_face: int = 0                   # done now, no usable face
    crops: int = 0                     # written now
    crops_per_label: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)   # (path, reason): reported, not written
    contact_sheet: str | None = None

    def summary_line(self, elapsed_s: float) -> str:
        labels = ", ".join(f"{k}: {v}" for k, v in self.crops_per_label.items()) or "none"
        return (f"{plural(self.videos, 'video')}: {plural(self.crops, 'crop')} from "
                f"{plural(self.extracted, 'video')} ({labels}), {self.skipped} already done, "
                f"{self.no_face} without a face, {plural(len(self.errors), 'error')} in "
                f"{elapsed_s:.1f} s; dataset: {self.out_dir}")


@dataclass
class VideoRecord:
    """One video's outcome, as passed to `progress`."""
    source_path: str
    video_id: str
    label: str
    status: str                        # ok | no_face | error | skipped
    crops: int = 0
    error: str | None = None


def normalize_label(label: str) -> str:
    """A label as its folder name; raises ExtractError for one that is not a safe name."""
    text = str(label).strip().lower()
    text = LABEL_ALIASES.get(text, text)
    if not SAFE_LABEL.match(text):
        raise ExtractError(f"unsafe label {label!r}: use letters, digits and '-' "
                           f"(at most 32), e.g. {', '.join(LABELS)}")
    return text


def read_labels(csv_path) -> dict[str, str]:
    """labels.csv (a header naming `path` and `label` columns, in any order, others ignored;
    a BOM is fine) -> {resolved path: label}.

    Relative paths are relative to the labels file's folder; object URLs (s3://...) are kept.
    Raises ExtractError on a missing header (saying which columns it found), an unsafe label,
    a malformed row, or a video listed twice with two labels.
    """
    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ExtractError(f"cannot read labels file {csv_path}: {e}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows.pop(0)] if rows else []
    if "path" not in header or "label" not in header:
        found = ", ".join(repr(c) for c in header) if header else "none (the file is empty)"
        raise ExtractError(f"labels file {csv_path} needs a first line naming its path and "
                           f"label columns (e.g. path,label); columns found: {found}")
    col_path, col_label = header.index("path"), header.index("label")
    labels: dict[str, str] = {}
    for n, row in enumerate(rows, 1):
        if len(row) <= max(col_path, col_label):
            raise ExtractError(f"{csv_path}: row {n} needs a path and a label: {row!r}")
        key = resolved(row[col_path].strip(), csv_path.parent)
        label = normalize_label(row[col_label])
        if labels.setdefault(key, label) != label:
            raise ExtractError(f"{csv_path}: {row[col_path]!r} has two labels "
                               f"({labels[key]}, {label})")
    return labels


def extract(paths: Iterable, out_dir, *, label: str | None = None, labels_csv=None,
            sample: SampleOptions | None = None, engine: EngineOptions | None = None,
            fmt: str = "png", quality: int = 95, contact_sheet=None,
            progress: Callable[[int, int, VideoRecord | None], None] | None = None,
            detector=None, **keywords) -> ExtractSummary:
    """Extract aligned face crops of videos into `out_dir`; resumes an interrupted run.

    paths: files, folders, globs (as for the scan). With `labels_csv` and no paths (`[]`), the
        videos listed in it. `label` (df, real, unlabeled) applies to all; `labels_csv` maps each
        video (unlisted ones are unlabeled).
    sample / keywords: the sampling, as for `screener.scan` (`frames`, `every_s`, `largest_face`,
        `min_face`, `min_score`). engine / keywords: `workers`, processes that decode and find
        faces, as in the scan (default: one per core; none when a `detector` is given, which
        then does the work in this process; in a worker, a decoder crash is that video's
        error, not the run's end), and `video_timeout_s`, seconds a worker may spend on one
        video before it becomes an error (needs workers; default: no limit).
    fmt: "png" (lossless, default) or "jpg" at `quality`.
    progress(done, total, record): called once with record None before the first video, then
        after each one.
    Raises ExtractError / discover.InputError before any video is read; a bad video is an
    entry of `summary.errors`, never an exception.
    """
    options = _options(sample, engine, detector, keywords)
    if fmt not in FORMATS:
        raise ExtractError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ExtractError("quality must be between 1 and 100")
    if label is not None and labels_csv is not None:
        raise ExtractError("give a label for all videos or a labels file, not both")
    fixed = normalize_label(label) if label is not None else UNLABELED
    if label is not None and fixed not in LABELS:
        raise ExtractError(f"label must be one of {', '.join(LABELS)} (for other names use a "
                           "labels file)")
    mapping = read_labels(labels_csv) if labels_csv is not None else {}
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if paths:
        videos = find_videos(paths)
    elif mapping:  # the labels file is the list (a missing file is reported as a bad video)
        videos = list(mapping)
    else:
        raise ExtractError("nothing to extract: give PATHs or a labels file listing videos")
    check_outputs([*dataset_files(out_dir), ("the contact sheet", contact_sheet)],
                  [*(("the input", p) for p in [*paths, *videos]),
                   ("the labels file", labels_csv)])  # before anything is read or written
    if contact_sheet is not None and _inside(contact_sheet, out_dir):
        raise ExtractError(f"the contact sheet {contact_sheet} is inside the dataset {out_dir}: "
                           "training would read it, or it would replace a crop; write it "
                           "outside the dataset")
    from .engines.workers import VideoReader
    reader = VideoReader(options.sample, options.engine, detector)
    settings = {**options.sample.key(), "format": fmt}
    if fmt == "jpg":
        settings["quality"] = quality

    ds = Dataset(out_dir, settings)
    summary = ExtractSummary(str(out_dir), videos=len(videos))
    per_label: dict[str, int] = defaultdict(int)
    ids = [video_id(p) for p in videos]
    todo, seen = [], set(ds.complete)  # indexes of the videos to read: each id once
    for i, vid in enumerate(ids):      # (a file and a link to it share an id)
        if vid not in seen:
            seen.add(vid)
            todo.append(i)
    try:
        # closing: interrupted, the workers stop at once (ProcessPool.abort)
        with reader, closing(reader.videos([videos[i] for i in todo])) as read:
            if progress:
                progress(0, len(videos), None)
            reading = set(todo)
            for i, (path, vid) in enumerate(zip(videos, ids)):
                lab = mapping.get(resolved(path), fixed) if mapping else fixed
                if i not in reading:
                    record = VideoRecord(path, vid, lab, "skipped")
                    summary.skipped += 1
                    known = ds.complete.get(vid, {}).get("label", lab)
                    if known != lab:
                        log.warning("%s: already extracted as %s, not as %s (delete DIR to "
                                    "relabel)", path, known, lab)
                else:
                    video = next(read)
                    rows = ds.write_video(video, vid, lab, fmt, quality)
                    record = VideoRecord(path, vid, lab, "ok" if rows else
                                         "no_face" if video.ok else "error", len(rows),
                                         video.error)
                    if video.error:
                        log.warning("%s: skipped: %s", path, video.error)
                        summary.errors.append((path, video.error))
                    elif rows:
                        summary.extracted += 1
                        summary.crops += len(rows)
                        per_label[lab] += len(rows)
                    else:
                        summary.no_face += 1
                if progress:
                    progress(i + 1, len(videos), record)
        ds.finish()
    finally:
        ds.close()
    summary.crops_per_label = dict(sorted(per_label.items()))
    if contact_sheet is not None:
        make_contact_sheet(out_dir, contact_sheet)
        summary.contact_sheet = os.fspath(contact_sheet)
    return summary


def _inside(path, folder) -> bool:
    """Whether `path` is in `folder` (or below it), links resolved."""
    if is_remote(path) or is_remote(folder):
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _options(sample, engine, detector, keywords) -> ScanOptions:
    """The sampling and the reading of an extract, from objects and keywords (ExtractError
    for a bad value)."""
    allowed = {f.name for f in fields(SampleOptions)} | {"workers", "video_timeout_s"}
    unknown = sorted(set(keywords) - allowed)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}")
    try:
        options = from_keywords(options=ScanOptions(sample=sample or SampleOptions(),
                                                    engine=engine or EngineOptions()), **keywords)
        if options.engine.workers is None and detector is not None:  # this process reads
            options = replace(options, engine=replace(options.engine, workers=0))
    except OptionsError as e:
        raise ExtractError(e.template, *e.named) from None
    return options


def make_contact_sheet(out_dir, sheet_path, per_label: int = 24, cols: int = 8,
                       thumb_px: int = 96, by: str = "label") -> Path:
    """A PNG grid of sample crops per label, to check at a glance that they are faces framed
    as training expects. Samples are spread over videos (round robin), so one long video does
    not fill the sheet. Ticks on the tiles' edges mark the template's eye and mouth heights.
    by="person": a block per person of each video instead, to check that faces were linked
    into the right people (each block one person, each person one block)."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    by_label: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in _read_csv(out_dir / "manifest.csv"):
        key = r["label"] if by == "label" else f"{r['video_id']} person {r['person'] or '-'}"
        by_label[key][r["video_id"]].append(r["crop_file"])
    pad, head = 4, 18
    blocks = []
    for lab in sorted(by_label):
        queues = [list(v) for _, v in sorted(by_label[lab].items())]
        picks = []
        while len(picks) < per_label and any(queues):
            for q in queues:
                if q and len(picks) < per_label:
                    # spread over the video: first, last, middle, ... instead of its start
                    picks.append(q.pop(len(q) // 2 if len(picks) % 2 else 0))
        blocks.append((lab, sum(map(len, by_label[lab].values())), len(by_label[lab]), picks))
    width = pad + cols * (thumb_px + pad)
    height = sum(head + -(-len(p) // cols) * (thumb_px + pad) for *_, p in blocks) + pad
    sheet = Image.new("RGB", (width, max(height, head + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = pad
    if not blocks:
        draw.text((pad, pad), "no crops in manifest.csv", fill=(0, 0, 0))
    from .align import TEMPLATE
    eyes, mouth = (round(t * thumb_px) for t in TEMPLATE[[0, 3], 1])
    for lab, n_crops, n_videos, picks in blocks:
        draw.text((pad, y + 3), f"{lab}: {plural(n_crops, 'crop')} from "
                                f"{plural(n_videos, 'video')} (showing {len(picks)})",
                  fill=(0, 0, 0))
        y += head
        for i, rel in enumerate(picks):
            x0, y0 = pad + (i % cols) * (thumb_px + pad), y + (i // cols) * (thumb_px + pad)
            with Image.open(out_dir / rel) as im:
                sheet.paste(im.convert("RGB").resize((thumb_px, thumb_px), Image.LANCZOS), (x0, y0))
            for ty in (eyes, mouth):
                draw.line([(x0, y0 + ty), (x0 + 5, y0 + ty)], fill=(255, 0, 0))
                draw.line([(x0 + thumb_px - 6, y0 + ty), (x0 + thumb_px - 1, y0 + ty)],
                          fill=(255, 0, 0))
        y += -(-len(picks) // cols) * (thumb_px + pad)
    with atomic_write(sheet_path, "wb", encoding=None, newline=None) as f:
        sheet.save(f, format="PNG")
    return Path(sheet_path)


__all__ = ["extract", "make_contact_sheet", "ExtractSummary", "ExtractError", "VideoRecord",
           "video_id", "read_labels", "normalize_label", "FORMATS", "LABELS"]
