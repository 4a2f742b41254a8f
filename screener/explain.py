"""What drove a face's score: a Grad-CAM heat map and the feature maps of each conv block.

Grad-CAM (Selvaraju et al. 2017) on the last conv block: the block's activations (the input of
`block4_pool`, 32x32 for both MesoNet variants), each channel weighted by the mean gradient of
the logit of P(fake) over it, summed, ReLU. We take the gradient of the logit, not of P(fake):
the sigmoid flattens gradients of confident scores to nothing. Feature maps are the outputs of
`block1_pool` .. `block4_pool` (what the student project's web app showed).

Pure Keras 3 for the model parts; the gradient needs the backend's autodiff: TensorFlow (the
screener's backend) and JAX are supported, others raise ExplainUnavailable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCKS = ("block1", "block2", "block3", "block4")


class ExplainUnavailable(RuntimeError):
    """The model or backend cannot be explained (not a `nets.build` model, no autodiff)."""


@dataclass
class Explanation:
    p_fake: float                    # the model's P(fake) for the explained crop
    heat: np.ndarray                 # (256, 256) float32 in [0, 1]; all zero: no gradient
    feature_maps: list[tuple[str, np.ndarray]]  # (block name, (h, w, channels) float32)


class Explainer:
    """Built once per model (the sub-models), then `explain(crop)` per face."""

    def __init__(self, model):
        import keras
        self.backend = keras.backend.backend()
        if self.backend not in ("tensorflow", "jax"):
            raise ExplainUnavailable(f"no Grad-CAM for the {self.backend} backend")
        # With a frequency branch (nets.build(spectrum=True)) the heat map is the MesoNet
        # branch's (its logit, `meso_logit`); P(fake) stays the whole model's.
        names = {layer.name for layer in model.layers}
        self.whole = model if "meso_logit" in names else None
        try:
            pools = [model.get_layer(f"{b}_pool") for b in BLOCKS]
            dense = model.get_layer("meso_logit" if self.whole else "p_fake")
        except ValueError as e:
            raise ExplainUnavailable(f"not a MesoNet model built by screener.nets: {e}") from e
        # Split at the last block's activations: front (image -> activations, feature maps)
        # and back (activations -> logit), so the gradient is taken w.r.t. a plain input.
        last = pools[-1].input
        self.front = keras.Model(model.inputs, [last, *[p.output for p in pools]])
        self.back = _tail(model, pools[-1], dense)

    def explain(self, crop: np.ndarray) -> Explanation:
        return self.explain_many(np.asarray(crop)[None])[0]

    def explain_many(self, crops: np.ndarray, batch_size: int = 32) -> list[Explanation]:
        """Explanations of (N, 256, 256, 3) uint8 crops, computed a batch at a time (the
        forward pass runs compiled: one eager call per face costs ten times more)."""
        crops = np.asarray(crops, np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (256, 256, 3):
            raise ValueError(f"crops must be (N, 256, 256, 3) uint8, got {crops.shape}")
        out = []
        for i in range(0, len(crops), batch_size):
            outs = self.front.predict_on_batch(crops[i:i + batch_size])
            acts = np.asarray(outs[0], np.float32)
            logits, grads = self._logit_and_grad(acts)
            if self.whole is not None:
                p = np.asarray(self.whole.predict_on_batch(crops[i:i + batch_size]), np.float64)
                logits = np.log(p / (1 - p)).reshape(-1)
            weights = grads.mean(axis=(1, 2))                      # (n, channels)
            cams = np.maximum(np.einsum("nhwc,nc->nhw", acts, weights), 0.0)
            for j in range(len(acts)):
                cam, top = cams[j], float(cams[j].max())
                cam = cam / top if top > 0 and np.isfinite(top) else np.zeros_like(cam)
                maps = [(b, np.asarray(m[j], np.float32)) for b, m in zip(BLOCKS, outs[1:])]
                out.append(Explanation(float(1 / (1 + np.exp(-logits[j]))), _resize(cam, 256),
                                       maps))
        return out

    def _logit_and_grad(self, acts: np.ndarray):
        if self.backend == "tensorflow":
            import tensorflow as tf
            a = tf.convert_to_tensor(acts)
            with tf.GradientTape() as tape:
                tape.watch(a)
                z = tf.reshape(self.back(a, training=False), [-1])
                total = tf.reduce_sum(z)  # each face's logit depends on its own activations only
            return np.asarray(z, np.float64), np.asarray(tape.gradient(total, a))
        import jax
        import jax.numpy as jnp
        f = lambda a: jnp.sum(self.back(a, training=False))  # noqa: E731
        g = jax.grad(f)(jnp.asarray(acts))
        z = np.asarray(self.back(jnp.asarray(acts), training=False)).reshape(-1)
        return z.astype(np.float64), np.asarray(g)


def _tail(model, pool_layer, dense):
    """activations -> logit: the chain of layers from the last block's activations to `dense`,
    replayed on a new input, and `dense` without its activation. Layers off that chain (a
    frequency branch) are skipped."""
    import keras
    from keras import ops
    order = [layer for layer in model.layers]
    start = order.index(pool_layer)
    x_in = keras.Input(tuple(pool_layer.input.shape[1:]), dtype="float32")
    x, prev = x_in, pool_layer.input
    for layer in order[start:]:
        if layer.input is not prev:
            continue
        if layer is dense:
            x = ops.matmul(x, dense.kernel) + dense.bias
            break
        x, prev = layer(x), layer.output
    return keras.Model(x_in, x)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image
    img = Image.fromarray(a.astype(np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.float32).clip(0, 1)


# --- pictures -------------------------------------------------------------------------------

def colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """float [0, 1] (h, w) -> uint8 RGB (h, w, 3) with a matplotlib colormap."""
    from matplotlib import colormaps
    lut = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[(np.clip(values, 0, 1) * 255).astype(np.uint8)]


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heat map over the crop: more colour where the score was driven more."""
    colour = colormap(heat, "jet").astype(np.float32)
    a = (alpha * heat[..., None]).astype(np.float32)  # cold areas keep the face visible
    return (crop.astype(np.float32) * (1 - a) + colour * a).astype(np.uint8)


def feature_grid(maps: np.ndarray, tile_px: int = 32, max_channels: int = 16,
                 per_row: int = 8, gap_px: int = 1) -> np.ndarray:
    """One block's feature maps (h, w, c) as a grid of tiles (viridis, each channel scaled to
    its own range), at most `max_channels`. Tiles are at most `tile_px` (maps are shrunk, never
    enlarged: the page scales small grids up with pixelated rendering, which keeps them tiny)."""
    from PIL import Image
    c = min(maps.shape[-1], max_channels)
    t = min(tile_px, maps.shape[0])
    g = gap_px if t >= 16 else 0
    rows, cols = (c + per_row - 1) // per_row, min(c, per_row)
    grid = np.full((rows * (t + g) - g, cols * (t + g) - g, 3), 255, np.uint8)
    for i in range(c):
        m = maps[..., i]
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        tile = colormap(m, "viridis")
        if tile.shape[0] != t:
            tile = np.asarray(Image.fromarray(tile).resize((t, t), Image.Resampling.BOX))
        r, k = divmod(i, per_row)
        y, x = r * (t + g), k * (t + g)
        grid[y:y + t, x:x + t] = tile
    return grid
