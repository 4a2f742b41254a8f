"""Training and evaluation of the MesoNet models that screener ships.

Builds on `screener` (the same network definitions in `screener.nets`, the same face detector and
aligner in `screener.detect` and `screener.align`); `screener` never imports this package. Labels: 1 is fake.

- `align`    re-align an image dataset with the scan's face aligner (`python -m training.align`)
- `data`     list, split (holdout by video) and stream labelled image folders
- `groups`   pseudo-videos of alike images for names without video ids
- `leakage`  how much a holdout carve leaks (`python -m training.leakage`)
- `sources`, `mix`, `sbi`  several datasets in one run, balanced batches, self-blended fakes
- `benchmark` every evaluation set and the clips' verdicts (`python -m training.benchmark`)
- `augment`  the paper's augmentations plus JPEG re-compression and blur
- `trunk`    fine-tuning on cached features of frozen blocks (a 2-core CPU's shortcut)
- `train`    the trainer (`python -m training.train --help`); `threshold` its threshold rules
- `metrics`  image- and video-level metrics on P(fake)
- `evaluate` the evaluation command (`python -m training.evaluate --help`)
- `soup`     the weight average of fine-tunes of one model (`python -m training.soup --help`)
"""
