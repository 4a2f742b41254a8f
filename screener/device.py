"""Where the model runs: `auto` (a GPU when TensorFlow sees one, else the CPU), `cpu` or `gpu`.

Chosen before TensorFlow loads (an unchanged incremental rerun never loads it at all), so
`cpu` hides the GPUs through CUDA_VISIBLE_DEVICES rather than through TensorFlow's API.
Worker processes never run the model, whatever the device. On a CPU the model runs under
LiteRT when it can (screener.scoring, screener.lite); on a GPU under Keras.

A GPU needs TensorFlow's CUDA build: `pip install 'screener[gpu]'` (tensorflow[and-cuda]).
The CPU-only build, `tensorflow-cpu`, installs into the same `tensorflow/` folder as
`tensorflow`, so with both installed whichever was installed last wins, file by file. screener
never asks for it, but an environment may hold it; `tensorflow_advice` says what to do.
"""
from __future__ import annotations

import functools
import glob
import logging
import os
import sys

from .errors import ScreenerError

log = logging.getLogger(__name__)

# Device files the GPU and TPU drivers make on Linux (NVIDIA, AMD ROCm, TPUs): without any of
# them no framework can find an accelerator, and none needs to be imported to know it.
DEVICE_FILES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/accel*", "/dev/vfio/[0-9]*")
# Distributions that install the tensorflow/ folder; the first ones run on CPUs only.
CPU_ONLY_TENSORFLOW = ("tensorflow-cpu", "tf-nightly-cpu")
GPU_INSTALL = "pip install 'screener[gpu]'"


def maybe_accelerator() -> bool:
    """False when this process cannot have a GPU or TPU, known without importing TensorFlow or
    JAX (which take seconds and hundreds of MB): `--device cpu`, or Linux without the device
    files their drivers make. True means: ask the framework (`accelerated`)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "-1":
        return False
    if sys.platform != "linux":
        return True
    return any(glob.glob(p) for p in DEVICE_FILES)


def framework_sees_accelerator() -> bool:
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_logical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax
        return jax.default_backend() != "cpu"
    return False


@functools.lru_cache(maxsize=None)
def _accelerated_here() -> bool:
    if not maybe_accelerator():
        return False
    if framework_sees_accelerator():
        return True
    log.warning("this machine has a GPU or TPU device, but %s; the model runs on the CPU",
                tensorflow_advice(tensorflow_distributions()))
    return False


def accelerated() -> bool:
    """Whether the model runs on a GPU or TPU here; a framework is imported only if one may
    exist. Asked once per process (and per CUDA_VISIBLE_DEVICES value)."""
    return maybe_accelerator() and _accelerated_here()


def tensorflow_distributions() -> list[str]:
    """The installed distributions that own the `tensorflow` package folder, sorted."""
    from importlib import metadata
    names = metadata.packages_distributions().get("tensorflow", [])
    return sorted({n.lower().replace("_", "-") for n in names})


def tensorflow_advice(dists: list[str]) -> str:
    """Why TensorFlow may see no GPU, given who owns its folder, and the command that fixes it."""
    if not dists:
        return f"TensorFlow is not installed: {GPU_INSTALL}"
    cpu_only = [d for d in dists if d in CPU_ONLY_TENSORFLOW]
    if len(dists) > 1:
        return (f"{' and '.join(dists)} are installed together and share one tensorflow folder (a "
                "CPU-only build may shadow the CUDA one): pip uninstall -y "
                f"{' '.join(dists)} && {GPU_INSTALL}")
    if cpu_only:
        return (f"the installed TensorFlow is the CPU-only build ({cpu_only[0]}): "
                f"pip uninstall -y {cpu_only[0]} && {GPU_INSTALL}")
    return (f"TensorFlow ({dists[0]}) sees no GPU: is the driver loaded, and are its CUDA "
            f"libraries installed ({GPU_INSTALL})?")


def select_device(device: str = "auto") -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    elif device == "gpu":
        if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
            return  # jax/torch pick their accelerator themselves
        if not gpus():
            raise ScreenerError("{0}: {1}", ("device", "gpu"),
                                (None, tensorflow_advice(tensorflow_distributions())))
    elif device != "auto":
        raise ValueError(f"unknown device {device!r}")


def gpus() -> list:
    import tensorflow as tf
    return tf.config.list_physical_devices("GPU")
