"""Seek or grab through? Time sampling N frames both ways on clips of several lengths and GOPs.

    python bench/seek.py

Also checks that the frames a seek returns are the frames grabbing through returns.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screener import synth, video  # noqa: E402


def sample(path, n, seek: bool):
    info, _ = video.open_video(path, frames=n)
    want = video.targets(info.frame_count, info.fps, n)
    cap = video._open(Path(path))
    keys = video.keyframes(Path(path)) if seek else None
    t = time.perf_counter()
    frames = list(video._iter_frames(Path(path), cap, info, want, keys))
    return time.perf_counter() - t, frames


def main():
    with tempfile.TemporaryDirectory() as tmp:
        bg = synth.background(1280, 720)
        for n_frames, gop in [(300, 250), (1800, 250), (1800, 60), (3600, 30)]:
            def frames():
                for i in range(n_frames):
                    f = bg.copy()
                    f[:, (i * 7) % 1280] = 255  # moving line: every frame differs
                    yield f
            p = synth.write_video(Path(tmp) / f"c{n_frames}_{gop}.mp4", frames(), fps=30,
                                  options={"g": str(gop)})
            for n in (8, 32):
                tg, fg = sample(p, n, False)
                ts, fs = sample(p, n, True)
                same = [a.index for a in fg] == [b.index for b in fs] and all(
                    np.array_equal(a.rgb, b.rgb) for a, b in zip(fg, fs))
                print(f"720p {n_frames} frames, keyframe every {gop}: sample {n:>2}: "
                      f"grab-through {tg:.2f} s, seek {ts:.2f} s, x{tg / ts:.1f}, identical={same}")


if __name__ == "__main__":
    main()
