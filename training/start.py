"""Where a run starts: weights copied from another model by layer name, and the frequency
branch's standardisation fitted on the run's own training images."""
from __future__ import annotations

import numpy as np

# The dense layers a --fresh-head run starts over (MesoNet's head; a fused model's MesoNet logit).
HEAD = ("dense16", "p_fake", "meso_logit")


def init_from(model, src, skip=()) -> list[str]:
    """Copy weights from `src` into `model` layer by layer, by name (a published model's
    `p_fake` feeds `meso_logit` when the model has a frequency branch); with --srm the first
    convolution takes the source's kernel for its RGB inputs and zeros for the residuals.
    Returns the layers copied. Layers of another shape (a --width) are left as built."""
    names = {lay.name for lay in src.layers}
    copied = []
    for lay in model.layers:
        from_name = "p_fake" if lay.name == "meso_logit" else lay.name
        if lay.name in skip or from_name not in names or not lay.weights:
            continue
        theirs = src.get_layer(from_name).get_weights()
        ours = lay.get_weights()
        if [w.shape for w in theirs] == [w.shape for w in ours]:
            lay.set_weights(theirs)
        elif (lay.name == "block1_conv" and len(ours) == 2 and ours[0].ndim == 4
              and theirs[0].shape[:2] == ours[0].shape[:2] and theirs[0].shape[3] == ours[0].shape[3]
              and theirs[0].shape[2] < ours[0].shape[2]):
            k = np.zeros_like(ours[0])
            k[:, :, :theirs[0].shape[2]] = theirs[0]
            lay.set_weights([k, theirs[1]])
        else:
            continue
        copied.append(lay.name)
    return copied


def fit_spectrum_norm(model, batches, images: int = 2048) -> None:
    """Set the frequency branch's standardisation (its Normalization layer) from the features of
    `images` training images, as they come out of the training stream (augmented)."""
    import keras
    feats = keras.Model(model.input, model.get_layer("spectrum_features").output)
    got, n = [], 0
    for x, _, _ in batches:
        got.append(np.asarray(feats.predict_on_batch(x)))
        n += len(x)
        if n >= images:
            break
    f = np.concatenate(got)
    norm = model.get_layer("spectrum_norm")
    norm.set_weights([f.mean(0), f.var(0) + 1e-6, np.array(len(f))])
    norm.finalize_state()  # the layer computes with what this derives from the weights
