"""Files written atomically: a crash midway leaves the old file, never a half-written one.

Checkpoints (`lib.checkpoint`), metrics files (`lib.results`) and sweep tables (`lib.run`) are all
written this way. Chapter 5 explains why it matters for long runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


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


def write_json(path: str | os.PathLike, payload, default=None) -> None:
    """Write a JSON file atomically; `default` is json.dumps's fallback for other objects."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=default) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
