"""An extract's dataset folder: its names, its records, and how it is written so a kill at any
instant loses nothing.

    DIR/<label>/<videoid>_<frame>[_<face>].png   aligned 256x256 crops, exactly what the scan scores
    DIR/manifest.csv                              one row per crop: where it came from
    DIR/videos.csv                                one row per video; "ok"/"no_face" = complete
    DIR/extract.json                              the sampling settings every crop was made with

The video id (`<stem>-<8 hex>`, the hex from the resolved path) is in every file name, so
training can split by video, and two `clip.mp4` in two folders get two ids. It has no `_`, so
`name.split("_")[0]` is the video id.

Crash safety: a video's crop names are journaled (one write, fsync) before its first crop;
every crop is written atomically (`files.atomic_write`); a video's manifest rows are appended
(one write, fsync) only once all its crops exist, and its videos.csv row only after that. A
video is complete only when videos.csv says so. Opening the folder first drops rows of
incomplete videos and deletes the files that the manifest and the journal name for them (and
their temporary files): nothing else in DIR is ever deleted, and a DIR that holds other files
but is not a dataset is refused. One extract at a time per DIR (`files.FileLock`).
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Iterable

from .errors import ScreenerError
from .files import FileLock, LockHeld, atomic_write, fsync_folder, open_own, remove_temporaries
from .pipeline import VideoCrops
from .report import csv_cells
from .sources import resolved

FORMATS = ("png", "jpg")
# A label is a folder name under DIR: no separators, no dots, nothing a shell or path treats
# specially.
SAFE_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MANIFEST_COLUMNS = ("source_path", "video_id", "label", "frame_index", "face_index", "person",
                    "time_s",
                    "box_x", "box_y", "box_w", "box_h", "keypoints", "detector_score",
                    "crop_file")
VIDEO_COLUMNS = ("source_path", "video_id", "label", "status", "frames_sampled",
                 "frames_with_face", "faces_too_small", "crops", "error")
COMPLETE = ("ok", "no_face")
CROP_NAME = re.compile(r"^([A-Za-z0-9-]+-[0-9a-f]{8})_\d+(?:_p?\d+)?\.(?:png|jpg)$")


class ExtractError(ScreenerError):
    """The extraction cannot start: bad labels, unsafe names, or DIR made with other settings."""


def video_id(path) -> str:
    """`<stem>-<8 hex>`: readable, stable for the same file, unique across folders.

    The stem keeps only ASCII letters, digits and '-' (no separator, dot or '_' can reach a
    file name); the hash of the resolved path's bytes (an object's URL) tells apart same-named
    files.
    """
    real = resolved(path)
    digest = hashlib.sha1(os.fsencode(real)).hexdigest()[:8]
    stem = os.path.splitext(os.path.basename(real))[0]
    stem = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:48].strip("-")
    return f"{stem or 'video'}-{digest}"


def crop_name(vid: str, frame_index: int, person: int | None, fmt: str) -> str:
    """`<video id>_<frame>_p<person>.<fmt>`; without people (largest-face mode, one face a
    frame) `<video id>_<frame>.<fmt>`."""
    who = "" if person is None else f"_p{person}"
    return f"{vid}_{frame_index:06d}{who}.{fmt}"


def _read_header(path: Path) -> list[str] | None:
    """A record file's first row, None when there is none (or it is empty); opened as the
    records are written (`open_own`: a link, a pipe or a device is refused, saying so)."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8", newline="") as f:
        return next(csv.reader(f), None)


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
    fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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


SETTINGS, LOCK, JOURNAL = "extract.json", ".extract.lock", ".extract.journal"
# What makes a folder an extract dataset: the lock is made first, the settings next.
MARKS = (SETTINGS, LOCK)


def dataset_files(out_dir) -> list[tuple[str, str | Path]]:
    """The folder and the files of its own an extract writes there, named (for
    outputs.check_outputs). The folder as given: a URL made a Path would lose its "//" and
    pass for a local folder named "s3:"."""
    root = Path(out_dir)
    return [("the dataset folder", os.fspath(out_dir))] + [
        (f"the dataset's {name}", root / name)
        for name in ("manifest.csv", "videos.csv", SETTINGS, LOCK, JOURNAL)]


def _check_folder(root: Path) -> None:
    """Only an empty folder or an extract dataset may be written to: clean-up in a folder of
    other files could remove what extract never wrote."""
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ExtractError(f"the dataset folder {root} is a file, not a folder") from None
    if entries and not set(MARKS) & set(entries):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5
                                          else "")
        raise ExtractError(f"the dataset folder {root} is not empty and is not an extract dataset (no "
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
        try:
            self._lock = FileLock(self.root / LOCK)
        except LockHeld:
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
                                   "use the same options or another dataset folder")
            header = _read_header(self.manifest)
            if header is not None and tuple(header) != MANIFEST_COLUMNS:
                # Rows of another layout appended under this header would be misread.
                raise ExtractError(f"{self.root} was extracted by another version of screener "
                                   "(its manifest.csv has other columns); extract into "
                                   "another dataset folder")
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
        own = [p for p in (self._own_crop(vid, rel) for vid, rel in stale) if p is not None]
        for path in own:
            path.unlink(missing_ok=True)
        remove_temporaries(own)  # atomic_write's, of crops being written when killed
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
        if not (SAFE_LABEL.match(label) and m and m.group(1) == vid) \
                or (self.root / label).is_symlink():
            return None
        return self.root / label / name

    def finish(self) -> None:
        """Every video of the run is complete: the journal has nothing left to say."""
        self.journal.unlink(missing_ok=True)

    def write_video(self, video: VideoCrops, vid: str, label: str, fmt: str,
                    quality: int) -> list[dict]:
        """Crops (temp name, fsync, rename), then manifest rows, then the video's row."""
        folder = self.root / label
        folder.mkdir(exist_ok=True)
        if folder.is_symlink():  # crops go only where the dataset is
            raise ExtractError(f"{folder} is a symbolic link, which screener does not follow; "
                               "remove it")
        names = [crop_name(vid, c.frame_index, c.person, fmt) for c in video.crops]
        if names:  # recorded before the first crop exists: a kill leaves nothing unnamed
            _append(self.journal, json.dumps({"video_id": vid,
                                              "files": [f"{label}/{n}" for n in names]}) + "\n")
        rows = []
        for c, name in zip(video.crops, names):
            _write_image(folder / name, c.crop, fmt, quality)
            x, y, w, h = c.box
            rows.append(dict(
                source_path=video.path, video_id=vid, label=label, frame_index=c.frame_index,
                face_index=c.face_index, person=c.person, time_s=c.time_s, box_x=x, box_y=y,
                box_w=w, box_h=h,
                keypoints=json.dumps([[round(float(a), 1), round(float(b), 1)]
                                      for a, b in c.keypoints]),
                detector_score=c.score, crop_file=f"{label}/{name}"))
        if rows:
            fsync_folder(folder)
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
    """One crop, atomically; the folder is synced once per video (write_video)."""
    from PIL import Image

    from .images import write_png
    with atomic_write(path, "wb", encoding=None, newline=None, sync_folder=False) as f:
        if fmt == "png":
            write_png(f, rgb)
        else:  # 4:4:4: chroma subsampling would blur exactly the detail a detector uses
            Image.fromarray(rgb).save(f, format="JPEG", quality=quality, subsampling=0)
