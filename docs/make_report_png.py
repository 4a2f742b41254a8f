"""Make docs/report.png: the visual report of a scan of sample_videos/, in headless Chromium.

    .venv/bin/python docs/make_report_png.py [--model M.keras]

Scans sample_videos/ with `screener scan --html` (the shipped model, or --model; without either,
an untrained Meso-4 with seeded random weights whose card says so), opens the report in
/usr/bin/chromium via playwright and saves the top of the page (summary, table, the first video
in detail) as a 256-colour PNG.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "report.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def demo_model(folder: Path) -> Path:
    import keras
    from screener import nets
    keras.utils.set_random_seed(0)
    path = folder / "untrained-demo.keras"
    nets.build("meso4").save(path)
    path.with_suffix(".json").write_text(json.dumps({
        "name": "untrained-demo", "threshold": 0.5, "arch": "meso4",
        "limits": ["Random weights: these scores mean nothing. This picture shows the report's "
                   "layout; the shipped model was not available when it was made."]}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from screener.errors import ModelError
            from screener.scoring import default_model_path
            try:
                model = str(default_model_path())
            except ModelError:
                model = str(demo_model(tmp))
        html = tmp / "report.html"
        subprocess.run([sys.executable, "-m", "screener", "scan", "sample_videos", "--model",
                        model, "--out", str(tmp / "report.csv"), "--html", str(html)],
                       cwd=REPO, check=True)
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            # Detail cards off screen are skipped by the browser (content-visibility: auto),
            # and a full-page screenshot would show them blank: paint them all (our own style,
            # so the page's CSP is bypassed for this one picture).
            page = b.new_page(viewport={"width": 1100, "height": 900}, bypass_csp=True)
            page.goto(html.as_uri(), wait_until="load")
            page.add_style_tag(content="article{content-visibility:visible!important}")
            box = page.locator("article").first.bounding_box()
            bottom = int(box["y"] + box["height"] + 16) if box else 1400
            page.screenshot(path=str(tmp / "full.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1100, "height": bottom})
            b.close()
        from PIL import Image
        Image.open(tmp / "full.png").convert("RGB").quantize(256).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size / 1e3:.0f} KB) with model {model}")


if __name__ == "__main__":
    main()
