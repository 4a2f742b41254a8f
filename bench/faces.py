"""Measure the face pipeline: recall and alignment error per face size, and frames/s per stage.

    python bench/faces.py [--per-size 20] [--out bench/results/faces.json]

1. Recall and alignment error where the truth is known: face crops (../shared/data/mesonet-df
   validation when present, else the bundled public-domain portraits) are pasted at widths from
   32 to 1000 px at random places on 720p and 1080p backgrounds (synthetic, and real frames of
   ../shared/data/videos-dev when present). A face counts as found when a detection overlaps
   its true box (IoU >= 0.3). Alignment error: the detected keypoints, mapped back into the
   original crop, against the keypoints found on the original crop, both put through the
   original crop's alignment transform: mean distance in pixels of the 256x256 crop.
2. The share of sampled frames with a face on each ../shared/data/videos-dev clip.
3. Frames/s of each stage on this machine: decode (32 sampled frames), detection per mode,
   alignment.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from screener import align, detect, synth, video  # noqa: E402
from screener.images import read_rgb  # noqa: E402
from screener.options import SampleOptions
from screener.pipeline import crops_from_video  # noqa: E402

SHARED = ROOT.parent / "shared"
SIZES = [32, 48, 64, 80, 96, 128, 192, 256, 384, 512, 768, 1000]


def face_sources(n: int, rng: random.Random, det: detect.FaceDetector):
    """(image, keypoints, box) of crops whose face the detector finds on the original."""
    val = SHARED / "data/mesonet-df/validation"
    if val.is_dir():
        files = sorted(val.glob("*/*.jpg"))
        rng.shuffle(files)
        images = (read_rgb(f) for f in files)
        source = "mesonet-df/validation"
    else:
        images = iter([synth.portrait("collins"), synth.portrait("hopper")] * n)
        source = "bundled portraits"
    out = []
    for img in images:
        found = det.detect(img, "crop")
        if found:
            out.append((img, found[0].keypoints, found[0].box))
        if len(out) == n:
            break
    return out, source


def backgrounds(rng: random.Random):
    bgs = {"synthetic 720p": synth.background(1280, 720, 1),
           "synthetic 1080p": synth.background(1920, 1080, 2)}
    dev = SHARED / "data/videos-dev"
    if dev.is_dir():
        for clip in sorted(dev.glob("*.mp4"))[:2]:
            frame = next(video.sample_frames(clip, frames=1))
            bgs[f"frame of {clip.name} {frame.rgb.shape[1]}x{frame.rgb.shape[0]}"] = frame.rgb
    return bgs


def recall(det, sources, bgs, per_size, rng, mode):
    rows = []
    for bg_name, bg in bgs.items():
        H, W = bg.shape[:2]
        for size in SIZES:
            if size > min(W, H):
                continue
            found = 0
            errs = []
            secs = 0.0
            for i in range(per_size):
                img, kp0, box0 = sources[(i + size) % len(sources)]
                s = size / img.shape[1]
                h = max(1, round(img.shape[0] * s))
                x, y = rng.randint(0, W - size), rng.randint(0, max(0, H - h))
                frame = bg.copy()
                synth.paste(frame, img, x, y, size)
                truth = (box0[0] * s + x, box0[1] * s + y, box0[2] * s, box0[3] * s)
                t = time.perf_counter()
                dets = det.detect(frame, mode)
                secs += time.perf_counter() - t
                hit = max(dets, key=lambda d: detect._iou(d.box, truth), default=None)
                if hit is None or detect._iou(hit.box, truth) < 0.3:
                    continue
                found += 1
                m = align.similarity(kp0[:4], align.TEMPLATE * 256)
                back = (hit.keypoints[:4] - [x, y]) / s
                a = back @ m[:, :2].T + m[:, 2]
                b = kp0[:4] @ m[:, :2].T + m[:, 2]
                errs.append(float(np.linalg.norm(a - b, axis=1).mean()))
            rows.append({"background": bg_name, "face_width_px": size, "n": per_size,
                         "found": found / per_size,
                         "align_err_px_mean": round(float(np.mean(errs)), 2) if errs else None,
                         "align_err_px_p90": round(float(np.percentile(errs, 90)), 2) if errs else None,
                         "ms_per_frame": round(1000 * secs / per_size, 1)})
    return rows


def videos_dev():
    dev = SHARED / "data/videos-dev"
    if not dev.is_dir():
        return []
    out = []
    for clip in sorted(dev.glob("*.mp4")):
        t = time.perf_counter()
        r = crops_from_video(clip, SampleOptions(frames=32))
        out.append({"clip": clip.name, "frames_sampled": r.frames_sampled,
                    "frames_with_face": r.frames_with_face,
                    "share": round(r.frames_with_face / max(1, r.frames_sampled), 3),
                    "error": r.error, "seconds": round(time.perf_counter() - t, 2)})
    return out


def stage_speed(det, tmp: Path):
    clip = synth.face_clip(tmp / "bench1080.mp4", 1920, 1080, 150, fps=30,
                           faces=[synth.Placement("collins", 700, 200, 200)])
    t = time.perf_counter()
    frames = list(video.sample_frames(clip, frames=32))
    decode = time.perf_counter() - t
    t = time.perf_counter()
    n_all = sum(1 for _ in video.sample_frames(clip, frames=10**6))
    decode_all = time.perf_counter() - t
    out = {"clip": "synthetic 1920x1080 H.264, 150 frames, one 200 px face",
           "decode_32_sampled_of_150_s": round(decode, 3),
           "decode_every_frame_fps": round(n_all / decode_all, 1)}
    rgb = frames[0].rgb
    empty = synth.background(1920, 1080, 5)
    for name, fn in [
        ("detect_crop_short_range_only", lambda f: det.detect(f, "crop")),
        ("detect_whole_short_full_no_tiles", lambda f: det.detect(f, "whole")),
        ("detect_all_with_tiles", lambda f: det.detect(f, "all")),
        ("detect_largest_cascade_face_present", lambda f: det.detect(f, "largest")),
    ]:
        t = time.perf_counter()
        for _ in range(20):
            fn(rgb)
        out[name + "_fps"] = round(20 / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    for _ in range(20):
        det.detect(empty, "largest")
    out["detect_largest_cascade_no_face_fps"] = round(20 / (time.perf_counter() - t), 1)
    kp = det.detect(rgb)[0].keypoints
    t = time.perf_counter()
    for _ in range(200):
        align.align(rgb, kp)
    out["align_per_s"] = round(200 / (time.perf_counter() - t), 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-size", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/faces.json")
    args = ap.parse_args()
    rng = random.Random(0)
    det = detect.FaceDetector()
    sources, source = face_sources(40, rng, det)
    bgs = backgrounds(rng)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
            "faces_from": source,
            "recall_all": recall(det, sources, bgs, args.per_size, rng, "all"),
            "recall_largest": recall(det, sources, bgs, args.per_size, rng, "largest"),
            "recall_whole_no_tiles": recall(det, sources, bgs, args.per_size, rng, "whole"),
            "videos_dev": videos_dev(),
            "stages": stage_speed(det, Path(tmp)),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for key in ("recall_all", "recall_largest", "recall_whole_no_tiles"):
        print(f"\n{key}: found share / mean alignment error (px in 256 crop) / ms per frame")
        for r in result[key]:
            print(f"  {r['background']:<42} {r['face_width_px']:>5}px  found {r['found']:.2f}  "
                  f"err {r['align_err_px_mean']}  {r['ms_per_frame']} ms")
    print("\nvideos-dev:", json.dumps(result["videos_dev"], indent=1))
    print("stages:", json.dumps(result["stages"], indent=1))


if __name__ == "__main__":
    main()
