"""Training: one `fit` for every chapter, the one-epoch step it repeats, `evaluate` and `predict`.

Chapter 0 ("How this course runs") introduces `fit`; chapter 3 writes its loop out by hand, which
`train_epoch` follows step for step; chapter 5 interrupts and resumes it. The settings are
`lib.config.TrainConfig` (also importable from here); the command line `python -m lib.train` lives
in `lib.cli`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from lib import checkpoint, distributed, results
from lib import data as data_lib
from lib.config import DEVICES, OPTIMIZERS, SCHEDULES, TrainConfig
from lib.seeds import Stream, seed_for

__all__ = ["DEVICES", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "FitResult", "Setup", "Precision",
           "LearningRateShape", "pick_device", "prepare", "fit", "train_epoch", "evaluate", "predict",
           "format_row", "HEADER", "RESUME_MUST_MATCH"]

# Settings that must match for a checkpoint to be resumed (the others, like device, may change).
RESUME_MUST_MATCH = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule", "warmup",
                     "label_smoothing", "augment", "seed", "scale_lr")


@dataclass
class FitResult:
    """What `fit` returns: the per-epoch history and a summary of this call."""

    history: list[dict]
    config: TrainConfig
    device: str
    seconds: float  # wall time of this call
    images_per_second: float  # training throughput over the epochs run in this call
    stopped_early: bool = False  # True when `stop_after` ended the run before `epochs`
    provenance: dict = field(default_factory=dict)


def pick_device(device: str = "auto") -> torch.device:
    """cuda if available, then mps, then cpu; or the named device, which must be available.
    Chapter 0."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise ValueError(f"device {device!r} was asked for but this machine has none; use --device auto or cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------------------------
# Everything decided before any work: settings, device, checkpoint


@dataclass
class Setup:
    """A training run's settings checked, its device picked and its checkpoint read, once, before
    any work (`prepare` makes it; `fit` uses it)."""

    config: TrainConfig
    device: torch.device
    checkpoint_path: Path | None = None
    saved: dict | None = None  # the checkpoint to resume from
    stop_after: int | None = None
    context: distributed.Context = field(default_factory=distributed.Context)  # this process's place under torchrun


def prepare(config: TrainConfig | None = None, *, checkpoint_dir: str | Path | None = None, resume: bool = False,
            stop_after: int | None = None, **settings) -> Setup:
    """Check the settings (`TrainConfig.check`), pick the device and read the checkpoint to
    resume, raising a one-line error for anything that cannot work. Settings are TrainConfig's
    fields, as a config or as keywords (`epochs=3`). The command line calls it before loading any
    data; `fit` calls it when not given a Setup. Chapter 5 resumes a run through it.
    Under torchrun it also reads this process's place (lib.distributed: a bad launch is a
    LaunchError), takes its GPU (cuda:LOCAL_RANK) and refuses a checkpoint written by another
    number of processes."""
    unknown = sorted(set(settings) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise TypeError(f"unknown fit setting(s) {unknown}; the settings are TrainConfig's fields")
    cfg = TrainConfig(**{**(config.as_dict() if config else {}), **settings}).check()
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be a whole number of at least 1, got {stop_after!r}")
    context = distributed.from_environment()
    device = distributed.choose_device(context, cfg.device) if context.launched else pick_device(cfg.device)
    path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    return Setup(cfg, device, path, _checkpoint_to_resume(path, resume, cfg, context), stop_after, context)


def _checkpoint_to_resume(path: Path | None, resume: bool, cfg: TrainConfig,
                          context: distributed.Context) -> dict | None:
    if path is None:
        if resume:
            raise ValueError("resume needs a checkpoint folder to resume from: pass checkpoint_dir= (--checkpoint-dir)")
        return None
    if not path.exists():
        return None
    saved = checkpoint.load(path)
    if not resume:
        raise checkpoint.CheckpointError(
            f"{path} already holds a checkpoint (epoch {saved.get('epoch')} of {saved['config'].get('epochs')}); "
            "resume it (resume=True, --resume) or choose an empty checkpoint folder")
    distributed.check_resume(saved.get("world_size"), context, path)
    defaults = TrainConfig()  # a setting newer than the checkpoint had its default then
    different = [f"{k} {saved['config'].get(k, getattr(defaults, k))!r} -> {getattr(cfg, k)!r}"
                 for k in RESUME_MUST_MATCH if saved["config"].get(k, getattr(defaults, k)) != getattr(cfg, k)]
    if different:
        raise checkpoint.CheckpointError(f"{path} was made with other settings ({'; '.join(different)}); "
                                         "resume with the same settings or choose an empty checkpoint folder")
    return saved


# ---------------------------------------------------------------------------------------------
# The pieces of a training step, each decided once per run


@dataclass
class Precision:
    """Mixed precision for one run, decided once: whether to autocast, to which dtype, and the loss
    scaler that float16 (but not bfloat16) needs. Off on the CPU and MPS. README's GPU notes and
    chapter 5 explain mixed precision."""

    device: torch.device
    dtype: torch.dtype | None = None  # None: full precision
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def choose(cls, device: torch.device, amp: bool | None) -> Precision:
        """On CUDA (unless amp is False): bfloat16 where supported, else float16 with a scaler."""
        if device.type != "cuda" or amp is False:
            return cls(device)
        if torch.cuda.is_bf16_supported():
            return cls(device, torch.bfloat16)
        return cls(device, torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self):
        """The context the forward pass runs in."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of `loss`, then one optimizer step (through the scaler for float16)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


class LearningRateShape:
    """The learning-rate multiplier at each step: a linear warm-up over the first `warmup` of the
    steps, then a linear ("linear") or cosine ("cosine") decay to zero; 1 throughout for "constant"."""

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


def _make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)


def train_epoch(model: nn.Module, batches, optimizer: torch.optim.Optimizer, loss_fn, *,
                scheduler=None, precision: Precision | None = None) -> tuple[float, float, int]:
    """One pass over the training batches, the loop of chapter 3: forward pass, loss, clear the
    gradients, backward pass, update the weights (then one step of the learning-rate schedule).
    Returns (mean loss, accuracy, images seen). Loss and accuracy are summed on the device and
    read once at the end, so that the loop never waits for the device."""
    precision = precision or Precision(next(model.parameters()).device)
    model.train()
    loss_sum = correct = None
    seen = 0
    for x, y in batches:
        with precision.autocast():
            scores = model(x)  # forward pass
            loss = loss_fn(scores, y)  # loss
        optimizer.zero_grad(set_to_none=True)  # clear the previous batch's gradients
        precision.backward_and_step(loss, optimizer)  # this batch's gradients, then the update
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            if loss_sum is None:
                loss_sum, correct = torch.zeros((), device=y.device), torch.zeros((), device=y.device, dtype=torch.long)
            loss_sum.add_(loss.float(), alpha=len(y))
            correct.add_((scores.argmax(1) == y).sum())
        seen += len(y)
    if seen == 0:
        raise ValueError("train_epoch got no batches: the training split is empty")
    return loss_sum.item() / seen, correct.item() / seen, seen


@torch.no_grad()
def evaluate(model: nn.Module, batches, precision: Precision | None = None) -> dict:
    """Mean cross-entropy loss and accuracy of `model` over batches (a loader). Chapter 0."""
    precision = precision or Precision(next(model.parameters()).device)
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in batches:
        with precision.autocast():
            scores = model(x)
        loss_sum += nn.functional.cross_entropy(scores.float(), y, reduction="sum")
        correct += (scores.argmax(1) == y).sum()
        seen += len(y)
    if seen == 0:
        raise ValueError("evaluate got no batches: the split is empty")
    return {"loss": float(loss_sum) / seen, "accuracy": int(correct) / seen}


def _progress(iterable, total: int, enabled: bool, description: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, leave=False, desc=description, mininterval=0.5)


HEADER = f"{'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'val_loss':>8} {'val_acc':>7} {'seconds':>7} {'images/s':>9}"


def format_row(row: dict) -> str:
    """One fixed-width line of the epoch table (a dash where a run has no validation)."""
    val_loss = f"{row['val_loss']:>8.4f}" if row.get("val_loss") is not None else f"{'-':>8}"
    val_acc = f"{row['val_acc']:>7.2%}" if row.get("val_acc") is not None else f"{'-':>7}"
    return (f"{row['epoch']:>5d} {row['train_loss']:>10.4f} {row['train_acc']:>9.2%} {val_loss} "
            f"{val_acc} {row['seconds']:>7.1f} {row['images_per_second']:>9,.0f}")


# ---------------------------------------------------------------------------------------------
# fit


def fit(model: nn.Module, data: data_lib.Dataset, config: TrainConfig | None = None, *,
        checkpoint_dir: str | Path | None = None, resume: bool = False, stop_after: int | None = None,
        progress: bool = True, log=print, setup: Setup | None = None, **settings) -> FitResult:
    """Train `model` on `data.train`, validating on `data.val` after every epoch. Defined in chapter 0.

    Settings are TrainConfig's fields, given as a config or as keywords (`epochs=3, lr=1e-3`).
    With `checkpoint_dir`, a checkpoint (model, optimizer, scheduler, random states, history) is
    written atomically after every epoch; `resume=True` continues from it and ends exactly where an
    uninterrupted run would. `stop_after=k` stops after k epochs of this call, as an interruption
    would. `setup` (from `prepare`) replaces all of these when the caller checked them already.
    Without a validation split (`data.val` empty) it trains without validation and says so; the
    rows' `val_loss` and `val_acc` are then None. Prints one table row per epoch (and a progress
    bar within it when `progress`).

    Started by torchrun (several processes), it trains with DistributedDataParallel as
    lib.distributed lays out: each process reads its shard of every epoch (`batch_size` images per
    process and step), draws its own crops, flips and dropout, the table's numbers are over all
    processes, and only the main process prints and writes the checkpoint. The page "Training on
    the full ImageNet" explains it.
    """
    if setup is None:
        setup = prepare(config, checkpoint_dir=checkpoint_dir, resume=resume, stop_after=stop_after, **settings)
    elif config is not None or settings or checkpoint_dir is not None or resume or stop_after is not None:
        raise TypeError("give fit either a setup or the settings (config, keywords, checkpoint_dir, resume, "
                        "stop_after), not both")
    with distributed.joined(setup.context, setup.device) as context:
        return _fit(model, data, setup, context, progress and context.is_main, distributed.main_only(log, context))


def _fit(model: nn.Module, data: data_lib.Dataset, setup: Setup, context: distributed.Context, progress: bool,
         log) -> FitResult:
    cfg, device = setup.config, setup.device
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    precision = Precision.choose(device, cfg.amp)
    world, reduce_on = context.world_size, distributed.reduction_device(context, device)
    lr = distributed.process_lr(cfg.lr, cfg.batch_size, world, cfg.scale_lr)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(model, cfg, lr)
    train_batches = distributed.loader(data, "train", cfg.batch_size, device, context, train=True,
                                       augment=cfg.augment, seed=cfg.seed, channels_last=channels_last,
                                       num_workers=cfg.num_workers)
    val_batches = None
    if len(data.val):
        val_batches = distributed.loader(data, "val", max(cfg.batch_size, 256), device, context,
                                         channels_last=channels_last, num_workers=cfg.num_workers)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LearningRateShape(cfg.schedule, len(train_batches) * cfg.epochs, cfg.warmup))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[dict] = []
    start_epoch = 0
    if setup.saved is not None:
        start_epoch, history = _restore(setup.saved, model, optimizer, scheduler, precision, device)
    distributed.check_same_start(start_epoch, setup.checkpoint_path, context, reduce_on)
    if setup.saved is not None:
        log(f"resumed from {setup.checkpoint_path} after epoch {start_epoch} of {cfg.epochs}")
    if context.distributed:
        log(f"{world} process{'es' if world != 1 else ''} ({context.backend}), each {cfg.batch_size} images per step: global batch "
            f"{cfg.batch_size * world}; lr {lr:g}" + (f" (linear scaling rule: {cfg.lr:g} x {world})"
                                                       if cfg.scale_lr else " (not scaled: --scale-lr scales it)"))
    # the training step goes through DistributedDataParallel; evaluation uses the model itself,
    # whose batch-norm statistics are the main process's after every epoch (sync_buffers)
    net = torch.compile(model) if cfg.compile else model
    train_net = net
    if context.distributed:
        train_net = distributed.wrap(model, context, device)
        train_net = torch.compile(train_net) if cfg.compile else train_net
    own_seed = distributed.rank_seed(cfg.seed, context.rank, world)

    started = time.perf_counter()
    train_images, train_seconds, stopped_early = 0, 0.0, False
    if start_epoch < cfg.epochs:
        if val_batches is None:
            log(f"no validation split ({data.name}: {data.info.get('val', 'empty')}): training without "
                "validation; val_loss and val_acc stay empty")
        log(HEADER)
        for row in history:
            log(format_row(row))
    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        torch.manual_seed(seed_for(own_seed, epoch, Stream.DROPOUT))
        train_batches.set_epoch(epoch)
        batches = _progress(train_batches, len(train_batches), progress, f"epoch {epoch + 1}")
        train_loss, train_acc, seen = train_epoch(train_net, batches, optimizer, loss_fn, scheduler=scheduler,
                                                  precision=precision)
        if world > 1:
            means, seen = distributed.reduce_means({"loss": train_loss, "acc": train_acc}, seen, reduce_on)
            train_loss, train_acc, seen = means["loss"], means["acc"], int(seen)
            distributed.sync_buffers(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds_training = time.perf_counter() - epoch_start
        val = _validate(net, val_batches, precision, context, reduce_on)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": val["loss"], "val_acc": val["accuracy"], "seconds": time.perf_counter() - epoch_start,
               "images_per_second": seen / seconds_training, "lr": optimizer.param_groups[0]["lr"]}
        history.append(row)
        log(format_row(row))
        train_images += seen
        train_seconds += seconds_training
        if setup.checkpoint_path is not None and context.is_main:
            _save(setup.checkpoint_path, model, optimizer, scheduler, precision, epoch + 1, history, cfg, device,
                  world)
        if setup.stop_after is not None and epoch + 1 - start_epoch >= setup.stop_after and epoch + 1 < cfg.epochs:
            stopped_early = True
            log(f"stopped after epoch {epoch + 1} of {cfg.epochs}" +
                (f"; resume from {setup.checkpoint_path}" if setup.checkpoint_path is not None else ""))
            break
    provenance = results.provenance(device)
    if context.launched:
        provenance.update(world_size=world, backend=context.backend)
    return FitResult(history=history, config=cfg, device=str(device), seconds=time.perf_counter() - started,
                     images_per_second=train_images / train_seconds if train_seconds else 0.0,
                     stopped_early=stopped_early, provenance=provenance)


def _validate(net, val_batches, precision, context, reduce_on) -> dict:
    """`evaluate` on the validation batches: in one process directly; in several, each on its shard,
    then the means over all validation images."""
    if val_batches is None:
        return {"loss": None, "accuracy": None}
    if context.world_size == 1:
        return evaluate(net, val_batches, precision)
    mine = evaluate(net, val_batches, precision) if val_batches.images else {"loss": 0.0, "accuracy": 0.0}
    return distributed.reduce_means(mine, val_batches.images, reduce_on)[0]


def _save(path, model, optimizer, scheduler, precision, epoch, history, cfg, device, world_size: int = 1) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    checkpoint.save(path, {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": precision.scaler.state_dict() if precision.scaler is not None else {},
        "history": history,
        "config": cfg.as_dict(),
        "rng": rng,
        "provenance": results.provenance(device),
        "world_size": world_size,  # a run of another number of processes cannot resume it
    })


def _restore(saved, model, optimizer, scheduler, precision, device) -> tuple[int, list[dict]]:
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler") and precision.scaler is not None:
            precision.scaler.load_state_dict(saved["scaler"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise checkpoint.CheckpointError(f"the checkpoint does not fit this model ({str(error).splitlines()[0]}); "
                                         "resume with the same model or choose an empty checkpoint folder") from None
    torch.set_rng_state(saved["rng"]["cpu"])
    if device.type == "cuda" and "cuda" in saved["rng"]:
        torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
    return int(saved["epoch"]), list(saved["history"])


@torch.no_grad()
def predict(model: nn.Module, data: data_lib.Dataset, split: str = "test", batch_size: int = 512,
            device: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, classes) and true labels (N,) for a split, both on the CPU. `device=None` runs on
    the device the model is on; a name ("auto", "cpu", "cuda", "mps") moves the model there first,
    as `pick_device` chooses. Chapter 0."""
    device = next(model.parameters()).device if device is None else pick_device(device)
    model.to(device).eval()
    scores, labels = [], []
    for x, y in data_lib.loader(data, split, batch_size, device):
        scores.append(model(x).float().cpu())
        labels.append(y.cpu())
    if not scores:
        raise ValueError(f"the {split} split of {data.name} is empty: nothing to predict")
    return torch.cat(scores), torch.cat(labels)


if __name__ == "__main__":
    from lib import cli

    sys.exit(cli.train_main())
