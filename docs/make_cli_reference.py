"""Write docs/cli.md, the command-line reference, from the click definitions in screener/cli/.

    python docs/make_cli_reference.py          # rewrite docs/cli.md
    python docs/make_cli_reference.py --check  # exit 1 when docs/cli.md is stale

tests/test_docs.py runs the check, so the reference never drifts from `screener --help`.
"""
from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "cli.md"
WIDTH = 100  # the help's line width, fixed so the file does not depend on the terminal


def render() -> str:
    import click

    from screener.cli import main
    root = click.Context(main, info_name="screener", terminal_width=WIDTH,
                         max_content_width=WIDTH)
    parts = ["# screener command-line reference\n",
             "Generated from the click definitions in `screener/cli/` by "
             "`python docs/make_cli_reference.py`; `tests/test_docs.py` fails when this file is "
             "stale. Do not edit it by hand. README.md is the guide.\n",
             "```text", main.get_help(root), "```\n"]
    for name, command in main.commands.items():
        ctx = click.Context(command, info_name=name, parent=root, terminal_width=WIDTH,
                            max_content_width=WIDTH)
        parts += [f"## screener {name}\n", "```text", command.get_help(ctx), "```\n"]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python docs/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
