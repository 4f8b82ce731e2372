"""Checkpoints written atomically and read safely.

Chapter 5 interrupts a run and resumes it from these checkpoints. What a checkpoint holds is
decided by `lib.train.fit`; files are written by `lib.files.atomic_write`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# write_json and provenance moved to lib.files and lib.results; they stay importable from here only
# until lib.evaluate imports them from there.
from lib.files import atomic_write, write_json  # noqa: F401
from lib.results import provenance  # noqa: F401

FORMAT = "imagenet-course-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is damaged, foreign, or does not match the run. The message says what to do."""


def save(path: str | os.PathLike, state: dict) -> None:
    """Save a checkpoint dictionary (tensors, numbers, strings, lists, dicts) atomically."""
    atomic_write(path, lambda file: torch.save({"format": FORMAT, **state}, file))


def load(path: str | os.PathLike) -> dict:
    """Load a checkpoint with `weights_only=True` (no code from the file is run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({first}); delete it or "
                              "choose another checkpoint folder") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this course's fit(); choose another checkpoint folder")
    return state
