"""screener: batch deepfake screening of videos with MesoNet.

Data flow: path -> video (sample frames) -> faces (detect, align to 256x256) -> scoring
(P(fake) per crop, 1 is fake) -> verdict (per video) -> report.
"""
__version__ = "0.1.0"

import os as _os

# TensorFlow and mediapipe's C++ logging go straight to stderr; keep it for real problems.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("GLOG_minloglevel", "2")
# OpenCV and FFmpeg print a line per unreadable file; we report those ourselves, once.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from .errors import (ImageError, ModelError, OutputConflict, ScreenerError,  # noqa: F401
                     StateError, StateLocked, VideoError)

from .api import iter_scan, scan, scan_incremental  # noqa: F401,E402
from .extract import extract  # noqa: F401,E402
