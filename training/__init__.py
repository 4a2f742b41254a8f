"""Training and evaluation of the MesoNet models that screener ships.

Builds on `screener` (the same network definitions in `screener.nets`, the same face aligner in
`screener.faces`); `screener` never imports this package. Labels: 1 is fake.

- `align`    re-align an image dataset with the scan's face aligner (`python -m training.align`)
- `data`     list, split (holdout by video) and stream labelled image folders
- `groups`   pseudo-videos of alike images for names without video ids; a carve's leak
  (`python -m training.groups`)
- `augment`  the paper's augmentations plus JPEG re-compression and blur
- `trunk`    fine-tuning on cached features of frozen blocks (a 2-core CPU's shortcut)
- `train`    the trainer (`python -m training.train --help`)
- `metrics`  image- and video-level metrics on P(fake)
- `evaluate` the evaluation command (`python -m training.evaluate --help`)
- `soup`     the weight average of fine-tunes of one model (`python -m training.soup --help`)
"""
