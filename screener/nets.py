"""MesoNet network definitions (Afchar et al. 2018, arXiv 1809.00888) in pure Keras 3.

One place for the architectures: the published-weights loader (`scoring`) and the training
package both build their models here.

Conventions, stated once:
- input: uint8 RGB, shape (256, 256, 3); scaling to [0, 1] happens inside the model, so callers
  never normalise and a saved model cannot be fed the wrong range;
- output: one sigmoid unit, P(fake). 1 is fake. (The published weights use 1 = real; `scoring`
  flips them once at load time.)

`window` (x0, y0, x1, y1 in crop pixels) zeroes everything outside that box of the aligned crop
before the first block (a Cropping2D and a ZeroPadding2D: built-in layers, so the file loads in
safe mode and LiteRT converts it). The face sits in the same box of every aligned crop, while
what lies around it differs by source: full context in a video frame, black where a dataset's
tight face crop ends. A model that sees only `FACE_WINDOW` scores both alike and cannot learn a
dataset's framing (the MesoNet dataset's real crops carry more black border than its fakes).

`activation=None` is the paper: ReLU in the conv blocks, LeakyReLU(0.1) after the 16-unit dense
layer. "relu", "elu" or "leaky_relu" applies one activation to the whole model (the student
project's option). `batchnorm` and `dropout` switch the paper's BatchNorm after each conv block
and its two Dropout layers.

Three additions to the paper, each off by default (a model without them is the paper's):
- `width` multiplies every block's and the dense layer's channels (capacity: Meso-4 has 28 k
  parameters; width 2 about 4 times as many).
- `srm` adds three fixed high-pass residuals (the SRM filters of steganalysis, Fridrich and
  Kodovsky 2012) of the grey image to the first block's input: the noise a face swap's blending
  and resampling leave, which the first convolution would otherwise have to learn.
- `spectrum` adds a frequency branch: the grey crop's 2-D DCT (two fixed matrix products), its
  log power pooled to a 32x32 grid, and a small dense head; its logit and the MesoNet logit are
  fused by one dense unit into P(fake). Upsampling and blending leave peaks and a missing tail in
  the spectrum that a 28 k-parameter convolution net barely sees (docs/model.md has the figures).
Every fixed part is a built-in layer with frozen weights, or a registered layer below, so the
file loads in safe mode and LiteRT converts it.
"""
from __future__ import annotations

import numpy as np

import keras
from keras import layers

from .arch import ARCHS, FACE_WINDOW, INPUT_SIZE  # noqa: F401 - nets.X as well

ACTIVATIONS = (None, "relu", "elu", "leaky_relu")
SPECTRUM_GRID = 32  # the log power spectrum is average-pooled to this many cells a side
GREY = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="screener")
class LogPower(layers.Layer):
    """log10(x^2 + 1e-8): a DCT coefficient's power on a scale a dense layer can use."""

    def call(self, x):
        return keras.ops.log(keras.ops.square(x) + 1e-8) * (1 / np.log(10.0))


def dct_matrix(n: int = INPUT_SIZE) -> np.ndarray:
    """The orthonormal DCT-II matrix D (y = D @ x)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


@keras.saving.register_keras_serializable(package="screener")
class DCTKernel(keras.initializers.Initializer):
    """D^T as a Dense kernel. A Constant initializer would write the 256x256 matrix into the
    saved model's config as JSON text (2.9 MB); this one writes its size."""

    def __init__(self, n: int = INPUT_SIZE):
        self.n = int(n)

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(dct_matrix(self.n).T, dtype=dtype or "float32")

    def get_config(self):
        return {"n": self.n}


def srm_kernels() -> np.ndarray:
    """(5, 5, 1, 3): three SRM high-pass filters of the grey image (KV 5x5, 3x3 edge,
    second-order horizontal), scaled so a typical residual of a [0, 1] image is of order 0.1."""
    kv = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                   [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], np.float32) / 12
    edge = np.zeros((5, 5), np.float32)
    edge[1:4, 1:4] = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
    second = np.zeros((5, 5), np.float32)
    second[2, 1:4] = np.array([1, -2, 1]) / 2
    return (10 * np.stack([kv, edge, second], -1))[:, :, None, :]


def _grey(x):
    """(N, 256, 256, 1) luma of a [0, 1] RGB image (a fixed 1x1 convolution)."""
    return layers.Conv2D(1, 1, use_bias=False, trainable=False, name="grey",
                         kernel_initializer=keras.initializers.Constant(
                             np.array(GREY, np.float32).reshape(1, 1, 3, 1)))(x)


def _act(name: str | None, where: str):
    """The activation layer for a conv block (`where="conv"`) or the dense layer."""
    if name is None:
        name = "relu" if where == "conv" else "leaky_relu"
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.1)
    if name in ("relu", "elu"):
        return layers.Activation(name)
    raise ValueError(f"unknown activation {name!r}; choose from relu, elu, leaky_relu")


def _conv(x, filters, kernel, activation, dilation=1, name=None):
    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, name=name)(x)
    return _act(activation, "conv")(x)


def _inception(x, a, b, c, d, activation, name):
    """MesoInception's module: 1x1, and 1x1 then 3x3 with dilation 1, 2 and 3, concatenated."""
    x1 = _conv(x, a, 1, activation, name=f"{name}_1x1")
    x2 = _conv(_conv(x, b, 1, activation, name=f"{name}_b1"), b, 3, activation, name=f"{name}_b3")
    x3 = _conv(_conv(x, c, 1, activation, name=f"{name}_c1"), c, 3, activation, 2, f"{name}_c3")
    x4 = _conv(_conv(x, d, 1, activation, name=f"{name}_d1"), d, 3, activation, 3, f"{name}_d3")
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x1, x2, x3, x4])


def _block_end(x, batchnorm, pool, name):
    if batchnorm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.MaxPooling2D(pool_size=pool, padding="same", name=f"{name}_pool")(x)


def build(arch: str = "meso4", activation: str | None = None, batchnorm: bool = True,
          dropout: float = 0.5, name: str | None = None,
          window: tuple[int, int, int, int] | None = None, width: int = 1,
          srm: bool = False, spectrum: bool = False) -> keras.Model:
    """Build Meso-4 or MesoInception-4: uint8 (N, 256, 256, 3) in, P(fake) (N, 1) out.

    The conv blocks are named block1..block4 (`blockK_pool` ends each), so explanations
    (Grad-CAM, feature maps) can find them by name in every variant. With `spectrum` the MesoNet
    head ends in `meso_logit`, the frequency branch in `spectrum_logit`, and `p_fake` fuses them.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from relu, elu, leaky_relu")
    if not (isinstance(width, int) and 1 <= width <= 8):
        raise ValueError(f"width {width!r} is not a whole number from 1 to 8")
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    if window is not None:
        x0, y0, x1, y1 = (int(v) for v in window)
        if not 0 <= x0 < x1 <= INPUT_SIZE or not 0 <= y0 < y1 <= INPUT_SIZE:
            raise ValueError(f"window {window} is not a box inside the {INPUT_SIZE}px crop")
        cut = ((y0, INPUT_SIZE - y1), (x0, INPUT_SIZE - x1))
        x = layers.ZeroPadding2D(cut, name="window_pad")(layers.Cropping2D(cut, name="window_crop")(x))
    grey = _grey(x) if srm or spectrum else None
    if srm:
        # Depthwise on the grey map: LiteRT's kernels run a 3-channel output convolution
        # several times slower (docs/performance.md).
        residual = layers.DepthwiseConv2D(
            5, depth_multiplier=3, padding="same", use_bias=False, trainable=False,
            depthwise_initializer=keras.initializers.Constant(srm_kernels()), name="srm")(grey)
        x = layers.Concatenate(name="srm_concat")([x, residual])
    w = width
    if arch == "meso4":
        x = _block_end(_conv(x, 8 * w, 3, activation, name="block1_conv"), batchnorm, 2, "block1")
        x = _block_end(_conv(x, 8 * w, 5, activation, name="block2_conv"), batchnorm, 2, "block2")
    else:
        x = _block_end(_inception(x, 1 * w, 4 * w, 4 * w, 2 * w, activation, "block1"), batchnorm, 2, "block1")
        x = _block_end(_inception(x, 2 * w, 4 * w, 4 * w, 2 * w, activation, "block2"), batchnorm, 2, "block2")
    x = _block_end(_conv(x, 16 * w, 5, activation, name="block3_conv"), batchnorm, 2, "block3")
    x = _block_end(_conv(x, 16 * w, 5, activation, name="block4_conv"), batchnorm, 4, "block4")
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(16 * w, name="dense16")(x)
    x = _act(activation, "dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout2")(x)
    if not spectrum:
        outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(x)
        return keras.Model(inputs, outputs, name=name or arch)
    meso = layers.Dense(1, name="meso_logit")(x)
    spec = spectrum_head(spectrum_features(grey), dropout)
    fused = layers.Concatenate(name="logits")([meso, spec])
    outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(fused)
    return keras.Model(inputs, outputs, name=name or arch)


def spectrum_features(grey):
    """(N, SPECTRUM_GRID**2) log power of the grey crop's 2-D DCT, pooled. Every weight here
    is fixed."""
    d = DCTKernel(INPUT_SIZE)
    g = layers.Reshape((INPUT_SIZE, INPUT_SIZE), name="spectrum_flat")(grey)
    rows = layers.Dense(INPUT_SIZE, use_bias=False, trainable=False, kernel_initializer=d,
                        name="spectrum_dct_rows")(g)  # G @ D^T
    t = layers.Permute((2, 1), name="spectrum_transpose")(rows)
    both = layers.Dense(INPUT_SIZE, use_bias=False, trainable=False, kernel_initializer=d,
                        name="spectrum_dct_cols")(t)  # (D @ G @ D^T)^T
    power = LogPower(name="spectrum_log_power")(both)
    cells = INPUT_SIZE // SPECTRUM_GRID
    grid = layers.AveragePooling2D(cells, name="spectrum_pool")(
        layers.Reshape((INPUT_SIZE, INPUT_SIZE, 1), name="spectrum_map")(power))
    return layers.Flatten(name="spectrum_features")(grid)


def spectrum_head(features, dropout: float = 0.5):
    """The frequency branch's trainable part: standardised features -> 32 -> its logit. The
    Normalization layer's mean and variance are set from training features (training.spectrum)."""
    x = layers.Normalization(name="spectrum_norm")(features)
    x = layers.Dense(32, activation="relu", name="spectrum_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="spectrum_dropout")(x)
    return layers.Dense(1, name="spectrum_logit")(x)


def window_of(model: keras.Model) -> tuple[int, int, int, int] | None:
    """The `window` a model was built with (None: it sees the whole crop)."""
    try:
        (top, bottom), (left, right) = model.get_layer("window_crop").cropping
    except ValueError:
        return None
    return left, top, INPUT_SIZE - right, INPUT_SIZE - bottom


def preamble(model: keras.Model, x):
    """Apply the model's layers before its first block (scale, and the window if any) to x."""
    x = model.get_layer("scale")(x)
    if window_of(model) is not None:
        x = model.get_layer("window_pad")(model.get_layer("window_crop")(x))
    return x


def weight_layers(model: keras.Model) -> list:
    """The layers that hold weights, in the order Keras 2's MesoNet code created them: convs,
    then BatchNorms, then the two Dense layers. Loading published weights relies on this order."""
    if model.get_layer("block1_pool") is None:
        raise ValueError("not a model built by nets.build")
    names = [lay.name for lay in model.layers]
    branch = ("1x1", "b1", "b3", "c1", "c3", "d1", "d3")
    if "block1_conv" in names:
        convs = [f"block{k}_conv" for k in (1, 2, 3, 4)]
    else:
        convs = [f"block{k}_{b}" for k in (1, 2) for b in branch] + ["block3_conv", "block4_conv"]
    bns = [f"block{k}_bn" for k in (1, 2, 3, 4) if f"block{k}_bn" in names]
    return [model.get_layer(n) for n in convs + bns + ["dense16", "p_fake"]]
