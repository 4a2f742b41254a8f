"""The documentation that code can check: the CLI reference is what `screener --help` says,
and the README stays a guide whose first commands are the ones that set up and test."""
from __future__ import annotations

import re
import runpy
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_not_stale():
    """docs/cli.md is generated from the click definitions: rerun the script after changing an
    option or a help text (the message says how)."""
    make = runpy.run_path(str(ROOT / "docs" / "make_cli_reference.py"))
    assert make["main"](["--check"]) == 0, "run: python docs/make_cli_reference.py"
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in ("scan", "report", "extract", "models"):
        assert f"## screener {command}" in text


def test_the_reference_check_fails_when_the_file_is_stale(tmp_path, monkeypatch):
    make = runpy.run_path(str(ROOT / "docs" / "make_cli_reference.py"))
    stale = tmp_path / "cli.md"
    stale.write_text((ROOT / "docs" / "cli.md").read_text().replace("--frames", "--framez"))
    main = make["main"]
    main.__globals__["OUT"] = stale
    assert main(["--check"]) == 1


def test_the_readme_is_a_guide_that_starts_with_setting_up_and_testing():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    commands = [ln for ln in text.splitlines() if ln.startswith(("python3 -m venv", ". .venv"))]
    assert commands[0].startswith("python3 -m venv .venv && . .venv/bin/activate && pip install "
                                  "-e . && screener scan sample_videos/ --out report.csv")
    assert commands[1].endswith("pip install -e '.[test,ray,s3]' && python -m pytest -q")
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (ROOT / link).is_file(), link


def test_ci_runs_the_readme_commands_as_written():
    """.ci/run runs README's two commands as README writes them, the first making the venv
    with `python3 -m venv` and the pip it brings (issue 28: CI upgraded pip first and was green
    while a new user's test command failed to install)."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "--readme-commands" in ci  # (an older .ci/run would run the whole of CI here)
    said = subprocess.run([str(ROOT / ".ci" / "run"), "--readme-commands"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.splitlines()
    readme = [ln for ln in (ROOT / "README.md").read_text().splitlines()
              if ln.startswith(("python3 -m venv", ". .venv"))]
    assert said == readme[:2] and said[0].startswith("python3 -m venv .venv && ")
    assert "--upgrade pip" not in ci and "pip install -q -e" not in ci
