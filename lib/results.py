"""The results of a run: a typed record of its metrics file, and the provenance saved with it.

`python -m lib.train --metrics-out FILE` writes one `RunRecord` as JSON: the test metrics, the
per-epoch history, the settings (a `TrainConfig`), how the dataset was loaded, and where and with
what the run was made (`provenance`). Chapter 5's results page reads such files back with `load`
and rebuilds each run's command line with `RunRecord.command_line`.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from lib import files
from lib.config import TrainConfig

# Values renamed since older files were written: the same setting under its new name.
RENAMED_SETTINGS = {"schedule": {"onecycle": "linear"}}
# Keys written for readers of the JSON that the record computes from its fields.
DERIVED_KEYS = ("epochs", "seed", "torch_version")
SCORES = ("test_accuracy", "top5_accuracy", "precision_macro", "precision_weighted", "recall_macro",
          "recall_weighted", "f1_macro", "f1_weighted")


class ResultsError(ValueError):
    """A metrics file is missing, damaged or not one of this course's. The message says what to do."""


def provenance(device=None) -> dict:
    """Library versions, machine and time: saved beside every metrics file and checkpoint.
    Chapter 5's results page shows them."""
    import numpy
    import torch

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


@dataclass
class RunRecord:
    """One run's results, as its metrics file holds them. Chapter 5's results page reads them.

    The scores are those of the `split` that was tested (the test split after training). `history`
    holds `fit`'s rows, one per epoch (`epoch`, `train_loss`, `train_acc`, `val_loss`, `val_acc`
    (None without a validation split), `seconds`, `images_per_second`, `lr`). `data` holds the
    arguments the dataset was loaded with (`data_root`, `n_train`, `val_fraction`, ...).
    """

    dataset: str
    model: str
    test_accuracy: float
    precision_macro: float
    precision_weighted: float
    recall_macro: float
    recall_weighted: float
    f1_macro: float
    f1_weighted: float
    images_per_second: float
    seconds: float
    device: str
    parameters: int
    image_size: int
    test_size: int
    top5_accuracy: float | None = None
    split: str = "test"
    train_size: int | None = None
    val_size: int | None = None
    data: dict = field(default_factory=dict)
    config: TrainConfig | None = None
    history: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # any other keys found in the file, kept as they were

    @property
    def epochs(self) -> int | None:
        return self.config.epochs if self.config is not None else None

    @property
    def best_epoch(self) -> dict | None:
        """The history row with the highest validation accuracy (None without validation)."""
        rows = [row for row in self.history if row.get("val_acc") is not None]
        return max(rows, key=lambda row: row["val_acc"]) if rows else None

    def to_dict(self) -> dict:
        """The JSON form: every field, plus `epochs`, `seed` and `torch_version` for readers."""
        out = {"dataset": self.dataset, "model": self.model, "split": self.split, "epochs": self.epochs}
        out.update({name: getattr(self, name) for name in SCORES if getattr(self, name) is not None})
        for f in fields(self):
            if f.name in out or f.name in ("config", "history", "provenance", "extra"):
                continue
            out[f.name] = getattr(self, f.name)
        out["torch_version"] = self.provenance.get("torch_version")
        out["seed"] = self.config.seed if self.config is not None else None
        out["config"] = self.config.as_dict() if self.config is not None else None
        out["history"] = self.history
        out["provenance"] = self.provenance
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> RunRecord:
        """A record from its JSON form. Settings renamed since the file was written are read under
        their new names (RENAMED_SETTINGS). Raises ResultsError when a needed key is missing."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known and k != "extra"}
        extra = {k: v for k, v in values.items() if k not in known and k not in DERIVED_KEYS}
        missing = [f.name for f in fields(cls)
                   if f.name not in given and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ResultsError(f"a metrics file needs {', '.join(missing)}; this one has only "
                               f"{', '.join(values)}")
        if given.get("config") is not None:
            settings = dict(given["config"])
            for name, renamed in RENAMED_SETTINGS.items():
                if settings.get(name) in renamed:
                    settings[name] = renamed[settings[name]]
            try:
                given["config"] = TrainConfig.from_dict(settings)
            except (TypeError, ValueError) as error:
                raise ResultsError(f"the settings in a metrics file do not fit TrainConfig ({error})") from None
        return cls(**given, extra=extra)

    def save(self, path: str | os.PathLike) -> None:
        """Write the record as JSON, atomically (an old file survives a crash midway)."""
        files.write_json(path, self.to_dict())

    def command_line(self, data_root: str | None = None, metrics_out: str | None = None,
                     threads: bool = True) -> str:
        """The command that repeats this run: `python -m lib.train` with the dataset, the model,
        how the data was loaded and every setting. `data_root` replaces the folder the run read
        (None: the recorded one); with `threads`, the number of CPU threads the run used is set
        first (OMP_NUM_THREADS), as its speed depends on it. Chapter 5's results page prints it."""
        if self.config is None:
            raise ResultsError(f"the record of {self.model} on {self.dataset} has no training settings: it "
                               "was not made by python -m lib.train")
        options = {"dataset": self.dataset, "model": self.model}
        loaded = dict(self.data)
        root = data_root if data_root is not None else loaded.pop("data_root", None)
        loaded.pop("data_root", None)
        options["data_root"] = root
        loaded.pop("image_size", None)
        options["image_size"] = self.image_size  # the size it ran at, however it was chosen
        options.update(loaded)
        command = self.config.to_command_line(**options)
        if metrics_out is not None:
            command += f" --metrics-out {shlex.quote(str(metrics_out))}"
        count = self.provenance.get("cpu_threads")
        return f"OMP_NUM_THREADS={count} {command}" if threads and count else command


def load(path: str | os.PathLike) -> RunRecord:
    """Read one metrics file (chapter 5's results page). Raises ResultsError (one line) naming the
    file when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"no metrics file at {path}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path} is not a readable JSON file ({error}); write it again") from None
    if not isinstance(values, dict):
        raise ResultsError(f"{path} holds no metrics record (a JSON object)")
    try:
        return RunRecord.from_dict(values)
    except ResultsError as error:
        raise ResultsError(f"{path}: {error}") from None


def load_folder(folder: str | os.PathLike) -> dict[str, RunRecord]:
    """Every metrics file (`*.json`) in a folder, by file name without `.json`, sorted by name.
    Chapter 5's results page reads its recorded runs with it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"no folder of metrics files at {folder}")
    return {path.stem: load(path) for path in sorted(folder.glob("*.json"))}
