"""screener: batch deepfake screening of videos with MesoNet.

Data flow: path -> video (sample frames) -> faces (detect, align to 256x256) -> scoring
(P(fake) per crop, 1 is fake) -> verdict (per video) -> report.
"""
__version__ = "0.1.0"

from .errors import (ImageError, ModelError, ScreenerError, StateError, StateLocked,  # noqa: F401
                     VideoError)
