"""Where the model runs, decided without a GPU: no device files, --device cpu, a device file
TensorFlow cannot use, and what screener says when TensorFlow's build cannot reach a GPU.

A stand-in device file (a temporary file named by device.DEVICE_FILES) plays a GPU's; everything
else is real: this TensorFlow, asked for real, sees no GPU."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from screener import device
from screener.errors import ScreenerError
from screener.scoring import CPU_BATCH, load_model


@pytest.fixture
def gpu_file(tmp_path, monkeypatch):
    """This machine, as if a GPU driver had made its device file."""
    fake = tmp_path / "nvidia0"
    fake.write_text("")
    monkeypatch.setattr(device, "DEVICE_FILES", (str(tmp_path / "nvidia[0-9]*"),))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    device._accelerated_here.cache_clear()
    yield fake
    device._accelerated_here.cache_clear()


def test_without_device_files_no_framework_is_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(device, "DEVICE_FILES", (str(tmp_path / "nvidia[0-9]*"),))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "framework_sees_accelerator",
                        lambda: pytest.fail("TensorFlow asked on a machine without a GPU"))
    assert not device.maybe_accelerator() and not device.accelerated()


def test_device_cpu_hides_a_gpu(gpu_file, monkeypatch):
    assert device.maybe_accelerator()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # select_device sets it; restored after
    device.select_device("cpu")
    assert not device.maybe_accelerator() and not device.accelerated()


@pytest.mark.slow
def test_a_gpu_tensorflow_cannot_use_runs_the_model_on_the_cpu_and_says_why(
        gpu_file, tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger="screener.device"):
        assert device.maybe_accelerator() and not device.accelerated()
        assert not device.accelerated()  # asked once: one warning
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "has a GPU or TPU device" in warning and "runs on the CPU" in warning
    assert device.tensorflow_advice(device.tensorflow_distributions()) in warning
    scorer = load_model(tiny_model)
    crops = np.zeros((3, 256, 256, 3), np.uint8)
    assert scorer.predict(crops).shape == (3,) and scorer.runtime == "litert"
    assert scorer.batch_for(256) == CPU_BATCH


def test_device_gpu_without_one_fails_with_the_fix(gpu_file):
    with pytest.raises(ScreenerError, match=r"^device gpu: TensorFlow \(tensorflow\) sees no "
                                            r"GPU.*pip install 'screener\[gpu\]'"):
        device.select_device("gpu")


@pytest.mark.parametrize("dists, says", [
    (["tensorflow"], "TensorFlow (tensorflow) sees no GPU: is the driver loaded"),
    (["tensorflow-cpu"], "the installed TensorFlow is the CPU-only build (tensorflow-cpu): "
                         "pip uninstall -y tensorflow-cpu && pip install 'screener[gpu]'"),
    (["tensorflow", "tensorflow-cpu"],
     "tensorflow and tensorflow-cpu are installed together and share one tensorflow folder"),
    ([], "TensorFlow is not installed: pip install 'screener[gpu]'"),
])
def test_advice_names_the_tensorflow_builds_in_the_way(dists, says):
    advice = device.tensorflow_advice(dists)
    assert says in advice
    if len(dists) > 1:
        assert advice.endswith("pip uninstall -y tensorflow tensorflow-cpu && "
                               "pip install 'screener[gpu]'")
