"""The options the `scan` and `extract` commands share, defined once as click decorators."""
from __future__ import annotations

import click

def options(*decorators):
    """Several click options as one decorator, applied in the order listed (as written above a
    function)."""
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def sampling(faces_help: str, min_face_help: str):
    """How each video is read: the options `scan` and `extract` share (SampleOptions)."""
    return options(
        click.option("--frames", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Frames to sample per video, spread evenly."),
        click.option("--every", "every_s", type=click.FloatRange(min=0, min_open=True),
                     default=None, metavar="SECONDS",
                     help="Sample one frame every SECONDS instead of --frames."),
        click.option("--largest-face", is_flag=True, help=faces_help),
        # Before people, --all-faces scored every face; that is the default now: accepted.
        click.option("--all-faces", is_flag=True, hidden=True),
        click.option("--min-face", type=click.IntRange(min=1), default=None, metavar="PX",
                     help=min_face_help))


def largest(largest_face: bool, all_faces: bool) -> bool:
    """--largest-face, or the default: every face, linked into people. --all-faces, which
    scored every face before people were linked, now asks for the default."""
    if largest_face and all_faces:
        raise click.UsageError("--all-faces and --largest-face exclude each other")
    return largest_face


WORKERS = click.option("--workers", type=click.IntRange(min=0), default=None, metavar="N",
                        help="Processes that decode and find faces  [default: one per core; "
                             "0: none, all in the main process]")


def video_timeout(help_text: str):
    return click.option("--video-timeout", "video_timeout_s",
                        type=click.FloatRange(min=0, min_open=True), default=None,
                        metavar="SECONDS", help=help_text)


TALK = options(
    click.option("--quiet", "-q", is_flag=True, help="Errors only: no progress, no summary."),
    click.option("--verbose", "-v", count=True, help="One line per video (-vv: debug)."))
