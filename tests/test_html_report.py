"""The visual report: built from a real scan of generated clips (fake-looking, real-looking, no
face, broken, hostile name) through the CLI, then opened in headless Chromium (Debian's
`chromium`, driven by playwright): no console error, no network request, one row per video,
sorting and filtering work, thumbnails, timeline and heat map render, the hostile name runs
nothing. The screenshot is kept in tests/artifacts/ (ignored by git) and the pytest tmp dir.
"""
from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from screener.cli import main

from helpers import H, W, copy

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=alert(1)>.mp4"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def gappy_clip(path: Path, gain: float, n_frames: int = 12, gap=range(5, 8)) -> Path:
    """Collins' portrait scaled in brightness by `gain` (bright: the test model calls it fake),
    absent from the frames in `gap` (the timeline must show the gap)."""
    from screener import synth
    bg = synth.background(W, H)
    face = np.clip(synth.portrait("collins").astype(np.float32) * gain, 0, 255).astype(np.uint8)
    side = round(90 * synth.PORTRAIT_SCALE)
    frames = []
    for i in range(n_frames):
        f = bg.copy()
        if i not in gap:
            synth.paste(f, face, (W - side) // 2, (H - side) // 2, side)
        frames.append(f)
    return synth.write_video(path, frames)


def brightness_model(folder: Path, fake_crops, real_crops) -> Path:
    """A real Meso-4 whose P(fake) rises with the crop's brightness: every conv kernel
    averages, the dense layers average, the last one puts its threshold between the two sets
    of crops. Its gradients are real, so Grad-CAM has something to show (a brightness map)."""
    import keras
    from screener import nets
    m = nets.build("meso4", batchnorm=False, dropout=0.0)
    for layer in m.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k, b = layer.get_weights()
            layer.set_weights([np.full_like(k, 1.0 / np.prod(k.shape[:3])), np.zeros_like(b)])
    d16 = m.get_layer("dense16")
    k, b = d16.get_weights()
    d16.set_weights([np.full_like(k, 1.0 / k.shape[0]), np.zeros_like(b)])
    feat = keras.Model(m.inputs, m.get_layer("p_fake").input)
    f_fake = float(np.mean(feat.predict_on_batch(np.stack(fake_crops))))
    f_real = float(np.mean(feat.predict_on_batch(np.stack(real_crops))))
    assert abs(f_fake - f_real) > 1e-3, (f_fake, f_real)
    a, c = 8.0 / (f_fake - f_real), (f_fake + f_real) / 2
    last = m.get_layer("p_fake")
    k, b = last.get_weights()
    last.set_weights([np.full_like(k, a / k.shape[0]), np.full_like(b, -a * c)])
    path = folder / "brightness.keras"
    m.save(path)
    path.with_suffix(".json").write_text(json.dumps({
        "name": "brightness-test", "threshold": 0.5, "arch": "meso4",
        "metrics": {"test": {"holdout": {"roc_auc": 0.99, "accuracy": 0.95,
                                         "per_class": {"fake": {"f1": 0.5}}}}},
        "limits": ["<script>alert('card')</script> is text, like every limit"]}))
    return path


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, detector, no_face_video):
    """A folder of every kind of video, scanned by the CLI with --html."""
    from screener.options import SampleOptions
    from screener.pipeline import crops_from_video
    root = tmp_path_factory.mktemp("html")
    clips = root / "clips"
    clips.mkdir()
    fake = gappy_clip(clips / "fake_looking.mp4", 1.35)
    real = gappy_clip(clips / "real_looking.mp4", 0.55, gap=())
    opts = SampleOptions(frames=12)
    fake_crops = [c.crop for c in crops_from_video(fake, opts, detector).crops]
    real_crops = [c.crop for c in crops_from_video(real, opts, detector).crops]
    assert fake_crops and real_crops
    model = brightness_model(root, fake_crops, real_crops)
    copy(no_face_video, clips / "no_face.mp4")
    (clips / "broken.mp4").write_bytes(fake.read_bytes()[:700])
    (clips / "empty.mp4").write_bytes(b"")
    copy(fake, clips / HOSTILE)
    out, html = root / "report.csv", root / "report.html"
    r = CliRunner().invoke(main, ["scan", str(clips), "--model", str(model), "--frames", "12",
                                  "--workers", "0", "--out", str(out), "--html", str(html)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "visual report: " in r.output
    return dict(root=root, clips=clips, model=model, out=out, html=html, n=6)


def test_page_is_self_contained_and_escaped(scanned):
    page = scanned["html"].read_text("utf-8")
    assert '<meta http-equiv="Content-Security-Policy"' in page
    csp = html.unescape(re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-inline" not in csp
    # Nothing is fetched: every src is a data: URI, no link to another origin.
    assert set(re.findall(r'\bsrc="([a-z]+):', page)) <= {"data"}
    assert not re.search(r'(href|src)="(https?:)?//', page)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.mp4" in page
    assert "<script>alert(" not in page and "&lt;script&gt;alert(" in page
    assert page.count("<script>") == 1
    assert page.count('<tr data-i=') == scanned["n"]
    for text in ("brightness-test", "roc auc", "0.990", "test · holdout", "no face found in 12 sampled frames",
                 "Most fake faces", "Least fake faces", "Grad-CAM", "block4 (8×8×16)",
                 "The face exactly as scored (kept losslessly)", "Explained on a JPEG copy"):
        assert text in page, text


def test_report_rebuilds_from_the_state_and_from_a_report(scanned, tmp_path):
    state = Path(f"{scanned['out']}.state.sqlite")
    again = tmp_path / "again.html"
    r = CliRunner().invoke(main, ["report", "--html", str(again), "--state", str(state)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = scanned["html"].read_text("utf-8"), again.read_text("utf-8")
    strip = lambda s: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", s)  # noqa: E731
    assert strip(a) == strip(b)      # the same page, without rescanning
    # A report alone (no state beside it) gives the rows, and says why there is no more.
    lone = tmp_path / "lone.csv"
    shutil.copyfile(scanned["out"], lone)
    rows = tmp_path / "rows.html"
    r = CliRunner().invoke(main, ["report", "--html", str(rows), "--from", str(lone)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = rows.read_text("utf-8")
    assert page.count('<tr data-i=') == scanned["n"] and "rows only" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in page
    r = CliRunner().invoke(main, ["report", "--html", str(rows)])
    assert r.exit_code == 2


def test_a_page_from_a_csv_report_shows_the_card_of_the_model_its_rows_name(scanned, tmp_path):
    """A CSV report carries no header (issue 28): the page finds the card by the model's name
    in the rows, from --model or the shipped model, and says so; never "the card states no
    metrics" for a card it did not read."""
    lone = tmp_path / "lone.csv"
    shutil.copyfile(scanned["out"], lone)

    def page(*args) -> str:
        out = tmp_path / "p.html"
        r = CliRunner().invoke(main, ["report", "--html", str(out), "--from", str(lone), *args],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return html.unescape(out.read_text("utf-8"))

    found = page("--model", str(scanned["model"]))
    assert "roc auc" in found and "0.990" in found
    assert "<script>alert('card')</script> is text, like every limit" in found
    assert f"{scanned['model'].with_suffix('.json')} (found by the model's name" in found
    # The shipped model's card names another model: nothing is shown as this one's.
    lost = page()
    assert "states no" not in lost and "0.990" not in lost
    assert "this one names the model brightness-test, whose card was not found" in lost
    # A CSV of the shipped model (its name in the model column) gets the shipped card.
    from screener.scoring import default_model_path, read_card
    card = read_card(default_model_path())
    with open(scanned["out"], newline="") as f:
        rows = list(csv.DictReader(f))
    with open(lone, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "model": card["name"] if r["model"] else ""} for r in rows)
    shipped = page()
    assert card["limits"][0] in shipped and "Test metrics (model card)" in shipped
    assert "states no" not in shipped


def test_an_unchanged_rebuild_takes_heat_maps_from_the_state_without_the_model(scanned, tmp_path):
    from screener import state as state_mod
    from screener.heatmaps import heat_key
    from screener.media import VideoMedia
    from screener.scoring import file_sha256
    state = Path(f"{scanned['out']}.state.sqlite")
    saved = state_mod.read_saved(state)
    media = [VideoMedia.from_bytes(b) for b in saved.media(k for k, _ in saved.results).values()]
    sha = file_sha256(scanned["model"])
    keys = [heat_key(sha, m.key_crop.jpeg) for m in media if m.key_crop is not None]
    kept = state_mod.HeatCache(state).get(keys)
    assert keys and set(kept) == set(keys)  # the scan's page kept its heat maps
    # A fresh process rebuilds the page from the state alone: no Keras, no TensorFlow.
    again = tmp_path / "again.html"
    code = ("import sys; from screener.html_report import rebuild; "
            f"print(rebuild({str(again)!r}, state={str(state)!r})['explained']); "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == [str(len(keys)), "[]"]
    strip = lambda s: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", s)  # noqa: E731
    assert strip(again.read_text("utf-8")) == strip(scanned["html"].read_text("utf-8"))
    # Another model's maps are computed again, and only the latest page's are kept.
    import keras
    other = tmp_path / "other.keras"  # the same weights saved again: other bytes, other SHA-256
    keras.models.load_model(scanned["model"]).save(other)
    assert file_sha256(other) != sha
    from screener.html_report import rebuild
    state_copy = tmp_path / "state.sqlite"
    shutil.copyfile(state, state_copy)
    assert rebuild(tmp_path / "other.html", state=state_copy, model=other)["explained"] == len(keys)
    assert state_mod.HeatCache(state_copy).get(keys) == {}
    assert state_mod.HeatCache(state_copy).get(
        [heat_key(file_sha256(other), m.key_crop.jpeg) for m in media if m.key_crop])


def test_collector_keeps_thumbnails_of_the_top_videos_only():
    from screener.html_report import Collector
    from screener.media import Thumb, VideoMedia
    from screener.verdict import VideoResult
    c = Collector(details=3)
    for i, score in enumerate([0.1, 0.9, 0.5, 0.95, 0.2, 0.7]):
        m = VideoMedia([Thumb(0, 0, 0.0, score, b"jpeg")], [], None)
        c.add(VideoResult(path=f"{i}.mp4", status="ok", verdict="REAL", fake_score=score,
                          media=m))
    assert sorted(c.media()) == [1, 3, 5]
    assert all(r.media is None for r in c.results)


def test_timeline_breaks_where_no_face_was_found():
    from screener.html_parts import timeline
    from screener.verdict import FaceScore, VideoResult
    times = [i * 0.5 for i in range(8)]
    faces = [FaceScore("v", i, 0, t, 0, 0, 1, 1, 0.9, 0.2 + 0.1 * i)
             for i, t in enumerate(times) if i not in (3, 4)]
    r = VideoResult(path="v", status="ok", faces=faces, frame_times_s=times, duration_s=4.0)
    t = timeline(r, 0.5)
    assert t["n_gaps"] == 2 and t["path"].count("M") == 2 and len(t["dots"]) == 6


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    return sync_playwright


def test_report_in_headless_chromium(scanned, tmp_path):
    sync_playwright = _browser()
    requests, problems, dialogs = [], [], []

    def route(r):
        url = r.request.url
        requests.append(url)
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(scanned["html"].as_uri(), wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")

            rows = page.locator("#videos tbody tr")
            assert rows.count() == scanned["n"]
            cats = rows.evaluate_all("rs => rs.map(r => r.dataset.cat)")
            assert sorted(cats) == sorted(["FAKE", "FAKE", "REAL", "no_face", "error", "error"])
            # The hostile name is text: no element came from it, no dialog opened.
            assert page.locator('img[src="x"]').count() == 0
            assert page.get_by_text(HOSTILE).count() >= 2     # table row and detail card
            # Sorting: default is score descending; a click on "video" sorts by name.
            scores = rows.evaluate_all("rs => rs.map(r => r.dataset.score)")
            nums = [float(s) for s in scores if s]
            assert nums == sorted(nums, reverse=True) and scores[len(nums):] == [""] * (
                len(scores) - len(nums))
            page.click("th[data-key=name] button")
            names = rows.evaluate_all("rs => rs.map(r => r.dataset.name.toLowerCase())")
            assert names == sorted(names)
            page.click("th[data-key=score] button")
            page.click("th[data-key=score] button")
            assert page.get_attribute("th[data-key=score]", "aria-sort") == "ascending"
            scores = rows.evaluate_all("rs => rs.map(r => r.dataset.score)")
            assert scores[:2] == ["", ""] or scores[0] == ""
            page.click("th[data-key=score] button")
            # Filtering: hide errors, then search by name.
            page.uncheck("input[name=show][value=error]")
            assert page.locator("#videos tbody tr:not([hidden])").count() == scanned["n"] - 2
            assert page.text_content("#shown") == str(scanned["n"] - 2)
            page.check("input[name=show][value=error]")
            page.fill("#search", "real_looking")
            assert page.locator("#videos tbody tr:not([hidden])").count() == 1
            page.fill("#search", "")
            # Details: thumbnails, timeline with its gap, heat map and feature maps render.
            cards = page.locator("article")
            assert cards.count() == 3                      # the three scored videos
            broken = page.evaluate("Array.from(document.images).filter("
                                   "i => !(i.naturalWidth > 0)).map(i => i.alt)")
            assert broken == []
            assert page.locator("article .thumbs img").count() >= 3 * 4
            assert page.locator("article svg path.line").count() == 3
            assert page.locator("article svg line.thr").count() == 3
            first = cards.first
            assert first.locator("line.gap").count() == 3   # three frames without the face
            assert page.locator("img.heatmap").count() == 3
            assert page.locator(".fm img").count() == 3 * 4
            ARTIFACTS.mkdir(exist_ok=True)
            shot = tmp_path / "report.png"
            # Detail cards off screen are skipped (content-visibility: auto) and would be blank
            # in a full-page picture: one picture per card, scrolled into view, beside it.
            page.screenshot(path=str(shot), full_page=True)
            for k in range(cards.count()):
                cards.nth(k).scroll_into_view_if_needed()
                cards.nth(k).screenshot(path=str(tmp_path / f"card{k}.png"))
            shutil.copyfile(shot, ARTIFACTS / "html_report.png")
            shutil.copyfile(tmp_path / "card0.png", ARTIFACTS / "html_report_card0.png")
        finally:
            browser.close()
    assert dialogs == [], dialogs
    assert problems == [], problems
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests


def test_every_fake_video_is_detailed_by_default_within_bounds():
    from screener import html_report as hr
    from screener.verdict import VideoResult

    def results(n_fake, n_real):
        return [VideoResult(path=f"{i}", status="ok", verdict="FAKE" if i < n_fake else "REAL",
                            fake_score=0.9 if i < n_fake else 0.1)
                for i in range(n_fake + n_real)] + [VideoResult(path="x", status="error")]
    assert len(hr.detail_indices(results(3, 500))) == hr.DEFAULT_DETAILS
    assert len(hr.detail_indices(results(150, 500))) == 150
    assert len(hr.detail_indices(results(900, 10))) == hr.MAX_DETAILS
    assert hr.detail_indices(results(2, 3), 4) == [0, 1, 2, 3]


def test_media_round_trip_keeps_the_extremes():
    from types import SimpleNamespace as N
    from screener import media
    crops = [N(frame_index=i, face_index=0, time_s=i / 10,
               crop=np.full((256, 256, 3), 20 * i, np.uint8)) for i in range(5)]
    m = media.keep(crops, [0.1, 0.9, 0.5, 0.3, 0.7], k=3)
    assert [t.p_fake for t in m.most_fake] == [0.9, 0.7, 0.5]
    assert [t.p_fake for t in m.least_fake] == [0.1, 0.3]   # never a face shown twice
    assert m.key_crop.frame_index == 1 and media.decode_jpeg(m.key_crop.jpeg).shape == (256, 256, 3)
    assert media.VideoMedia.from_bytes(m.to_bytes()) == m


def test_streaming_scan_writes_the_page_too(face_video, no_face_video, tiny_model, tmp_path):
    """--no-state: the page comes from the rows and thumbnails kept while streaming."""
    html_path = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["scan", str(face_video), str(no_face_video), "--model",
                                  str(tiny_model), "--frames", "4", "--workers", "0",
                                  "--out", str(tmp_path / "r.json"), "--no-state",
                                  "--html", str(html_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = html_path.read_text("utf-8")
    assert page.count("<tr data-i=") == 2 and page.count("<article") == 1
    assert "flat: no gradient" in page   # the tiny model's score does not depend on the face
    assert not (tmp_path / "r.json.state.sqlite").exists()


def test_a_verdict_on_few_faces_says_so(tmp_path, tiny_model):
    """A face in 2 of 12 sampled frames: the verdict stands (FAKE, --fail-on-fake still fails),
    and the note column, the summary and the page say how little it rests on."""
    clips = tmp_path / "clips"
    clips.mkdir()
    thin = gappy_clip(clips / "thin.mp4", 1.0, gap=range(2, 12))
    gappy_clip(clips / "whole.mp4", 1.0, gap=())
    out, page = tmp_path / "r.csv", tmp_path / "r.html"
    r = CliRunner().invoke(main, ["scan", str(clips), "--model", str(tiny_model), "--frames",
                                  "12", "--workers", "0", "--out", str(out), "--html", str(page),
                                  "--fail-on-fake"], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    with open(out, newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert rows["thin.mp4"]["verdict"] == rows["whole.mp4"]["verdict"] == "FAKE"
    assert rows["thin.mp4"]["note"] == "low evidence: 2 of 12 frames"
    assert rows["whole.mp4"]["note"] == ""
    assert ("screener: 2 videos: 2 fake, 0 real, 0 no face, 0 errors, 1 verdict on low "
            "evidence in ") in r.stderr
    text = page.read_text("utf-8")
    assert text.count("low evidence: 2 of 12 frames") == 2   # its table row and its detail card
    from screener.logs import result_line as _row_line
    from screener.state import result_from_json, result_to_json
    from screener.verdict import VideoResult
    shown = VideoResult(str(thin), "ok", "FAKE", fake_score=0.7, faces_scored=2,
                        frames_sampled=12, frames_with_face=2, note=rows["thin.mp4"]["note"])
    assert _row_line(shown).endswith("thin.mp4  (low evidence: 2 of 12 frames)")
    old = json.loads(result_to_json(shown))   # a state written before the note column
    del old["row"]["note"]
    assert result_from_json(json.dumps(old)).note == "low evidence: 2 of 12 frames"


def elapsed_in(summary_stderr: str, page: str) -> tuple[str, str]:
    said = re.search(r"^screener: \d+ videos?: .* in (\d+\.\d) s", summary_stderr, re.M)
    shown = re.search(r"elapsed (\d+\.\d) s", page)
    assert said and shown, (summary_stderr, re.search(r'<div class="sub">.*', page))
    return said.group(1), shown.group(1)


@pytest.mark.parametrize("state", [True, False])
def test_one_elapsed_time_and_an_unchanged_rerun_keeps_its_page(state, face_video, tiny_model,
                                                                tmp_path):
    """The scan's elapsed time (the command's wall time until its last row) is one figure in
    the JSON report and the page; the summary line says the whole command's, page included. A
    rerun that changes nothing rewrites the same page and JSON, time included."""
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    args = ["scan", str(face_video), "--model", str(tiny_model), "--frames", "4", "--workers",
            "0", "--out", str(out), "--html", str(page)] + ([] if state else ["--no-state"])
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    said, shown = elapsed_in(r.stderr, page.read_text("utf-8"))
    assert shown == f"{json.loads(out.read_text())['elapsed_s']:.1f}" and float(said) >= float(shown)
    if not state:
        return
    first_page, first_json = page.read_bytes(), out.read_bytes()
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0 and "scanned 0, reused 1" in r.stderr, r.output
    assert page.read_bytes() == first_page and out.read_bytes() == first_json


def test_page_texts_are_plain(scanned):
    """The sampling line in words, the duration's unit, the feature maps explained, and the
    card's metrics without empty cells (the shipped card's other-model rows included)."""
    page = scanned["html"].read_text("utf-8")
    assert ("<td>sampling</td><td>12 frames per video, spread evenly; every face, linked into "
            "people; the most suspicious person decides; faces narrower than 64 px not "
            "scored</td>") in page
    assert "every_s=" not in page and '<td class="num">0.5 s</td>' in page
    maps = page.index("<h3>Feature maps per conv block</h3>")
    assert "each tile is one channel" in page[maps:page.index("<figure>", maps)]
    from screener.html_parts import metrics_table
    card = json.loads((Path(__file__).resolve().parents[1] / "trained_models" /
                       "screener-meso.json").read_text())
    tables = metrics_table(card["metrics"])
    cells = [c for t in tables for _, row in t["rows"] for c in row]
    assert cells and "–" not in cells
    assert sum(len(t["rows"]) for t in tables) >= 2


def test_the_summary_line_says_the_whole_commands_time(face_video, tiny_model, tmp_path):
    """README's `screener scan ... --html` after a scan without it (issue 28): the rows are
    reused at once, then the page loads TensorFlow for its heat maps; the summary said "in
    0.1 s" for a 13 s command. It spans the report's writing and the page's."""
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    scan = [sys.executable, "-m", "screener", "scan", str(face_video), "--model", str(tiny_model),
            "--frames", "4", "--out", str(out)]
    subprocess.run(scan, check=True, capture_output=True, timeout=600)
    r = subprocess.run(scan + ["--html", str(page)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "reused 1" in r.stderr, r.stderr
    said = float(re.search(r" in (\d+\.\d) s;", r.stderr).group(1))
    assert said >= page.stat().st_mtime - out.stat().st_mtime - 0.05  # rounding to 0.1 s


@pytest.mark.slow
def test_each_person_of_a_detailed_video_is_shown(tmp_path, tiny_model):
    """sample_videos/two_people.mp4: a strip with each person's most fake face and figures,
    the one who decides marked, and a line per person on the timeline."""
    clip = Path(__file__).resolve().parents[1] / "sample_videos" / "two_people.mp4"
    out, html = tmp_path / "r.csv", tmp_path / "r.html"
    r = CliRunner().invoke(main, ["scan", str(clip), "--model", str(tiny_model), "--workers",
                                  "0", "--no-state", "--out", str(out), "--html", str(html)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert row["people"] == "2" and row["fake_person"] in ("1", "2")
    page = html.read_text("utf-8")
    strip = page[page.index("<h3>People</h3>"):page.index("<h3>Most fake faces</h3>")]
    assert strip.count("<img ") == 2 and "person 1" in strip and "person 2" in strip
    assert strip.count("· decides") == 1 and "32 faces" in strip
    assert f'<b>person {row["fake_person"]}</b> · decides' in strip
    assert page.count('<g class="person ') == 2 and page.count(" decides\"><title>person") == 1
