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
import os
from dataclasses import dataclass, field, fields

from .errors import ScreenerError
from .report import FORMATS

# Faces narrower than this (box width, px) are reported as too small and not scored: MesoNet
# looks at mesoscopic texture, which a face upscaled 4x from 64 px no longer has.
MIN_FACE_PX = 64
MIN_SCORE = 0.6      # the lowest detector confidence kept (screener.detect, pipeline)
RUNTIMES = ("auto", "keras", "lite")  # what runs the network (screener.scoring.Scorer)
ENGINES = ("local", "ray")            # what computes the results (screener.engines.ENGINES)


class OptionsError(ScreenerError, ValueError):
    """An option has a value (or a combination) that cannot work. The message names it."""


def _need(ok: bool, message: str, *named: tuple[str, object]) -> None:
    """Raise OptionsError(message) unless ok; `named`: the options the message names, by field
    (errors.ScreenerError), which the CLI says as its flags."""
    if not ok:
        raise OptionsError(message, *named)


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

    # The fields a scan's user sets, which the report's header shows (the others are fixed by
    # the scan and only extract's flags change min_score).
    SHOWN = ("frames", "every_s", "largest_face", "min_face")

    def key(self, names: tuple[str, ...] | None = None) -> dict:
        """These options as plain values, the one way they are written down: what a stored
        state row was computed with (`state`), the report's header (`names=SHOWN`) and an
        extract's settings. Every field unless `names` picks some. The mode is written as
        `all_faces: false` for largest-face mode, as it was when that was the only mode (a
        state made then stays valid for it), and `people: true` for the default, so a file
        scanned one way is scanned again the other."""
        out = {}
        for f in fields(self):
            if names is None or f.name in names:
                value = getattr(self, f.name)
                if f.name == "largest_face":
                    out.update({"all_faces": False} if value else {"people": True})
                else:
                    out[f.name] = value
        return out


@dataclass(frozen=True)
class EngineOptions:
    name: str = "local"              # local | ray (screener.engines)
    workers: int | None = None       # decode/detect processes (local; default one per core,
                                     # 0: none) or CPUs kept busy (ray; default the cluster's)
    address: str | None = None       # ray: the cluster (default RAY_ADDRESS, else a local Ray)
    video_timeout_s: float | None = None  # per video, then an error row (default: no limit)
    batch_size: int = 256            # face crops per model call

    def __post_init__(self):
        _need(self.name in ENGINES, f"unknown engine {self.name!r}; choose from "
                                    f"{', '.join(ENGINES)}")
        _need(self.address is None or self.name == "ray", "{0} needs {1}",
              ("address", None), ("engine", "ray"))
        _need(self.workers is None or self.workers >= 0, "workers must be 0 or more")
        _need(self.video_timeout_s is None or self.video_timeout_s > 0,
              "the time limit per video must be positive")
        _need(self.video_timeout_s is None or self.name != "local" or self.workers != 0,
              "{0} needs worker processes ({1} 1 or more)", ("video_timeout_s", None),
              ("workers", None))
        _need(self.batch_size >= 1, "batch_size must be at least 1")


@dataclass(frozen=True)
class ScanOptions:
    model: str | None = None         # a model file or a shipped model's name (default: the shipped one)
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

    def where(self, report: ReportOptions) -> "StateOptions | None":
        """These options with the state file named, the one place its path is worked out:
        `path` when given, else `<report>.state.sqlite` beside a report file; None when there
        is neither (no report file, or one that is a stream such as /dev/null, which keeps no
        state beside it)."""
        if self.path is not None:
            return self
        from .files import is_stream
        if not report.to_file or is_stream(report.out):
            return None
        from .state.store import default_state_path
        return dataclasses.replace(self, path=os.fspath(default_state_path(report.out)))


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
