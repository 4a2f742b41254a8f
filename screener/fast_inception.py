"""MesoInception-4 for CPUs: the same function, its first two blocks computed at half resolution.

Why: MesoInception's first two blocks run convolutions with 1 to 4 channels on 256x256 and
128x128 maps. A CPU convolution kernel is built for many channels; with four it mostly waits on
memory, so these two blocks take most of the model's time for few multiply-adds
(docs/performance.md).

The rewrite: space-to-depth by 2 (each 2x2 patch of pixels becomes one pixel with 4x the
channels), and every convolution of the block becomes an exactly equivalent convolution on that
half-resolution map (its kernel rearranged: a 3x3 kernel with dilation d spans 3 or 5 cells
there). Four times the multiply-adds, but with 4x the channels, which is what CPU kernels are
fast at. The block's 2x2 max-pool is then a max over the four cell positions, for free.

`cpu_twin(model)` builds, from a model that `nets.build` made (any activation, with or without
BatchNorm), a model with the same weights whose blocks 1-2 are computed this way and whose
other layers are the original ones. Outputs agree to float rounding (tests/test_nets.py).
Inference only: BatchNorm uses its moving statistics, Dropout is off. Explanations (Grad-CAM)
keep using the original model.
"""
from __future__ import annotations

import numpy as np

# The inception module's branches in concatenation order: (1x1 conv, 3x3 conv, its dilation).
BRANCHES = (("1x1", None, 0), ("b1", "b3", 1), ("c1", "c3", 2), ("d1", "d3", 3))


def cpu_twin(model):
    """The CPU-fast twin of a MesoInception-4 built by `nets.build`, or None for another model
    (Meso-4, one whose first block reads more than the image (`srm`), one with a frequency
    branch beside the blocks, or layers not wired as nets.build wires them)."""
    import keras

    if any(layer.name in ("srm", "spectrum_features") for layer in model.layers):
        return None
    try:
        consumer = _consumers(model)
        blocks = [_block_params(model, k, consumer) for k in (1, 2)]
        tail = keras.Model(model.get_layer("block2_pool").output, model.output)
        model.get_layer("scale")
    except (ValueError, KeyError, AttributeError):
        return None
    if any(b is None for b in blocks):
        return None
    from .nets import preamble
    inputs = keras.Input(model.input.shape[1:], dtype=model.input.dtype, name="image")
    x = preamble(model, inputs)
    for k, params in enumerate(blocks, 1):
        x = HalfResolutionInception(params, name=f"block{k}_half_resolution")(x)
    return keras.Model(inputs, tail(x), name=f"{model.name}_cpu")


def _consumers(model) -> dict:
    """layer name -> the one layer that reads its output (None when several or none)."""
    out = {}
    for layer in model.layers:
        nodes = getattr(layer, "_outbound_nodes", [])
        out[layer.name] = nodes[0].operation if len(nodes) == 1 else None
    return out


def _is_activation(layer) -> bool:
    import keras
    return isinstance(layer, (keras.layers.Activation, keras.layers.LeakyReLU,
                              keras.layers.ReLU, keras.layers.ELU))


def _block_params(model, k: int, consumer: dict):
    """Block k's convolutions rearranged for the half-resolution map, its activations, and its
    BatchNorm as a scale and shift per channel; None if the block is not nets.build's."""
    branches = []
    for first, second, dilation in BRANCHES:
        convs = []
        for name, d in ((first, 1), (second, dilation)):
            if name is None:
                continue
            layer = model.get_layer(f"block{k}_{name}")
            act = consumer[layer.name]
            if (not _is_activation(act) or tuple(layer.strides) != (1, 1) or not layer.use_bias
                    or layer.padding != "same" or tuple(layer.dilation_rate) != (d, d)):
                return None
            kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
            convs.append((s2d_kernel(kernel, d), np.tile(bias, 4), act))
        branches.append(convs)
    width = sum(b[-1][0].shape[-1] // 4 for b in branches)
    names = {layer.name for layer in model.layers}
    if f"block{k}_bn" in names:
        bn = model.get_layer(f"block{k}_bn")
        gamma, beta, mean, var = (np.asarray(w, np.float32) for w in bn.get_weights())
        scale = gamma / np.sqrt(var + bn.epsilon)
        shift = beta - mean * scale
    else:
        scale, shift = np.ones(width, np.float32), np.zeros(width, np.float32)
    if tuple(model.get_layer(f"block{k}_pool").pool_size) != (2, 2):
        return None
    return {"branches": branches, "scale": scale, "shift": shift}


def s2d_kernel(kernel: np.ndarray, dilation: int) -> np.ndarray:
    """A stride-1 'same' convolution kernel (kh, kw, cin, cout) with `dilation`, rewritten to act
    on the space-to-depth map (channel index (2a + b) * c + channel for the pixel at (a, b) of
    each 2x2 cell) and give that map of the original output."""
    kh, kw, cin, cout = kernel.shape
    taps = [(i, j, (i - kh // 2) * dilation, (j - kw // 2) * dilation)
            for i in range(kh) for j in range(kw)]
    reach = max(max(abs((a + dy) // 2), abs((a + dx) // 2))
                for _, _, dy, dx in taps for a in (0, 1))
    size = 2 * reach + 1
    out = np.zeros((size, size, 4 * cin, 4 * cout), np.float32)
    for a in (0, 1):
        for b in (0, 1):
            o = (2 * a + b) * cout
            for i, j, dy, dx in taps:
                cy, sa = divmod(a + dy, 2)
                cx, sb = divmod(b + dx, 2)
                c = (2 * sa + sb) * cin
                out[cy + reach, cx + reach, c:c + cin, o:o + cout] += kernel[i, j]
    return out


def space_to_depth(x):
    """(N, H, W, C) -> (N, H/2, W/2, 4C), channel (2a + b) * C + c for pixel (a, b) of a cell."""
    from keras import ops
    n, h, w, c = x.shape
    x = ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h // 2, w // 2, 4 * c))


class HalfResolutionInception:
    """One MesoInception module + BatchNorm + 2x2 max-pool, as a Keras layer (NHWC in and out)."""

    def __new__(cls, params, name=None):
        import keras
        from keras import ops

        class _Layer(keras.layers.Layer):
            def call(self, x):
                x = space_to_depth(x)
                pooled, at = [], 0
                for convs in params["branches"]:
                    y = x
                    for kernel, bias, act in convs:
                        y = act(ops.conv(y, ops.convert_to_tensor(kernel), padding="same")
                                + ops.convert_to_tensor(bias))
                    width = convs[-1][0].shape[-1] // 4
                    s = np.tile(params["scale"][at:at + width], 4)
                    t = np.tile(params["shift"][at:at + width], 4)
                    y = y * ops.convert_to_tensor(s) + ops.convert_to_tensor(t)
                    # the 2x2 max-pool: the max over the four pixels of each cell
                    y = ops.reshape(y, (-1, y.shape[1], y.shape[2], 4, width))
                    pooled.append(ops.max(y, axis=3))
                    at += width
                return ops.concatenate(pooled, axis=-1)

            def compute_output_shape(self, shape):
                return (shape[0], shape[1] // 2, shape[2] // 2, len(params["scale"]))

        return _Layer(name=name)
