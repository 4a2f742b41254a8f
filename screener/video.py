"""Open a video with OpenCV, describe it, and yield sampled frames as RGB.

Sampling decodes no more than it must: frames that are not sampled are skipped with grab()
(demux + decode, no colour conversion) and only sampled ones are retrieved and converted.
The container's frame count is a hint, not a fact: when it is missing the frames are counted by
streaming first; when the video ends before it, the frames read so far are what it yields.
Rotation metadata is honoured (OpenCV's FFmpeg backend rotates frames by default; we check it).
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from . import files
from .errors import VideoError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frame_count: int      # as counted when the container did not say; 0 if unknown
    fps: float
    width: int            # as displayed, after rotation
    height: int
    duration_s: float
    codec: str
    rotation_deg: int


@dataclass
class Frame:
    index: int            # 0-based index of the frame in decode order
    time_s: float
    rgb: np.ndarray       # (height, width, 3) uint8, displayed orientation


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


NO_FRAME = "no frame could be decoded"  # a video's error when none was (pipeline, here)

def _not_regular(mode: int) -> VideoError:
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return VideoError(f"not a regular file ({kind})")


def _check_file(path: Path) -> None:
    """Reasons OpenCV would only report as "cannot open", found first and said plainly.
    Anything but a regular file (a named pipe, a socket, a device) is refused unopened: a
    read from it may block for ever, or never end."""
    if not path.exists():
        raise VideoError("broken symbolic link or link loop" if path.is_symlink() else "no such file")
    if path.is_dir():
        raise VideoError("is a directory")
    try:
        fd = files.open_regular(path)
        try:
            st = os.fstat(fd)
            os.read(fd, 1)
        finally:
            os.close(fd)
    except files.NotRegular as e:
        raise _not_regular(e.mode) from None
    except PermissionError:
        raise VideoError("permission denied") from None
    except OSError as e:
        raise VideoError(f"cannot read file: {e.strerror or e}") from None
    if st.st_size == 0:
        raise VideoError("empty file (0 bytes)")


def _diagnose(path: Path) -> str:
    """Why OpenCV could not open or decode a file, in one line (asks FFmpeg through PyAV)."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        return "not a readable video (OpenCV cannot open it)"
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams}) or ["no"]
                return f"no video stream ({'/'.join(kinds)} streams only)"
            s = c.streams.video[0]
            name = s.codec_context.name if s.codec_context else "unknown"
            try:
                for _ in c.decode(s):
                    break
                else:
                    return "video stream has no decodable frames (truncated or empty)"
            except av.FFmpegError as e:
                return f"cannot decode {name} video: {str(e).splitlines()[0]}"
            return f"{name} video that OpenCV cannot decode"
    except av.FFmpegError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Invalid data" in msg or "moov atom not found" in msg:
            try:
                with open(path, "rb") as f:
                    head = f.read(12)
            except OSError:
                head = b""
            if head[4:8] == b"ftyp":  # an MP4/MOV header, then nothing usable: cut short
                return "truncated or incomplete MP4 (its index is missing or cut)"
            return "not a video file (unrecognised or corrupt data)"
        if "moov atom not found" in msg:
            return "truncated or incomplete MP4 (no moov atom)"
        return f"not a readable video: {msg}"
    except Exception as e:  # PyAV may raise codec-specific errors: all are a reason here
        return f"not a readable video: {type(e).__name__}: {e}"


def _fourcc(cap) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text if text.isprintable() and text else "unknown"


# FFmpeg decodes H.264 with about one thread per core by default. Where every core already runs
# a worker process those threads buy no speed and cost CPU (docs/performance.md). Worker
# processes set it (workers.py, ray_tasks.py); None: FFmpeg's.
_decode_threads: int | None = None


def set_decode_threads(n: int | None) -> None:
    """Threads each FFmpeg decoder of this process may use (None: FFmpeg's default)."""
    global _decode_threads
    _decode_threads = None if n is None else max(1, int(n))


def _capture(path: Path):
    """cv2.VideoCapture, also for a name that is not valid UTF-8 (Linux names are bytes):
    OpenCV's binding crashes the process on such a str, so open it through an ASCII-named
    symlink, removed at once (FFmpeg keeps its own file descriptor)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="screener-") as tmp:
            link = os.path.join(tmp, "video")
            os.symlink(os.path.abspath(path), link)
            return cv2.VideoCapture(link, cv2.CAP_FFMPEG, _params())
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, _params())


def _params() -> list[int]:
    return [] if _decode_threads is None else [cv2.CAP_PROP_N_THREADS, _decode_threads]


def _open(path: Path):
    _check_file(path)
    cap = _capture(path)
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    if not cap.isOpened():
        cap.release()
        raise VideoError(_diagnose(path))
    return cap


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video from its container. Raises VideoError with a one-line reason."""
    path = Path(path)
    cap = _open(path)
    try:
        return _info(path, cap)
    finally:
        cap.release()


def _info(path: Path, cap, frame_count: int | None = None) -> VideoInfo:
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 0.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if frame_count is None else frame_count
    n = max(n, 0)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    # With CAP_PROP_ORIENTATION_AUTO set (see _open) OpenCV rotates the frames and reports the
    # rotated size too (left at its default, it rotates frames but reports the stored size).
    rot = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
    if w <= 0 or h <= 0:
        raise VideoError("video stream has no frame size (no decodable video)")
    return VideoInfo(str(path), n, fps, w, h, n / fps if fps else 0.0, _fourcc(cap), rot)


def _count_frames(path: Path) -> int:
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def targets(frame_count: int, fps: float, frames: int = 32, every_s: float | None = None) -> list[int]:
    """Indices of the frames to sample: `frames` spread evenly, or one every `every_s` seconds."""
    if frame_count <= 0:
        return []
    if every_s is not None:  # both checked by options.SampleOptions
        step = every_s * (fps or 25.0)
        idx = np.arange(0, frame_count, step)
    else:
        idx = np.linspace(0, frame_count - 1, min(frames, frame_count))
    return sorted({int(round(i)) for i in idx if round(i) < frame_count})


def open_video(path: str | os.PathLike, frames: int = 32, every_s: float | None = None,
               name: str | None = None) -> tuple[VideoInfo, Iterator[Frame]]:
    """Probe a video and return its info and an iterator over its sampled frames. `name`: the
    video's name in the info and in messages (default `path`; an object's URL when `path` is
    its temporary copy).

    Errors found while opening raise VideoError at once; a decode failure after some frames
    ends the iterator early (what was read is kept), one with no frame at all raises VideoError.
    """
    path = Path(path)
    cap = _open(path)
    try:
        info = _info(path, cap)
        if info.frame_count <= 0:
            cap.release()
            n = _count_frames(path)
            if n == 0:
                raise VideoError(_diagnose(path))
            cap = _open(path)
            info = _info(path, cap, frame_count=n)
    except BaseException:
        cap.release()
        raise
    if name is not None:
        info = replace(info, path=name)
    want = targets(info.frame_count, info.fps, frames, every_s)
    keys = None
    if want and info.frame_count / len(want) >= SEEK_MIN_GAP:
        keys = keyframes(path)
    return info, _iter_frames(path, cap, info, want, keys)


# Seeking costs a demuxer reset and decoding from the keyframe before the target; grab()
# costs one decode per frame skipped. Below this average gap between sampled frames, grabbing
# through always wins and the keyframe index is not even read (bench/seek.py measures both).
SEEK_MIN_GAP = 48
SEEK_OVERHEAD_FRAMES = 60


def keyframes(path: Path) -> list[int] | None:
    """Indices of the keyframes, from the container's packets (demuxed, not decoded)."""
    try:
        import av
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            pts = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.pts is not None]
    except Exception:  # no index: grab through instead
        return None
    order = sorted(pts)  # display order
    return [i for i, (_, key) in enumerate(order) if key]


def _iter_frames(path: Path, cap, info: VideoInfo, want: list[int],
                 keys: list[int] | None = None) -> Iterator[Frame]:
    import bisect
    fps = info.fps or 25.0
    pending = iter(want)
    nxt = next(pending, None)
    index = got = 0
    try:
        while nxt is not None:
            if keys and nxt - index > SEEK_OVERHEAD_FRAMES:
                key = keys[bisect.bisect_right(keys, nxt) - 1] if keys[0] <= nxt else 0
                if key - index > SEEK_OVERHEAD_FRAMES:  # seeking skips decoding that many frames
                    cap.set(cv2.CAP_PROP_POS_FRAMES, nxt)
                    index = nxt
            if not cap.grab():
                break
            if index == nxt:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    got += 1
                    yield Frame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                nxt = next(pending, None)
            index += 1
    finally:
        cap.release()
    if got == 0 and want:
        raise VideoError(_diagnose(path) if index == 0 else NO_FRAME)
    if got < len(want):
        log.warning("%s: ended after %d of %d frames the container announced; sampled %d of %d",
                    info.path, index, info.frame_count, got, len(want))


def sample_frames(path: str | os.PathLike, frames: int = 32,
                  every_s: float | None = None) -> Iterator[Frame]:
    """Yield the sampled frames of a video (see `open_video`)."""
    _, it = open_video(path, frames, every_s)
    yield from it
