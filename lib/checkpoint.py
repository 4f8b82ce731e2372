"""Checkpoints written atomically and read safely, and the provenance saved with every result.

Chapter 5 interrupts a run and resumes it from these checkpoints.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

FORMAT = "imagenet-course-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is damaged, foreign, or does not match the run. The message says what to do."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, then rename it over `path`.
    A crash midway leaves the old file untouched, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; results are ordinary files
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def write_json(path: str | os.PathLike, payload, default=None) -> None:
    """Write a JSON file atomically; `default` is json.dumps's fallback for other objects."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=default) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


def provenance(device: torch.device | str | None = None) -> dict:
    """Library versions, machine and time: saved beside every metrics file and checkpoint."""
    import numpy

    info = {
        "torch_version": str(torch.__version__),
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torchvision

        info["torchvision_version"] = str(torchvision.__version__)
    except ImportError:
        pass
    if device is not None:
        device = torch.device(device)
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
            info["cuda_version"] = torch.version.cuda
    return info
