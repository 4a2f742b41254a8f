"""Size and load time of the visual report at thousands of videos.

    .venv/bin/python bench/html_report.py [--videos 5000] [--details 100] [--model M.keras]

Fills a scan state as a 5,000-video incremental scan would (3% FAKE, 85% REAL, 7% no face, 5%
errors; 32 sampled frames per video; thumbnails kept for every scored video, made from the
bundled portraits), rebuilds the report from it (`html_report.rebuild`, as `screener report
--html` does, heat maps with --model or a random-init Meso-4), then opens it in headless
Chromium (/usr/bin/chromium via playwright) three times: DOMContentLoaded, load, first
contentful paint, and the time to sort the table by name and to filter it. Prints one JSON
object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def fill_state(state_path: Path, n: int, seed: int = 0) -> None:
    import cv2
    from screener import media, synth
    from screener.state import LAST_RUN, FileStat, ScanState
    from screener.verdict import ERROR, FAKE, NO_FACE, OK, REAL, FaceScore, VideoResult
    rng = np.random.default_rng(seed)
    faces = [cv2.resize(synth.portrait(name), (256, 256)) for name in ("collins", "hopper")]
    pool = []  # jittered copies, made once: different JPEGs without per-face noise cost
    for k in range(24):
        img = faces[k % 2].astype(np.float32) * rng.uniform(0.7, 1.2)
        pool.append(np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8))
    times = [i * 10.0 / 32 for i in range(32)]
    with ScanState(state_path) as st:
        for i in range(n):
            path = f"/data/drop/{i // 100:03d}/clip_{i:05d}.mp4"
            kind = rng.choice(4, p=[0.03, 0.85, 0.07, 0.05])
            r = VideoResult(path=path, status=OK, model="bench", threshold=0.5, duration_s=10.0,
                            fps=25.0, width=640, height=360, codec="h264", frames_sampled=32,
                            frame_times_s=times)
            if kind == 3:
                r.status, r.error, r.frames_sampled = ERROR, "not a video file (bench)", 0
            elif kind == 2:
                r.status, r.error = NO_FACE, "no face found in 32 sampled frames"
            else:
                base = 0.75 if kind == 0 else 0.2
                p = np.clip(rng.normal(base, 0.12, 32), 0, 1)
                keep = rng.random(32) > 0.1
                r.faces = [FaceScore(path, k, 0, t, 100, 50, 120, 120, 0.9, float(p[k]))
                           for k, t in enumerate(times) if keep[k]]
                ps = np.array([f.p_fake for f in r.faces])
                r.fake_score, r.fake_score_max = float(ps.mean()), float(ps.max())
                r.fake_score_median, r.fake_share = float(np.median(ps)), float((ps >= .5).mean())
                r.verdict = FAKE if r.fake_score >= 0.5 else REAL
                r.faces_scored = r.frames_with_face = len(r.faces)
                crops = []
                for f in r.faces:
                    img = pool[int(rng.integers(len(pool)))]
                    crops.append(type("C", (), dict(frame_index=f.frame_index, face_index=0,
                                                    time_s=f.time_s, crop=img)))
                r.media = media.keep(crops, ps)
            st.record(path.encode(), FileStat(1, 1, 1, 1), "fp", "bench", "opts", r)
        st.set_meta(LAST_RUN, json.dumps({"meta": {"model": {"name": "bench", "threshold": 0.5}},
                                          "finished_at": time.time(), "elapsed_s": 3600.0}))


def browse(html: Path, runs: int = 3) -> dict:
    from playwright.sync_api import sync_playwright
    out = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for _ in range(runs):
            page = b.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            page.goto(html.as_uri(), wait_until="load")
            wall = time.perf_counter() - t0
            nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                        fcp: fcp ? fcp.startTime : null}; }""")
            t = time.perf_counter()
            page.click("th[data-key=name] button")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            sort_s = time.perf_counter() - t
            t = time.perf_counter()
            page.uncheck("input[name=show][value=REAL]")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            filter_s = time.perf_counter() - t
            out.append(dict(wall_s=wall, dcl_ms=nav["dcl"], load_ms=nav["load"],
                            fcp_ms=nav["fcp"], sort_s=sort_s, filter_s=filter_s,
                            errors=errors))
            page.close()
        b.close()
    med = {k: round(statistics.median(o[k] for o in out), 3)
           for k in ("wall_s", "dcl_ms", "load_ms", "fcp_ms", "sort_s", "filter_s")}
    med["errors"] = sum(len(o["errors"]) for o in out)
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=5000)
    ap.add_argument("--details", type=int, default=None, help="default: the report's own rule")
    ap.add_argument("--model", default=None)
    ap.add_argument("--keep", default=None, help="copy the report here")
    args = ap.parse_args()
    from screener import html_report
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        fill_state(tmp / "s.sqlite", args.videos)
        fill_s = time.perf_counter() - t
        model = args.model
        if model is None:
            from screener import nets
            model = nets.build("meso4")
        t = time.perf_counter()
        figures = html_report.rebuild(tmp / "r.html", state=tmp / "s.sqlite", model=model,
                                      details=args.details)
        rebuild_s = time.perf_counter() - t
        res = dict(videos=args.videos, details=figures["details"], bytes=figures["bytes"],
                   state_bytes=os.path.getsize(tmp / "s.sqlite"), fill_s=round(fill_s, 1),
                   rebuild_s=round(rebuild_s, 1), chromium=browse(tmp / "r.html"),
                   cpu=platform.processor() or platform.machine(), cores=os.cpu_count())
        if args.keep:
            import shutil
            shutil.copyfile(tmp / "r.html", args.keep)
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
