"""Training: one `fit` for every chapter, `evaluate` and `predict`, and the command line.

Chapter 0 ("How this course runs") introduces `fit`; chapter 3 writes its loop out by hand;
chapter 5 interrupts and resumes it. Run `python -m lib.train --help` for the command line.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib import checkpoint, metrics, models
from lib import data as data_lib

DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """Every setting of a training run, in one place, with the reason for each default.

    The defaults are the course's CPU recipe for small images: they train the article's CNN on the
    generated dataset to its plateau in about a minute on two CPU cores (benchmarks/README.md).
    """

    epochs: int = 5  # a few passes suffice on 10,000 small images; more epochs need a longer schedule
    batch_size: int = 128  # large enough to keep two CPU cores busy, small enough for many updates
    lr: float = 2e-3  # peak learning rate; AdamW tolerates 1e-3 to 3e-3 on these models
    optimizer: str = "adamw"  # AdamW needs little tuning; "sgd" (with momentum) is ImageNet's classic
    momentum: float = 0.9  # for SGD only: the standard value since AlexNet
    weight_decay: float = 5e-4  # mild L2 pull on the weights; it barely matters in a 5-epoch run
    schedule: str = "onecycle"  # warm up for the first 20% of steps, then decay linearly to zero
    warmup: float = 0.2  # fraction of all steps spent warming up (onecycle and cosine)
    label_smoothing: float = 0.0  # 0 reproduces the article's plain cross-entropy
    augment: bool = True  # random 4-pixel crops and horizontal flips of the training images
    seed: int = 0  # fixes initial order, shuffling, augmentation and dropout
    device: str = "auto"  # cuda, then mps, then cpu
    amp: bool | None = None  # mixed precision: on by default on CUDA only (bfloat16 where supported)
    channels_last: bool | None = None  # NHWC memory layout: on by default on CUDA only
    compile: bool = False  # torch.compile: faster on a GPU after a slow first epoch
    num_workers: int | None = None  # DataLoader processes for datasets streamed from disk; None: one per core (max 8)

    def check(self) -> None:
        """Raise ValueError with a one-line message for any setting that cannot work."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a whole number of at least 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {self.warmup!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")


@dataclass
class FitResult:
    """What `fit` returns: the per-epoch history and a summary of this call."""

    history: list[dict]
    config: dict
    device: str
    seconds: float  # wall time of this call
    images_per_second: float  # training throughput over the epochs run in this call
    stopped_early: bool = False  # True when `stop_after` ended the run before `epochs`
    provenance: dict = field(default_factory=dict)


def pick_device(device: str = "auto") -> torch.device:
    """cuda if available, then mps, then cpu; or the named device, which must be available."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise ValueError(f"device {device!r} was asked for but this machine has none; use --device auto or cpu")
    return torch.device(device)


def _seed_for(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class LearningRateShape:
    """The learning-rate multiplier at each step: warm-up, then linear (onecycle) or cosine decay."""

    def __init__(self, schedule: str, total_steps: int, warmup: float):
        self.schedule, self.total, self.warm = schedule, max(1, total_steps), int(warmup * total_steps)

    def __call__(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        if step < self.warm:
            return (step + 1) / (self.warm + 1)
        progress = (step - self.warm) / max(1, self.total - self.warm)
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _progress(iterable, total: int, enabled: bool, description: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, leave=False, desc=description, mininterval=0.5)


HEADER = f"{'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'val_loss':>8} {'val_acc':>7} {'seconds':>7} {'images/s':>9}"


def format_row(row: dict) -> str:
    """One fixed-width line of the epoch table."""
    return (f"{row['epoch']:>5d} {row['train_loss']:>10.4f} {row['train_acc']:>9.2%} {row['val_loss']:>8.4f} "
            f"{row['val_acc']:>7.2%} {row['seconds']:>7.1f} {row['images_per_second']:>9,.0f}")


def fit(model: nn.Module, data: data_lib.Dataset, config: TrainConfig | None = None, *,
        checkpoint_dir: str | Path | None = None, resume: bool = False, stop_after: int | None = None,
        progress: bool = True, log=print, **settings) -> FitResult:
    """Train `model` on `data.train`, validating on `data.val` after every epoch. Defined in chapter 0.

    Settings are TrainConfig's fields, given as a config or as keywords (`epochs=3, lr=1e-3`).
    With `checkpoint_dir`, a checkpoint (model, optimizer, scheduler, random states, history) is
    written atomically after every epoch; `resume=True` continues from it and ends exactly where an
    uninterrupted run would. `stop_after=k` stops after k epochs of this call, as an interruption
    would. Prints one table row per epoch (and a progress bar within it when `progress`).
    """
    unknown = sorted(set(settings) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise TypeError(f"unknown fit setting(s) {unknown}; the settings are TrainConfig's fields")
    cfg = TrainConfig(**{**(asdict(config) if config else {}), **settings})
    cfg.check()
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be at least 1, got {stop_after}")
    device = pick_device(cfg.device)
    use_amp = device.type == "cuda" if cfg.amp is None else bool(cfg.amp and device.type == "cuda")
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last

    path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    saved = _checkpoint_to_resume(path, resume, cfg)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(model, cfg)
    train_loader = data_lib.loader(data, "train", cfg.batch_size, device, train=True, augment=cfg.augment,
                                   seed=cfg.seed, channels_last=channels_last, num_workers=cfg.num_workers)
    val_loader = data_lib.loader(data, "val", max(cfg.batch_size, 256), device, channels_last=channels_last,
                                 num_workers=cfg.num_workers)
    steps = len(train_loader) * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LearningRateShape(cfg.schedule, steps, cfg.warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[dict] = []
    start_epoch = 0
    if saved is not None:
        start_epoch, history = _restore(saved, model, optimizer, scheduler, scaler, device)
        log(f"resumed from {path} after epoch {start_epoch} of {cfg.epochs}")
    net = torch.compile(model) if cfg.compile else model

    started = time.perf_counter()
    train_images, train_seconds, stopped_early = 0, 0.0, False
    if start_epoch < cfg.epochs:
        log(HEADER)
        for row in history:
            log(format_row(row))
    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        torch.manual_seed(_seed_for(cfg.seed, epoch, 2))  # dropout and anything else that draws
        train_loader.set_epoch(epoch)
        net.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for x, y in _progress(train_loader, len(train_loader), progress, f"epoch {epoch + 1}"):
            with _autocast(device, use_amp):
                scores = net(x)
                loss = criterion(scores, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (scores.detach().argmax(1) == y).sum()
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds_training = time.perf_counter() - epoch_start
        val = evaluate(net, val_loader, device, use_amp)
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
               "val_loss": val["loss"], "val_acc": val["accuracy"], "seconds": time.perf_counter() - epoch_start,
               "images_per_second": seen / seconds_training, "lr": optimizer.param_groups[0]["lr"]}
        history.append(row)
        log(format_row(row))
        train_images += seen
        train_seconds += seconds_training
        if path is not None:
            _save(path, model, optimizer, scheduler, scaler, epoch + 1, history, cfg, device)
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after and epoch + 1 < cfg.epochs:
            stopped_early = True
            log(f"stopped after epoch {epoch + 1} of {cfg.epochs}" +
                (f"; resume from {path}" if path is not None else ""))
            break
    return FitResult(history=history, config=asdict(cfg), device=str(device),
                     seconds=time.perf_counter() - started,
                     images_per_second=train_images / train_seconds if train_seconds else 0.0,
                     stopped_early=stopped_early, provenance=checkpoint.provenance(device))


# Settings that must match for a checkpoint to be resumed (the others, like device, may change).
RESUME_MUST_MATCH = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule", "warmup",
                     "label_smoothing", "augment", "seed")


def _checkpoint_to_resume(path: Path | None, resume: bool, cfg: TrainConfig) -> dict | None:
    if path is None:
        if resume:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")
        return None
    if not path.exists():
        return None
    saved = checkpoint.load(path)
    if not resume:
        raise checkpoint.CheckpointError(
            f"{path} already holds a checkpoint (epoch {saved.get('epoch')} of {saved['config'].get('epochs')}); "
            "resume it (resume=True, --resume) or choose an empty checkpoint folder")
    different = [f"{k} {saved['config'].get(k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_MUST_MATCH
                 if saved["config"].get(k) != getattr(cfg, k)]
    if different:
        raise checkpoint.CheckpointError(f"{path} was made with other settings ({'; '.join(different)}); "
                                         "resume with the same settings or choose an empty checkpoint folder")
    return saved


def _save(path, model, optimizer, scheduler, scaler, epoch, history, cfg, device) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    checkpoint.save(path, {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "history": history,
        "config": asdict(cfg),
        "rng": rng,
        "provenance": checkpoint.provenance(device),
    })


def _restore(saved, model, optimizer, scheduler, scaler, device) -> tuple[int, list[dict]]:
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise checkpoint.CheckpointError(f"the checkpoint does not fit this model ({str(error).splitlines()[0]}); "
                                         "resume with the same model or choose an empty checkpoint folder") from None
    torch.set_rng_state(saved["rng"]["cpu"])
    if device.type == "cuda" and "cuda" in saved["rng"]:
        torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
    return int(saved["epoch"]), list(saved["history"])


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, amp: bool = False) -> dict:
    """Mean cross-entropy loss and accuracy of `model` over a loader."""
    model.eval()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), 0
    for x, y in loader:
        with _autocast(torch.device(device), amp):
            scores = model(x)
        loss_sum += nn.functional.cross_entropy(scores.float(), y, reduction="sum")
        correct += (scores.argmax(1) == y).sum()
        seen += len(y)
    return {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen}


@torch.no_grad()
def predict(model: nn.Module, data: data_lib.Dataset, split: str = "test", batch_size: int = 512,
            device: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, classes) and true labels (N,) for a split, both on the CPU."""
    device = next(model.parameters()).device if device == "auto" else pick_device(device)
    model.to(device).eval()
    scores, labels = [], []
    for x, y in data_lib.loader(data, split, batch_size, device):
        scores.append(model(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(scores), torch.cat(labels)


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see python -m lib.train --help)\n")


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = _Parser(prog="python -m lib.train", description="Train a model on a dataset; print one row "
                     "per epoch and write the test metrics as JSON.")
    add = parser.add_argument
    add("--dataset", default="shapes", help=f"one of {', '.join(data_lib.DATASETS)} (default shapes)")
    add("--model", default="seed_cnn", help="seed_cnn, small_resnet, or a torchvision name such as resnet18")
    add("--epochs", type=int, default=defaults.epochs)
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr)
    add("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    add("--schedule", choices=SCHEDULES, default=defaults.schedule)
    add("--weight-decay", type=float, default=defaults.weight_decay)
    add("--label-smoothing", type=float, default=defaults.label_smoothing)
    add("--no-augment", action="store_true", help="train without random crops and flips")
    add("--seed", type=int, default=defaults.seed)
    add("--device", choices=DEVICES, default=defaults.device)
    add("--compile", action="store_true", help="use torch.compile")
    add("--no-amp", action="store_true", help="no mixed precision on CUDA")
    add("--image-size", type=int, default=None, help="image side in pixels (default depends on the dataset)")
    add("--data-root", default=None, help="folder of a dataset read from disk")
    add("--n-train", type=int, default=10_000, help="training images to generate (shapes only)")
    add("--n-val", type=int, default=2_000, help="validation images to generate (shapes only)")
    add("--n-test", type=int, default=2_000, help="test images to generate (shapes only)")
    add("--download", action="store_true", help="download CIFAR-10 or Imagenette into --data-root if missing")
    add("--num-workers", type=int, default=defaults.num_workers,
        help="loader processes for streamed datasets (default: one per CPU core, at most 8)")
    add("--checkpoint-dir", default=None, help="write last.pt here after every epoch")
    add("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt")
    add("--stop-after", type=int, default=None, help="stop after N epochs of this run, as an interruption would")
    add("--metrics-out", default=None, help="write the metrics here as JSON")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (data_lib.DatasetError, models.ModelError, checkpoint.CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args) -> int:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                      schedule=args.schedule, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                      augment=not args.no_augment, seed=args.seed, device=args.device,
                      amp=False if args.no_amp else None, compile=args.compile, num_workers=args.num_workers)
    # Everything that can be checked before any work or any write is checked here.
    cfg.check()
    data_lib.check_name(args.dataset)
    models.check_name(args.model)
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise data_lib.DatasetError(f"data root {args.data_root} does not exist")
    for name in ("n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.image_size is not None and args.image_size < 8:
        raise ValueError(f"--image-size must be at least 8, got {args.image_size}")
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be at least 1, got {args.stop_after}")
    pick_device(cfg.device)
    if args.checkpoint_dir:
        _checkpoint_to_resume(Path(args.checkpoint_dir) / "last.pt", args.resume, cfg)
    elif args.resume:
        raise ValueError("--resume needs --checkpoint-dir")

    dataset = data_lib.load(args.dataset, args.data_root, image_size=args.image_size, seed=args.seed,
                            n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, download=args.download)
    print(dataset)
    model = models.build(args.model, dataset.num_classes, dataset.channels, dataset.image_size, seed=args.seed)
    result = fit(model, dataset, cfg, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                 stop_after=args.stop_after, progress=not args.quiet)
    if result.stopped_early:
        return 0
    scores, labels = predict(model, dataset, "test")
    summary = metrics.report(scores, labels, dataset.num_classes)
    payload = {
        "dataset": args.dataset, "model": args.model, "epochs": cfg.epochs,
        "test_accuracy": summary["accuracy"], **{k: v for k, v in summary.items() if k != "accuracy"},
        "images_per_second": result.images_per_second, "seconds": result.seconds, "device": result.device,
        "torch_version": str(torch.__version__), "seed": cfg.seed, "parameters": models.count_parameters(model),
        "image_size": dataset.image_size, "train_size": len(dataset.train), "test_size": len(dataset.test),
        "config": result.config, "history": result.history, "provenance": result.provenance,
    }
    print(f"test accuracy {summary['accuracy']:.2%}, weighted F1 {summary['f1_weighted']:.4f}, "
          f"macro F1 {summary['f1_macro']:.4f}")
    if args.metrics_out:
        checkpoint.write_json(args.metrics_out, payload)
        print(f"metrics written to {args.metrics_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
