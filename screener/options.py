"""A scan's options as frozen objects, each checked where it is made.

- `SampleOptions`: how each video is read (frames, faces kept).
- `EngineOptions`: what computes the results (local worker processes or a Ray cluster).
- `ScanOptions`: the model, its threshold and runtime, with the two above: what a result is.
- `ReportOptions`: where the results go (report, frames CSV, HTML page).
- `StateOptions`: the incremental scan's state (README "Running from cron").

The command line builds them once (`from_keywords`, from its flags); the library takes them
whole, or keywords named as their fields (`screener.scan(paths, frames=16, min_face=64)`), which
`from_keywords` turns into the same objects. A bad value raises OptionsError (the CLI's exit 2).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from .errors import ScreenerError
from .report import FORMATS

# Faces narrower than this (box width, px) are reported as too small and not scored: MesoNet
# looks at mesoscopic texture, which a face upscaled 4x from 64 px no longer has.
MIN_FACE_PX = 64
MIN_SCORE = 0.6      # the lowest detector confidence kept (screener.faces uses both)
RUNTIMES = ("auto", "keras", "lite")  # what runs the network (screener.scoring.Scorer)


class OptionsError(ScreenerError, ValueError):
    """An option has a value (or a combination) that cannot work. The message names it."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise OptionsError(message)


@dataclass(frozen=True)
class SampleOptions:
    frames: int = 32                 # frames spread evenly over the video...
    every_s: float | None = None     # ...or one every this many seconds
    largest_face: bool = False       # only the largest face of each frame, pooled (no people)
    min_face: int = MIN_FACE_PX
    min_score: float = MIN_SCORE
    # Follow the faces of one sampled frame into the next (one close-up detector run per face
    # instead of the whole-frame cascade); the whole frame is searched again every
    # `research_every` sampled frames, so a face that walks in is picked up. 0: every frame.
    research_every: int = 8

    def __post_init__(self):
        _need(self.frames >= 1, "frames must be at least 1")
        _need(self.every_s is None or self.every_s > 0, "every_s must be positive")
        _need(self.min_face >= 1, "min_face must be at least 1 pixel")
        _need(0 <= self.min_score <= 1, "min_score must be between 0 and 1")
        _need(self.research_every >= 0, "research_every must be 0 or more")

    def key(self) -> str:
        """The sampling as a stored result names it: a file scanned with other options is
        scanned again. Largest-face mode is spelt as it was before faces were linked into
        people (then the only mode, `all_faces=False`), so a state made then stays valid for it;
        the default, people, is spelt anew, so such a state is rescanned for it."""
        mode = ("all_faces", False) if self.largest_face else ("people", True)
        items = [(f.name, getattr(self, f.name)) for f in fields(self)]
        items = [mode if name == "largest_face" else (name, v) for name, v in items]
        return f"SampleOptions({', '.join(f'{k}={v!r}' for k, v in items)})"


@dataclass(frozen=True)
class EngineOptions:
    name: str = "local"              # local | ray (screener.engines)
    workers: int | None = None       # decode/detect processes (local; default one per core,
                                     # 0: none) or CPUs kept busy (ray; default the cluster's)
    address: str | None = None       # ray: the cluster (default RAY_ADDRESS, else a local Ray)
    video_timeout_s: float | None = None  # per video, then an error row (default: no limit)
    batch_size: int = 256            # face crops per model call

    def __post_init__(self):
        _need(self.address is None or self.name == "ray", "--address needs --engine ray")
        _need(self.workers is None or self.workers >= 0, "workers must be 0 or more")
        _need(self.video_timeout_s is None or self.video_timeout_s > 0,
              "the time limit per video must be positive")
        _need(self.video_timeout_s is None or self.name != "local" or self.workers != 0,
              "--video-timeout needs worker processes (--workers 1 or more)")
        _need(self.batch_size >= 1, "batch_size must be at least 1")


@dataclass(frozen=True)
class ScanOptions:
    model: str | None = None         # a model file (default: the shipped model)
    threshold: float | None = None   # FAKE at or above (default: the model card's)
    runtime: str = "auto"            # auto | keras | lite (screener.scoring)
    sample: SampleOptions = field(default_factory=SampleOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self):
        _need(self.threshold is None or 0 <= self.threshold <= 1,
              "threshold must be between 0 and 1")
        _need(self.runtime in RUNTIMES, f"unknown runtime {self.runtime!r}; choose from "
                                        f"{', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class ReportOptions:
    out: str | None = "-"            # the report file; "-": standard output; None: none
    fmt: str | None = None           # csv | json (default: from out's extension, else csv)
    frames_out: str | None = None    # also one CSV row per scored face
    html: str | None = None          # also the visual report
    details: int | None = None       # videos shown in detail in it (default: html_report's)

    def __post_init__(self):
        if self.fmt is None:
            object.__setattr__(self, "fmt", "json" if str(self.out).lower().endswith(".json")
                               else "csv")
        _need(self.fmt in FORMATS, f"unknown report format {self.fmt!r}; choose from "
                                   f"{', '.join(FORMATS)}")
        _need(self.details is None or self.details >= 0, "details must be 0 or more")

    @property
    def to_stdout(self) -> bool:
        return self.out is not None and str(self.out) == "-"

    @property
    def to_file(self) -> bool:
        return self.out is not None and str(self.out) != "-"


@dataclass(frozen=True)
class StateOptions:
    path: str | None = None          # the state file (default: <out>.state.sqlite)
    rescan: bool = False             # scan everything again (and set an unusable state aside)
    settle_s: float = 30.0           # files changed more recently are left for the next run
    keep_missing: bool = False       # keep rows of vanished files, status missing
    allow_empty: bool = False        # folders without videos empty the report (cron)

    def __post_init__(self):
        _need(self.settle_s >= 0, "settle_s must be 0 or more")


# Keywords whose name differs from their field's.
ALIASES = {"engine": (EngineOptions, "name"), "state": (StateOptions, "path")}
CLASSES = (SampleOptions, EngineOptions, ScanOptions, ReportOptions, StateOptions)


def _fields(cls) -> set[str]:
    return {f.name for f in fields(cls)} - {"sample", "engine"}


def from_keywords(*, options: ScanOptions | None = None, with_report: bool = False,
                  with_state: bool = False, **keywords):
    """Options objects from keywords named as their fields (`frames=16`, `workers=0`,
    `engine="ray"`, `state="s.sqlite"`), on top of `options` (default: the defaults).
    `sample=` and `engine=` also take whole SampleOptions and EngineOptions. Returns the
    ScanOptions, then a ReportOptions if `with_report`, then a StateOptions if `with_state`.
    Raises TypeError for a keyword no object has, OptionsError for a bad value."""
    options = options or ScanOptions()
    picked: dict[type, dict] = {cls: {} for cls in CLASSES}
    for key, value in keywords.items():
        if key == "sample" and isinstance(value, SampleOptions):
            options = dataclasses.replace(options, sample=value)
        elif key == "engine" and isinstance(value, EngineOptions):
            options = dataclasses.replace(options, engine=value)
        elif key in ALIASES:
            cls, name = ALIASES[key]
            picked[cls][name] = value
        else:
            owner = next((cls for cls in CLASSES if key in _fields(cls)), None)
            if owner is None or (owner is ReportOptions and not with_report) \
                    or (owner is StateOptions and not with_state):
                raise TypeError(f"unknown option {key!r}")
            picked[owner][key] = value
    if picked[StateOptions] and not with_state:
        raise TypeError(f"unknown option {next(iter(picked[StateOptions]))!r}")
    options = dataclasses.replace(
        options, sample=dataclasses.replace(options.sample, **picked[SampleOptions]),
        engine=dataclasses.replace(options.engine, **picked[EngineOptions]),
        **picked[ScanOptions])
    out = [options]
    if with_report:
        out.append(ReportOptions(**picked[ReportOptions]))
    if with_state:
        out.append(StateOptions(**picked[StateOptions]))
    return out[0] if len(out) == 1 else tuple(out)
