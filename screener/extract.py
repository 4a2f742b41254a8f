"""Turn videos into a face dataset that `python -m training.train` reads directly.

    DIR/<label>/<videoid>_<frame>[_<face>].png   aligned 256x256 crops, exactly what the scan scores
    DIR/manifest.csv                              one row per crop: where it came from
    DIR/videos.csv                                one row per video; "ok"/"no_face" = complete
    DIR/extract.json                              the sampling settings every crop was made with

The crops come from `pipeline.crops_from_video`, the scan's own per-video unit, so a model
trained on them sees faces framed as the scan frames them. The video id (`<stem>-<8 hex>`, the
hex from the resolved path) is in every file name, so training can split by video, and two
`clip.mp4` in two folders get two ids. It has no `_`, so `name.split("_")[0]` is the video id.

Crash safety, for a kill at any instant: a video's crop names are journaled (one write, fsync)
before its first crop; every crop is written under a temporary name, fsynced and renamed; a
video's manifest rows are appended (one write, fsync) only once all its crops exist, and its
videos.csv row only after that. A video is complete only when videos.csv says so. A new run
first drops rows of incomplete videos and deletes the files that the manifest and the journal
name for them (and their temporary files), then skips complete videos: the result is the same
as an uninterrupted run. Nothing else in DIR is ever deleted, and a DIR that holds other files
but is not a dataset is refused.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
from collections import defaultdict
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import faces as faces_mod
from .discover import find_videos
from .errors import OutputConflict, ScreenerError
from .outputs import check_outputs
from .pipeline import SampleOptions, VideoCrops
from .report import atomic_write, csv_cells

log = logging.getLogger(__name__)

FORMATS = ("png", "jpg")
UNLABELED = "unlabeled"
LABELS = ("df", "real", UNLABELED)   # what --label accepts
# Spellings a labels file may use for the same classes.
LABEL_ALIASES = {"fake": "df", "deepfake": "df", "": UNLABELED, "unknown": UNLABELED,
                 "unlabelled": UNLABELED, "none": UNLABELED, "?": UNLABELED}
# A label is a folder name under DIR: no separators, no dots, nothing a shell or path treats
# specially.
SAFE_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MANIFEST_COLUMNS = ("source_path", "video_id", "label", "frame_index", "face_index", "time_s",
                    "box_x", "box_y", "box_w", "box_h", "keypoints", "detector_score",
                    "crop_file")
VIDEO_COLUMNS = ("source_path", "video_id", "label", "status", "frames_sampled",
                 "frames_with_face", "faces_too_small", "crops", "error")
COMPLETE = ("ok", "no_face")
CROP_NAME = re.compile(r"^([A-Za-z0-9-]+-[0-9a-f]{8})_\d+(?:_\d+)?\.(?:png|jpg)$")


class ExtractError(ScreenerError):
    """The extraction cannot start: bad labels, unsafe names, or DIR made with other settings."""


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


@dataclass
class VideoRecord:
    """One video's outcome, as passed to `progress`."""
    source_path: str
    video_id: str
    label: str
    status: str                        # ok | no_face | error | skipped
    crops: int = 0
    error: str | None = None


# --- names --------------------------------------------------------------------------------

def video_id(path) -> str:
    """`<stem>-<8 hex>`: readable, stable for the same file, unique across folders.

    The stem keeps only ASCII letters, digits and '-' (no separator, dot or '_' can reach a
    file name); the hash of the resolved path's bytes tells apart same-named files.
    """
    real = os.path.realpath(os.fspath(path))
    digest = hashlib.sha1(os.fsencode(real)).hexdigest()[:8]
    stem = os.path.splitext(os.path.basename(real))[0]
    stem = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:48].strip("-")
    return f"{stem or 'video'}-{digest}"


def crop_name(vid: str, frame_index: int, face_index: int | None, fmt: str) -> str:
    face = "" if face_index is None else f"_{face_index}"
    return f"{vid}_{frame_index:06d}{face}.{fmt}"


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

    Relative paths are relative to the labels file's folder. Raises ExtractError on a missing
    header (saying which columns it found), an unsafe label, a malformed row, or a video
    listed twice with two labels.
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
        key = os.path.realpath(csv_path.parent / row[col_path].strip())
        label = normalize_label(row[col_label])
        if labels.setdefault(key, label) != label:
            raise ExtractError(f"{csv_path}: {row[col_path]!r} has two labels "
                               f"({labels[key]}, {label})")
    return labels


# --- the output folder ----------------------------------------------------------------------

def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _render(rows: Iterable[dict], columns, header: bool = False, escape: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    if header:
        w.writeheader()
    for row in rows:
        w.writerow(csv_cells(row) if escape else row)
    return buf.getvalue()


def _append(path: Path, text: str, columns=None) -> None:
    """Append rows (a header first when `columns` are given and the file is new) in one
    write(), then fsync: a kill leaves all of them or none, and a full disk none of them."""
    new = not path.exists()
    data = ((_render([], columns, header=True) if new and columns else "") + text).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):  # the disk filled up part way
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, size)
            if e.filename is None:
                e.filename = os.fspath(path)
            raise
    finally:
        os.close(fd)


def _ends_clean(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


SETTINGS, LOCK, JOURNAL = "extract.json", ".extract.lock", ".extract.journal"
# What makes a folder an extract dataset: the lock is made first, the settings next.
MARKS = (SETTINGS, LOCK)


def dataset_files(out_dir) -> list[tuple[str, Path]]:
    """The folder and the files of its own an extract writes there, named (for
    outputs.check_outputs)."""
    root = Path(out_dir)
    return [("--out", root)] + [(f"the dataset's {name}", root / name) for name in
                                ("manifest.csv", "videos.csv", SETTINGS, LOCK, JOURNAL)]


def _check_folder(root: Path) -> None:
    """Only an empty folder or an extract dataset may be written to: clean-up in a folder of
    other files could remove what extract never wrote."""
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ExtractError(f"--out {root} is a file, not a folder") from None
    if entries and not set(MARKS) & set(entries):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5
                                          else "")
        raise ExtractError(f"--out {root} is not empty and is not an extract dataset (no "
                           f"{SETTINGS}); it holds {shown}. Use a new or empty folder")


class Dataset:
    """The output folder: its lock, its settings, its complete videos, and safe writes.

    Its own records say which files it wrote: manifest.csv (the crops of videos whose rows were
    written) and a journal, `.extract.journal`, where each video's crop names are written (and
    fsynced) before its first crop. Clean-up removes only files these name, never a file
    because of what its name looks like."""

    def __init__(self, out_dir, settings: dict):
        self.root = Path(out_dir)
        _check_folder(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = self.root / "manifest.csv"
        self.videos_csv = self.root / "videos.csv"
        self.journal = self.root / JOURNAL
        self._lock = open(self.root / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ExtractError(f"another extract is writing to {self.root}") from None
        self._check_settings(settings)
        self.complete: dict[str, dict] = {}   # video id -> its videos.csv row
        self._recover()

    def close(self) -> None:
        self._lock.close()

    def _check_settings(self, settings: dict) -> None:
        path = self.root / SETTINGS
        if path.exists():
            old = json.loads(path.read_text())
            if old != settings:
                diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} now"
                                 for k, v in settings.items() if old.get(k) != v)
                raise ExtractError(f"{self.root} was extracted with other settings ({diff}); "
                                   "use the same options or another --out")
        else:
            with atomic_write(path) as f:
                json.dump(settings, f, indent=1)

    def _recover(self) -> None:
        """Forget what an interrupted run left half done (see the module docstring)."""
        videos = _read_csv(self.videos_csv)
        done = [r for r in videos if r.get("status") in COMPLETE and r.get("video_id")]
        self.complete = {r["video_id"]: r for r in done}
        rows = _read_csv(self.manifest)
        kept = [r for r in rows if r.get("video_id") in self.complete]
        # What the records say was written for videos that did not complete.
        stale = [(r.get("video_id"), r.get("crop_file")) for r in rows
                 if r.get("video_id") not in self.complete]
        stale += [(vid, rel) for vid, files in self._journaled() if vid not in self.complete
                  for rel in files]
        # Rows read back are already escaped: write them as they are.
        if len(kept) != len(rows) or not _ends_clean(self.manifest):
            with atomic_write(self.manifest) as f:
                f.write(_render(kept, MANIFEST_COLUMNS, header=True, escape=False))
        if len(done) != len(videos) or not _ends_clean(self.videos_csv):
            with atomic_write(self.videos_csv) as f:
                f.write(_render(done, VIDEO_COLUMNS, header=True, escape=False))
        for vid, rel in stale:
            path = self._own_crop(vid, rel)
            if path is not None:  # the crop and its temporary name (see _write_image)
                path.unlink(missing_ok=True)
                path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)

    def _journaled(self) -> list[tuple[str, list]]:
        """(video id, crop files) of each journal line; a torn last line wrote no crop."""
        try:
            lines = self.journal.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
                out.append((str(entry["video_id"]), [str(f) for f in entry["files"]]))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def _own_crop(self, vid, rel) -> Path | None:
        """The file a record names, if it is a crop of that video in a label folder of this
        dataset: a damaged or edited record can name nothing else."""
        label, _, name = str(rel).partition("/")
        m = CROP_NAME.match(name)
        if not (SAFE_LABEL.match(label) and m and m.group(1) == vid):
            return None
        return self.root / label / name

    def finish(self) -> None:
        """Every video of the run is complete: the journal has nothing left to say."""
        self.journal.unlink(missing_ok=True)

    def write_video(self, video: VideoCrops, vid: str, label: str, fmt: str, quality: int,
                    all_faces: bool) -> list[dict]:
        """Crops (temp name, fsync, rename), then manifest rows, then the video's row."""
        folder = self.root / label
        folder.mkdir(exist_ok=True)
        names = [crop_name(vid, c.frame_index, c.face_index if all_faces else None, fmt)
                 for c in video.crops]
        if names:  # recorded before the first crop exists: a kill leaves nothing unnamed
            _append(self.journal, json.dumps({"video_id": vid,
                                              "files": [f"{label}/{n}" for n in names]}) + "\n")
        rows = []
        for c, name in zip(video.crops, names):
            _write_image(folder / name, c.crop, fmt, quality)
            x, y, w, h = c.box
            rows.append(dict(
                source_path=video.path, video_id=vid, label=label, frame_index=c.frame_index,
                face_index=c.face_index, time_s=c.time_s, box_x=x, box_y=y, box_w=w, box_h=h,
                keypoints=json.dumps([[round(float(a), 1), round(float(b), 1)]
                                      for a, b in c.keypoints]),
                detector_score=c.score, crop_file=f"{label}/{name}"))
        if rows:
            _fsync_dir(folder)
            _append(self.manifest, _render(rows, MANIFEST_COLUMNS), MANIFEST_COLUMNS)
        status = "ok" if rows else "no_face" if video.ok else "error"
        record = dict(source_path=video.path, video_id=vid, label=label, status=status,
                      frames_sampled=video.frames_sampled,
                      frames_with_face=video.frames_with_face,
                      faces_too_small=video.faces_too_small, crops=len(rows),
                      error=video.error or "")
        _append(self.videos_csv, _render([record], VIDEO_COLUMNS), VIDEO_COLUMNS)
        if status in COMPLETE:
            self.complete[vid] = record
        return rows


def _write_image(path: Path, rgb, fmt: str, quality: int) -> None:
    from PIL import Image

    from .images import write_png
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if fmt == "png":
                write_png(f, rgb)
            else:  # 4:4:4: chroma subsampling would blur exactly the detail a detector uses
                Image.fromarray(rgb).save(f, format="JPEG", quality=quality, subsampling=0)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            e.filename = os.fspath(path)
        raise


# --- the run --------------------------------------------------------------------------------

def extract(paths: Iterable, out_dir, *, label: str | None = None,
            labels_csv=None, options: SampleOptions | None = None, frames: int = 32,
            every_s: float | None = None, all_faces: bool = False,
            min_face: int = faces_mod.MIN_FACE_PX, min_score: float = faces_mod.MIN_SCORE,
            fmt: str = "png", quality: int = 95, contact_sheet=None,
            progress: Callable[[int, int, VideoRecord | None], None] | None = None,
            detector=None, workers: int | None = None,
            video_timeout_s: float | None = None) -> ExtractSummary:
    """Extract aligned face crops of videos into `out_dir`; resumes an interrupted run.

    paths: files, folders, globs (as for the scan). With `labels_csv` and no paths (`[]`), the
        videos listed in it. `label` (df, real, unlabeled) applies to all; `labels_csv` maps each
        video (unlisted ones are unlabeled). Sampling: as `screener.scan`; `options` overrides.
    fmt: "png" (lossless, default) or "jpg" at `quality`.
    progress(done, total, record): called once with record None before the first video, then
        after each one.
    workers: processes that decode and find faces, as in the scan (default: one per core; none
        when a `detector` is given, which then does the work in this process). In a worker, a
        decoder crash is that video's error, not the run's end.
    video_timeout_s: seconds a worker may spend on one video before it is stopped and the video
        becomes an error (needs workers; default: no limit).
    Raises ExtractError / discover.InputError before any video is read; a bad video is an
    entry of `summary.errors`, never an exception.
    """
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
    try:  # before anything is read or written
        check_outputs([*dataset_files(out_dir), ("--contact-sheet", contact_sheet)],
                      [*(("the input", p) for p in [*paths, *videos]),
                       ("the labels file", labels_csv)])
    except OutputConflict as e:
        raise ExtractError(str(e)) from None
    options = options or SampleOptions(frames, every_s, all_faces, min_face, min_score)
    from .engines.workers import VideoReader
    try:
        reader = VideoReader(options, 0 if workers is None and detector is not None else workers,
                             video_timeout_s, detector)
    except ValueError as e:
        raise ExtractError(str(e)) from None
    settings = {**asdict(options), "format": fmt}
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
        # closing: interrupted, the workers stop at once (WorkerPool.abort)
        with reader, closing(reader.videos([videos[i] for i in todo])) as read:
            if progress:
                progress(0, len(videos), None)
            reading = set(todo)
            for i, (path, vid) in enumerate(zip(videos, ids)):
                lab = mapping.get(os.path.realpath(path), fixed) if mapping else fixed
                if i not in reading:
                    record = VideoRecord(path, vid, lab, "skipped")
                    summary.skipped += 1
                    known = ds.complete.get(vid, {}).get("label", lab)
                    if known != lab:
                        log.warning("%s: already extracted as %s, not as %s (delete DIR to "
                                    "relabel)", path, known, lab)
                else:
                    video = next(read)
                    rows = ds.write_video(video, vid, lab, fmt, quality, options.all_faces)
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


def make_contact_sheet(out_dir, sheet_path, per_label: int = 24, cols: int = 8,
                       thumb_px: int = 96) -> Path:
    """A PNG grid of sample crops per label, to check at a glance that they are faces framed
    as training expects. Samples are spread over videos (round robin), so one long video does
    not fill the sheet. Ticks on the tiles' edges mark the template's eye and mouth heights."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    by_label: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in _read_csv(out_dir / "manifest.csv"):
        by_label[r["label"]][r["video_id"]].append(r["crop_file"])
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
    eyes, mouth = (round(t * thumb_px) for t in faces_mod.TEMPLATE[[0, 3], 1])
    for lab, n_crops, n_videos, picks in blocks:
        draw.text((pad, y + 3), f"{lab}: {n_crops} crops from {n_videos} videos "
                                f"(showing {len(picks)})", fill=(0, 0, 0))
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
