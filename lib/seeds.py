"""The random streams of training, named in one place.

Chapter 5 ("Hands-on project") explains why a resumed run repeats an uninterrupted one exactly:
every random choice of an epoch is drawn from a generator that depends only on (seed, epoch,
stream), never on what happened before. The streams must never share a number, or two kinds of
choice would draw the same random numbers; `Stream` is the only place that numbers them.
"""

from __future__ import annotations

import enum

import numpy as np
import torch


class Stream(enum.IntEnum):
    """One random stream per kind of choice made during an epoch of training."""

    SHUFFLE = 0  # the order of the training images (lib.data's loaders)
    AUGMENT = 1  # the crops and flips of the training images (lib.data's loaders)
    DROPOUT = 2  # torch's global generator while training: dropout and anything else that draws (lib.train)
    SAMPLE = 3  # a sample of the training images drawn once, before training (lib.fast's whitening)


def seed_for(seed: int, epoch: int, stream: Stream) -> int:
    """A 64-bit seed determined by (seed, epoch, stream) alone, mixed by numpy's SeedSequence so
    that neighbouring inputs give unrelated seeds. Chapter 5."""
    high, low = np.random.SeedSequence([seed, epoch, int(stream)]).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


def generator(seed: int, epoch: int, stream: Stream) -> torch.Generator:
    """A CPU torch generator for one stream of one epoch: a resumed run draws the same numbers.
    Chapter 5."""
    return torch.Generator().manual_seed(seed_for(seed, epoch, stream))
