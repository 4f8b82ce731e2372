"""The settings of a training run: `TrainConfig`, the one owner of their rules and their flags.

Chapter 0 ("How this course runs") lists the settings; chapter 5 changes them one at a time. Every
training setting is a field of `TrainConfig`, with its default and the reason for it. The rules a
setting must obey live in `TrainConfig.check` and nowhere else: `lib.train.fit`, the command line
(`python -m lib.train`) and the notebooks' parameter check (`lib.params`) all ask it. The command
line's flags are derived from the fields (`add_arguments`), and a config writes its own command line
(`to_command_line`), so the two cannot drift apart.

This module imports nothing heavy (no torch), so that checking a notebook's parameters is quick.
"""

from __future__ import annotations

import argparse
import functools
import math
import shlex
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES}
PROGRAM = "python -m lib.train"


def _setting(default, help: str):  # noqa: A002 - the word argparse uses
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a training run, in one place, with the reason for each default. Chapter 0
    lists them; chapter 5 changes them one at a time.

    The defaults are the course's CPU recipe for small images: they train the article's CNN on the
    generated dataset to its plateau in about a minute on two CPU cores (benchmarks/README.md).
    Call `check()` for a one-line ValueError on any setting that cannot work.
    """

    # a few passes suffice on 10,000 small images; more epochs need a longer schedule
    epochs: int = _setting(5, "passes over the training set")
    # large enough to keep two CPU cores busy, small enough for many updates
    batch_size: int = _setting(128, "images per update")
    # peak learning rate; AdamW tolerates 1e-3 to 3e-3 on these models
    lr: float = _setting(2e-3, "peak learning rate")
    # AdamW needs little tuning; "sgd" (with Nesterov momentum) is ImageNet's classic
    optimizer: str = _setting("adamw", "the optimizer")
    # for SGD only: the standard value since AlexNet
    momentum: float = _setting(0.9, "SGD's momentum, in [0, 1) (0: plain SGD)")
    # mild L2 pull on the weights; it barely matters in a 5-epoch run
    weight_decay: float = _setting(5e-4, "weight decay (decoupled for AdamW)")
    # warm up for the first `warmup` of the steps, then decay linearly to zero
    schedule: str = _setting("linear", "learning-rate shape after the warm-up: linear or cosine decay to "
                                       "zero, or constant (no warm-up)")
    # fraction of all steps spent warming up (linear and cosine)
    warmup: float = _setting(0.2, "fraction of the steps spent warming up, in [0, 1)")
    # 0 reproduces the article's plain cross-entropy
    label_smoothing: float = _setting(0.0, "label smoothing of the cross-entropy, in [0, 1)")
    # random 4-pixel crops and horizontal flips of the training images
    augment: bool = _setting(True, "random crops and flips of the training images")
    # fixes the validation split, initial order, shuffling, augmentation and dropout
    seed: int = _setting(0, "random seed (a whole number >= 0)")
    # cuda, then mps, then cpu
    device: str = _setting("auto", "where to train (auto: cuda, then mps, then cpu)")
    # mixed precision: on by default on CUDA only (bfloat16 where supported)
    amp: bool | None = _setting(None, "mixed precision (default: on CUDA only)")
    # NHWC memory layout: on by default on CUDA only
    channels_last: bool | None = _setting(None, "channels-last memory layout (default: on CUDA only)")
    # torch.compile: faster on a GPU after a slow first epoch
    compile: bool = _setting(False, "torch.compile the model")
    # DataLoader processes for datasets streamed from disk; None: one per core (max 8)
    num_workers: int | None = _setting(None, "loader processes for datasets streamed from disk "
                                             "(default: one per CPU core, at most 8)")
    # under torchrun: the global batch is batch_size times the number of processes (Goyal et al. 2017)
    scale_lr: bool = _setting(False, "under torchrun, multiply lr by the number of processes (the linear "
                                     "scaling rule for the larger global batch; off: lr as given)")

    def check(self) -> TrainConfig:
        """Raise ValueError with a one-line message for any setting that cannot work; return self."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name))
        whole = {"epochs": 1, "batch_size": 1, "seed": 0}
        for name, floor in whole.items():
            if getattr(self, name) < floor:
                raise ValueError(f"{name} must be a whole number of at least {floor}, got {getattr(self, name)!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.schedule == "onecycle":
            raise ValueError("schedule 'onecycle' is now called 'linear' (warm-up, then linear decay to zero); "
                             "use schedule='linear' (--schedule linear)")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        for name in ("momentum", "warmup", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be at least 0, got {self.num_workers!r}")
        return self

    # -- the command line, derived from the fields ---------------------------------------------

    def to_args(self, changed_only: bool = False) -> list[str]:
        """The flags that give this config on the command line (`python -m lib.train`), every
        setting or, with `changed_only`, those that differ from the defaults. None is left out
        (it means "the default for the device")."""
        defaults = TrainConfig()
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (changed_only and value == getattr(defaults, f.name)):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + f.name.replace("_", "-"))
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    def to_command_line(self, *, program: str = PROGRAM, changed_only: bool = False, **options) -> str:
        """This config as one shell command line: `program`, then `options` (keywords such as
        dataset="cifar10", data_root="~/data" become `--dataset cifar10 --data-root ~/data`, in
        the order given; True becomes a bare flag, None and False are left out), then the
        settings (`to_args`). Chapter 5's results page prints these to reproduce its runs."""
        words = program.split()
        for name, value in options.items():
            if value is None or value is False:
                continue
            words.append("--" + name.replace("_", "-"))
            if value is not True:
                words.append(str(value))
        words += self.to_args(changed_only)
        return " ".join(_quote(word) for word in words)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one flag per field to `parser` (`--batch-size`, `--augment/--no-augment`, ...),
        with the field's default, type, choices and help."""
        hints = _field_types()
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            kind, optional = hints[f.name]
            text = f.metadata.get("help", "")
            default = f.default if f.default is not MISSING else None
            if kind is bool:
                suffix = "" if default is None else f" (default: {'yes' if default else 'no'})"
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                    help=text + suffix)
            else:
                parser.add_argument(flag, type=kind, default=default, choices=CHOICES.get(f.name),
                                    metavar=None if f.name in CHOICES else f.name.upper(),
                                    help=text + ("" if optional else f" (default: {default})"))

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> TrainConfig:
        """The config given by parsed command-line flags (those `add_arguments` added)."""
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from a dict such as `asdict(config)` read back from a JSON file. Unknown keys
        raise ValueError; missing ones take their defaults."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; the settings are "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**values)

    def as_dict(self) -> dict:
        """The settings as a plain dict (what checkpoints and metrics files store)."""
        return asdict(self)


def setting_names() -> tuple[str, ...]:
    """The names of TrainConfig's fields."""
    return tuple(f.name for f in fields(TrainConfig))


@functools.lru_cache(maxsize=1)
def _field_types() -> dict[str, tuple[type, bool]]:
    """Field name -> (its base type, whether None is allowed), from the annotations."""

    result = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        result[name] = (args[0], True) if args else (hint, False)
    return result


def _quote(word: str) -> str:
    """Shell quoting that leaves a leading ~/ unquoted, so that the shell still expands it."""
    if word.startswith("~/"):
        return "~/" + shlex.quote(word[2:])
    return shlex.quote(word)


def _check_type(name: str, value) -> None:
    kind, optional = _field_types()[name]
    if value is None and optional:
        return
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        article = "a whole number" if kind is int else "a number" if kind is float else f"a {kind.__name__}"
        raise ValueError(f"{name} must be {article}{' or None' if optional else ''}, got {value!r}")
