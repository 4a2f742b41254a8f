"""screener: batch deepfake screening of videos with MesoNet.

Data flow: path -> video (sample frames) -> faces (detect, align to 256x256) -> scoring
(P(fake) per crop, 1 is fake) -> verdict (per video) -> report. docs/design.md shows every
module; `screener.scan`, `screener.scan_incremental` and `screener.extract` are the Python API,
with options as objects (screener.options) or keywords.
"""
from .version import __version__  # noqa: F401

# Before any native library loads: their own logging stays off the terminal (screener/quiet.py).
from . import quiet as _quiet

_quiet.configure()

from .errors import (ImageError, ModelError, OutputConflict, ScreenerError,  # noqa: F401,E402
                     StateError, StateLocked, UnknownModel, VideoError)
from .options import (EngineOptions, OptionsError, ReportOptions, SampleOptions,  # noqa: F401,E402
                      ScanOptions, StateOptions)

from .verdict import FaceScore, PersonResult, VideoResult  # noqa: F401,E402
from .api import iter_scan, scan, scan_incremental  # noqa: F401,E402
from .extract import extract  # noqa: F401,E402
