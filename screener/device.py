"""Where the model runs: `auto` (a GPU when TensorFlow sees one), `cpu` or `gpu`.

Chosen before TensorFlow loads (an unchanged incremental rerun never loads it at all), so
`cpu` hides the GPUs through CUDA_VISIBLE_DEVICES rather than through TensorFlow's API.
Worker processes never run the model, whatever the device.
"""
from __future__ import annotations

import os

from .errors import ScreenerError


def gpus() -> list:
    import tensorflow as tf
    return tf.config.list_physical_devices("GPU")


def select_device(device: str = "auto") -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    elif device == "gpu":
        if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
            return  # jax/torch pick their accelerator themselves
        if not gpus():
            raise ScreenerError("--device gpu: TensorFlow sees no GPU (is tensorflow[and-cuda] "
                                "installed and the driver loaded?)")
    elif device != "auto":
        raise ValueError(f"unknown device {device!r}")
