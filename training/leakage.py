"""How much a holdout carve leaks: for every held-out image, its similarity to the most alike
training image (`groups.nearest_similarity`), next to the same figure for the test split
against the train split, for each way `data.holdout_split` can carve (video, similar, block).

    python -m training.leakage --data data/mesonet-df-aligned --test-split validation --holdout 0.1

docs/model.md ("The holdout") has the figures this printed for the shipped model's data.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from screener.errors import ScreenerError

from .data import HOLDOUT_BY, holdout_split, list_split
from .groups import describe, nearest_similarity


def main(argv=None) -> int:
    """Print how much each holdout carve leaks: the similarity of held-out images to the
    nearest training image, next to the same figure for the test split against the train split."""
    p = argparse.ArgumentParser(prog="python -m training.leakage", description=main.__doc__)
    p.add_argument("--data", required=True, help="dataset root holding <split>/{df,real}")
    p.add_argument("--split", default="train")
    p.add_argument("--test-split", default=None,
                   help="also measure this split (e.g. validation) against the train split")
    p.add_argument("--holdout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--by", nargs="+", choices=HOLDOUT_BY[1:], default=["similar", "block"])
    a = p.parse_args(argv)
    try:
        samples = list_split(a.data, a.split)
        desc = describe([s.path for s in samples])
        row = {s.path: i for i, s in enumerate(samples)}
        pct = lambda v: " / ".join(f"{x:.3f}" for x in np.percentile(v, [50, 90, 99]))  # noqa: E731
        print("nearest-neighbour similarity, median / p90 / p99")
        for by in a.by:
            keep, held = holdout_split(samples, a.holdout, a.seed, by)
            if not keep or not held:
                print(f"  holdout by {by}: one side is empty (too few groups for --holdout)")
                continue
            nn = nearest_similarity(desc[[row[s.path] for s in held]], desc[[row[s.path] for s in keep]])
            print(f"  holdout by {by}: {len(held)} images in {len({s.group for s in held})} "
                  f"groups -> the rest of {a.split}: {pct(nn)}")
        if a.test_split:
            test = list_split(a.data, a.test_split)
            tdesc = describe([s.path for s in test])
            print(f"  {a.test_split} ({len(test)} images) -> {a.split}: "
                  f"{pct(nearest_similarity(tdesc, desc))}")
    except (ScreenerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
