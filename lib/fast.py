"""A fast CIFAR-10 recipe: the ingredients of the quickest published trainings, one switch each.

Chapter 5's results page ("Results on real data", section "A fast recipe, taught") explains every
ingredient and measures what each one buys by ablation (`ablate`); `benchmarks/fast_cifar10.py`
runs it on the real CIFAR-10.

The recipe follows airbench94 (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv:2404.00498), which builds on Page (2018) and tysam-code's hlb-CIFAR10 (2023): a small
batch-normalised network whose first layer is fixed to whiten 2x2 patches, data kept on the
training device as uint8, label smoothing, a triangular learning-rate schedule, lookahead
(an exponential moving average pulled back into the weights), alternating flips and test-time
flips and shifts. The code is the course's own; `RECIPE` holds every setting in one place.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lib import data as data_lib
from lib import metrics, seeds
from lib.seeds import Stream

# ---------------------------------------------------------------------------------------------
# The settings, in one place.
#
# Evidence: these are airbench94's published settings (the `airbench` package 0.1.8,
# lib_airbench94.py; Jordan 2024, arXiv:2404.00498), where they reach 94.01% mean test accuracy
# over 1,000 runs on the original CIFAR-10 (all 50,000 training images, 9.9 epochs, 3.83 s on one
# A100). The course did not tune them (tuning on the test set is what a record chase does; we only
# copy the result). What they reach here, on the JPEG re-encoding of CIFAR-10 and on a CPU, is
# measured by benchmarks/fast_cifar10.py and recorded in
# chapters/results/cifar10/fast/cifar10_fast_recipe.json.
# The switches below the line turn single ingredients off for the ablation (`INGREDIENTS`).

RECIPE: dict = {
    # -- the network
    "widths": (64, 256, 256),  # channels of the three convolution groups (each halves the image)
    "whiten_patch": 2,  # side of the image patches the fixed first layer whitens (2x2x3 = 12 numbers)
    "whiten_eps": 5e-4,  # added to the patch covariance's eigenvalues before dividing by their root
    "whiten_images": 5000,  # training images whose patches estimate the covariance
    "bn_momentum": 0.4,  # weight of each new batch in BatchNorm's running statistics (PyTorch's sense)
    "logit_scale": 1 / 9,  # the final scores are multiplied by this: a colder start, calmer early steps
    # -- the optimiser: Nesterov SGD with settings expressed per 1,024 examples (see `sgd_settings`)
    "epochs": 9.9,  # passes over the training images; fractions allowed (the last one is cut short)
    "batch_size": 1024,  # images per step
    "lr": 11.5,  # learning rate per 1,024 examples, before dividing by the momentum's gain
    "momentum": 0.85,  # Nesterov momentum
    "weight_decay": 0.0153,  # weight decay per 1,024 examples, independent of the learning rate
    "lr_start": 0.2,  # the schedule starts at this fraction of the peak learning rate ...
    "lr_peak_at": 0.23,  # ... rises linearly to the peak at this fraction of all steps ...
    "lr_end": 0.07,  # ... and falls linearly to this fraction at the last step
    "whiten_bias_epochs": 3,  # the whitening layer's bias trains this many epochs, then is frozen
    "lookahead_every": 5,  # steps between two lookahead updates
    "lookahead_decay": 0.95**5,  # the moving average's decay at the end; it grows as progress**3
    # -- the data
    "translate": 2,  # random shifts of up to this many pixels (reflection padding, then a crop)
    # -- ingredients, one switch each (the ablation turns them off one at a time)
    "whiten": True,  # first layer = fixed patch-whitening filters (False: an ordinary trained conv)
    "dirac": True,  # convolutions start as partial identities (False: PyTorch's default init)
    "bias_lr_scale": 64.0,  # BatchNorm biases learn this many times faster (1: like every weight)
    "label_smoothing": 0.2,  # share of the target spread over all classes (0: plain cross-entropy)
    "lookahead": True,  # pull the weights back to their moving average every few steps
    "alt_flip": True,  # flip each image on alternate epochs (False: a fresh coin per image per epoch)
    "tta_level": 2,  # test-time views: 0 the image, 1 + its mirror, 2 + mirrors shifted by one pixel
}

# What the ablation removes: ingredient name -> (the settings without it, what it does in one line).
INGREDIENTS: dict[str, tuple[dict, str]] = {
    "patch whitening": ({"whiten": False}, "first layer fixed to decorrelate 2x2 patches"),
    "identity init": ({"dirac": False}, "convolutions start close to the identity"),
    "fast BN biases": ({"bias_lr_scale": 1.0}, "BatchNorm biases learn 64x faster"),
    "label smoothing": ({"label_smoothing": 0.0}, "target 0.82 for the true class, 0.02 for the others"),
    "lookahead": ({"lookahead": False}, "weights pulled back to their moving average"),
    "alternating flips": ({"alt_flip": False}, "each image flipped on every other epoch"),
    "test-time augmentation": ({"tta_level": 0}, "average over mirrored and shifted views"),
}


class RecipeError(ValueError):
    """A recipe setting that cannot work; the message says which and why."""


def make_recipe(recipe: dict | None = None, **changes) -> dict:
    """RECIPE with `recipe`'s and then `changes`' settings on top, checked. Chapter 5 (results page)."""
    merged = {**RECIPE, **(recipe or {}), **changes}
    unknown = sorted(set(merged) - set(RECIPE))
    if unknown:
        raise RecipeError(f"unknown recipe setting(s) {unknown}; the settings are the keys of lib.fast.RECIPE")
    if not (isinstance(merged["epochs"], (int, float)) and merged["epochs"] > 0):
        raise RecipeError(f"epochs must be a positive number, got {merged['epochs']!r}")
    if not (isinstance(merged["batch_size"], int) and merged["batch_size"] >= 2):
        raise RecipeError(f"batch_size must be a whole number of at least 2, got {merged['batch_size']!r}")
    if merged["tta_level"] not in (0, 1, 2):
        raise RecipeError(f"tta_level must be 0, 1 or 2, got {merged['tta_level']!r}")
    if not 0 <= merged["label_smoothing"] < 1:
        raise RecipeError(f"label_smoothing must be in [0, 1), got {merged['label_smoothing']!r}")
    if not 0 < merged["lr_peak_at"] < 1:
        raise RecipeError(f"lr_peak_at must be a fraction in (0, 1), got {merged['lr_peak_at']!r}")
    if len(merged["widths"]) != 3 or min(merged["widths"]) < 1:
        raise RecipeError(f"widths must be three positive channel counts, got {merged['widths']!r}")
    if not 0 <= merged["momentum"] < 1:
        raise RecipeError(f"momentum must be in [0, 1), got {merged['momentum']!r}")
    return merged


# ---------------------------------------------------------------------------------------------
# The network


class ConvGroup(nn.Module):
    """Convolution, 2x2 max-pooling, BatchNorm, GELU, then convolution, BatchNorm, GELU.
    The BatchNorms learn only a bias (their scale stays 1). Chapter 5 (results page)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _bias_only_norm(c_out, bn_momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _bias_only_norm(c_out, bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


def _bias_only_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    norm.weight.requires_grad_(False)  # the scale stays 1: only the bias (a shift) is learned
    return norm


class Scale(nn.Module):
    """Multiplies its input by a constant."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}"


def fast_net(num_classes: int = 10, in_channels: int = 3, recipe: dict | None = None, seed: int = 0) -> nn.Sequential:
    """The recipe's network (airbench94's architecture): a 2x2 first layer with 2*C*4 filters
    (C input channels) and GELU, three ConvGroups, global max-pooling, a linear layer without bias
    and a fixed scale. With `recipe['dirac']`, each convolution's first filters start as identities.
    The first layer is left at PyTorch's initialisation: `whiten_init` sets it from data. Chapter 5."""
    r = make_recipe(recipe)
    k = r["whiten_patch"]
    widths = r["widths"]
    first = 2 * in_channels * k * k
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential()
        net.add_module("whiten", nn.Conv2d(in_channels, first, k, padding=0, bias=True))
        net.add_module("act", nn.GELU())
        c_in = first
        for i, width in enumerate(widths, start=1):
            net.add_module(f"group{i}", ConvGroup(c_in, width, r["bn_momentum"]))
            c_in = width
        net.add_module("pool", nn.AdaptiveMaxPool2d(1))
        net.add_module("flatten", nn.Flatten())
        net.add_module("head", nn.Linear(c_in, num_classes, bias=False))
        net.add_module("scale", Scale(r["logit_scale"]))
        nn.init.zeros_(net.whiten.bias)
        if r["dirac"]:
            for module in net.modules():
                if isinstance(module, ConvGroup):
                    for conv in (module.conv1, module.conv2):
                        dirac_init(conv)
    return net


def dirac_init(conv: nn.Conv2d) -> None:
    """Make the first `in_channels` filters of a 3x3 convolution pass their input channel through
    unchanged (a partial identity); the other filters keep their random start. Chapter 5."""
    with torch.no_grad():
        n = min(conv.out_channels, conv.in_channels)
        nn.init.dirac_(conv.weight[:n])


def patch_whitening(images: torch.Tensor, patch: int, eps: float) -> torch.Tensor:
    """Filters (2*D, C, patch, patch), D = C*patch*patch, that whiten the images' patches: each of
    the first D filters projects a patch on one eigenvector of the patch covariance and divides by
    the square root of its eigenvalue (+ eps); the next D are their negatives, so that a GELU after
    them keeps both signs. `images` are float and normalised, (N, C, H, W). Chapter 5."""
    c = images.shape[1]
    patches = images.float().unfold(2, patch, 1).unfold(3, patch, 1)  # N, C, H', W', p, p
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * patch * patch).double()
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = eigenvalues.argsort(descending=True)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    filters = (eigenvectors / (eigenvalues + eps).sqrt()).T.reshape(-1, c, patch, patch)
    return torch.cat([filters, -filters]).float()


def whitening_sample(n_images: int, count: int, seed: int) -> torch.Tensor:
    """Indices of `count` training images (all, if fewer) drawn at random, fixed by `seed`, whose
    patches estimate the whitening filters. Drawn, not the first ones: a training set read from
    class folders is sorted by class, and its first images would all be of one class."""
    order = torch.randperm(n_images, generator=seeds.generator(seed, 0, Stream.SAMPLE))
    return order[:count].sort().values


def whiten_init(net: nn.Sequential, images: torch.Tensor, recipe: dict | None = None) -> None:
    """Set the first layer's weights to the patch-whitening filters of `images` (float, normalised)
    and freeze them; its bias stays trainable for `whiten_bias_epochs`. Chapter 5."""
    r = make_recipe(recipe)
    filters = patch_whitening(images, r["whiten_patch"], r["whiten_eps"])
    if filters.shape != net.whiten.weight.shape:
        raise RecipeError(f"whitening filters {tuple(filters.shape)} do not fit the first layer "
                          f"{tuple(net.whiten.weight.shape)}: build the network with the same recipe")
    with torch.no_grad():
        net.whiten.weight.copy_(filters.to(net.whiten.weight.device))
    net.whiten.weight.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Optimisation


def sgd_settings(recipe: dict | None = None) -> dict:
    """PyTorch SGD's lr and weight decay for the recipe's settings per 1,024 examples, for the
    loss summed (not averaged) over the batch. Chapter 5 (results page).

    With momentum m, a steady gradient moves the weights 1 + 1/(1-m) times further per step under
    Nesterov SGD than without momentum; dividing by 1,024 * that gain makes `lr` the step per
    1,024 examples whatever m is. PyTorch multiplies weight decay by the lr, so the decay is
    divided by the lr to keep it independent: each step shrinks the weights by
    weight_decay * batch_size / (1,024 * gain).
    """
    r = make_recipe(recipe)
    gain = 1024 * (1 + 1 / (1 - r["momentum"]))
    lr = r["lr"] / gain
    decay = r["weight_decay"] * r["batch_size"] / gain  # the shrink per step
    lr_bias = lr * r["bias_lr_scale"]
    return {"lr": lr, "weight_decay": decay / lr, "lr_bias": lr_bias, "weight_decay_bias": decay / lr_bias,
            "momentum": r["momentum"]}


def make_optimizer(net: nn.Module, recipe: dict | None = None) -> torch.optim.SGD:
    """Nesterov SGD with two groups: BatchNorm biases (faster lr) and every other trainable weight."""
    s = sgd_settings(recipe)
    norm_biases = [p for name, p in net.named_parameters() if ".norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if ".norm" not in name and p.requires_grad]
    groups = [{"params": norm_biases, "lr": s["lr_bias"], "weight_decay": s["weight_decay_bias"]},
              {"params": others, "lr": s["lr"], "weight_decay": s["weight_decay"]}]
    return torch.optim.SGD(groups, momentum=s["momentum"], nesterov=True)


def lr_factor(step: int, total_steps: int, recipe: dict | None = None) -> float:
    """The triangular schedule: lr_start at step 0, 1 at lr_peak_at of the steps, lr_end at the end."""
    r = make_recipe(recipe)
    peak = int(r["lr_peak_at"] * total_steps)
    if step <= peak:
        return r["lr_start"] + (1 - r["lr_start"]) * step / max(1, peak)
    return 1 + (r["lr_end"] - 1) * (step - peak) / max(1, total_steps - peak)


class Lookahead:
    """A moving average of every float tensor in the model's state (weights and BatchNorm
    statistics) that the model is pulled back to: `update(decay)` sets average <- decay * average
    + (1 - decay) * current, then current <- average. Chapter 5 (results page)."""

    def __init__(self, net: nn.Module):
        self.average = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float) -> None:
        state = net.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1 - decay)
            state[name].copy_(average)


# ---------------------------------------------------------------------------------------------
# Data on the device, augmentation and test-time augmentation


class Augmenter:
    """Random shifts and horizontal flips for one training set held on the device, image by image.

    Each epoch draws, for every image, a shift of up to `translate` pixels and a flip from the
    epoch's AUGMENT stream (lib.seeds), through lib.data's CropFlip. With `alternating`, the flips
    of epoch 0 are kept and inverted on every odd epoch, so each image is seen both ways within
    any two epochs (Jordan 2024's "alternating flip"); otherwise each epoch tosses fresh coins.
    Chapter 5 (results page).
    """

    def __init__(self, n: int, height: int, width: int, translate: int, alternating: bool, seed: int, device):
        self.n, self.seed, self.alternating = n, seed, alternating
        self.crop_flip = data_lib.CropFlip(height, width, pad=translate, flip=True, device=device)
        self.span = 2 * translate + 1
        self.first_flips = self._draw(0)[1] >= self.span

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.crop_flip.draw(self.n, seeds.generator(self.seed, epoch, Stream.AUGMENT))

    def flips(self, epoch: int) -> torch.Tensor:
        """Which images are mirrored in `epoch` (bool, one per image)."""
        if self.alternating:
            return self.first_flips ^ bool(epoch % 2)
        return self._draw(epoch)[1] >= self.span

    def choices(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: (row choice, column choice) for CropFlip.apply in `epoch`."""
        rows, cols = self._draw(epoch)
        cols = cols % self.span + self.span * self.flips(epoch).long()
        return rows, cols


def train_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, epoch: int, seed: int,
                  normalize, augmenter: Augmenter):
    """One epoch of augmented, normalised batches from uint8 images held on the training device,
    in the epoch's shuffled order (SHUFFLE stream of lib.seeds); the partial last batch is dropped."""
    order = torch.randperm(len(labels), generator=seeds.generator(seed, epoch, Stream.SHUFFLE)).to(images.device)
    rows, cols = augmenter.choices(epoch)
    for b in range(len(labels) // batch_size):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x = augmenter.crop_flip.apply(images.index_select(0, idx), rows[idx], cols[idx])
        yield normalize(x), labels.index_select(0, idx)


@torch.no_grad()
def predict_tta(net: nn.Module, images: torch.Tensor, normalize, level: int = 2, batch_size: int = 2000,
                amp: bool = False) -> torch.Tensor:
    """Scores (N, classes) for uint8 images, averaged over test-time views: level 0 the image
    alone; 1 the image and its mirror; 2 half of that plus half the mean over the same pair
    shifted one pixel up-left and one pixel down-right (reflection padding). Chapter 5."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device))
        with _autocast(device, amp):
            def both(v):
                return 0.5 * net(v).float() + 0.5 * net(v.flip(3)).float()
            if level == 0:
                scores = net(x).float()
            elif level == 1:
                scores = both(x)
            else:
                h, w = x.shape[-2:]
                padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
                shifted = [padded[..., :h, :w], padded[..., 2:2 + h, 2:2 + w]]
                scores = 0.5 * both(x) + 0.25 * (both(shifted[0]) + both(shifted[1]))
        out.append(scores.float())
    return torch.cat(out)


def _autocast(device: torch.device, enabled: bool):
    """Mixed precision: bfloat16 (float16 on GPUs without it) for convolutions and matrix products."""
    if not enabled:
        return torch.autocast(device.type, enabled=False)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return torch.autocast("cpu", dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class FastResult:
    """What `train` returns."""

    model: nn.Module
    test_accuracy: float  # with the recipe's test-time augmentation
    test_accuracy_plain: float  # the image alone (tta_level 0)
    history: list[dict]  # per epoch: train loss and accuracy, validation accuracy (when held out), seconds
    seconds: float  # whitening set-up + training + test-time-augmented evaluation (airbench's timing)
    train_seconds: float  # whitening set-up + training only
    images_per_second: float  # training images per second of training
    steps: int
    train_size: int
    recipe: dict
    device: str
    amp: bool  # mixed precision (bfloat16 or float16 convolutions) was on
    report: dict = field(default_factory=dict)  # lib.metrics.report on the test split (with TTA)


def pick_device(device: str = "auto") -> torch.device:
    """cuda when available (or asked for), else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device 'cuda' was asked for but this machine has none; use 'auto' or 'cpu'")
    if device not in ("cpu", "cuda"):
        raise RecipeError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def train(data: data_lib.Dataset, recipe: dict | None = None, *, seed: int = 0, device: str = "auto",
          splits: tuple[str, ...] = ("train",), amp: bool | None = None, compile: bool = False,
          log=print) -> FastResult:
    """Train the recipe's network on `data` (an in-memory dataset from lib.data.load) and score it
    on the test split. Defined for chapter 5's results page.

    `splits` are the splits trained on: ("train",) keeps the validation split held out and reports
    its accuracy after every epoch; ("train", "val") trains on both, as airbench does with all of
    CIFAR-10's 50,000 training images. The images stay on the device as uint8. `amp` (default: on
    CUDA only) computes convolutions in bfloat16 (float16 on GPUs without it) with the channels-last
    layout; on CPUs with bfloat16 matrix units (Intel AMX) it is several times faster there too
    (benchmarks/README.md). `compile` wraps the network in torch.compile.
    Reproducible on the CPU for a given seed.
    """
    r = make_recipe(recipe)
    for split in splits:
        if split not in ("train", "val"):
            raise RecipeError(f"splits may hold 'train' and 'val', got {split!r}; the test split is never trained on")
    if not data.in_memory:
        raise RecipeError(f"{data.name} is streamed from disk; the fast recipe needs it in memory "
                          "(lib.data.load(..., in_memory=True)) to keep the images on the device")
    dev = pick_device(device)
    amp = dev.type == "cuda" if amp is None else bool(amp)
    channels_last = dev.type == "cuda" or amp
    images = torch.cat([getattr(data, s).images for s in splits]).to(dev)
    labels = torch.cat([getattr(data, s).labels for s in splits]).to(dev)
    batch_size = r["batch_size"]
    steps_per_epoch = len(labels) // batch_size
    if steps_per_epoch < 1:
        raise RecipeError(f"batch_size {batch_size} is larger than the {len(labels)} training images; "
                          "pass a smaller batch_size")
    total_steps = math.ceil(steps_per_epoch * r["epochs"])
    normalize = data_lib.Normalize(data.mean, data.std, dev, channels_last)

    _sync(dev)
    started = time.perf_counter()
    net = fast_net(data.num_classes, data.channels, r, seed=seed).to(dev)
    if r["whiten"]:
        sample = whitening_sample(len(labels), r["whiten_images"], seed).to(dev)
        whiten_init(net, normalize(images.index_select(0, sample)), r)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net, r)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    lookahead = Lookahead(net) if r["lookahead"] else None
    criterion = nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"], reduction="sum")
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported())
    runner = torch.compile(net) if compile else net
    held_out = "val" not in splits and len(data.val) > 0
    augmenter = Augmenter(len(labels), images.shape[-2], images.shape[-1], r["translate"], r["alt_flip"], seed, dev)

    history, step, train_seconds = [], 0, 0.0
    _sync(dev)
    train_seconds += time.perf_counter() - started
    for epoch in range(math.ceil(r["epochs"])):
        epoch_start = time.perf_counter()
        if r["whiten"]:
            net.whiten.bias.requires_grad_(epoch < r["whiten_bias_epochs"])
        net.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        for x, y in train_batches(images, labels, batch_size, epoch, seed, normalize, augmenter):
            factor = lr_factor(step, total_steps, r)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            with _autocast(dev, amp):
                scores = runner(x)
                loss = criterion(scores.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_sum += loss.detach()
            correct += (scores.detach().argmax(1) == y).sum()
            seen += len(y)
            if lookahead is not None and step % r["lookahead_every"] == 0:
                lookahead.update(net, r["lookahead_decay"] * (step / total_steps) ** 3)
            if step >= total_steps:
                break
        if step >= total_steps and lookahead is not None:
            lookahead.update(net, 1.0)  # the final weights are the moving average
        _sync(dev)
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
               "seconds": seconds, "images_per_second": seen / seconds}
        if held_out:
            val_scores = predict_tta(net, data.val.images, normalize, 0, amp=amp)
            row["val_acc"] = metrics.accuracy(val_scores.cpu(), data.val.labels)
        history.append(row)
        log(f"epoch {row['epoch']:>2}  train loss {row['train_loss']:.4f}  train acc {row['train_acc']:.2%}"
            + (f"  val acc {row['val_acc']:.2%}" if held_out else "")
            + f"  {seconds:.1f} s  {row['images_per_second']:,.0f} images/s")

    eval_start = time.perf_counter()
    scores = predict_tta(net, data.test.images, normalize, r["tta_level"], amp=amp).cpu()
    _sync(dev)
    eval_seconds = time.perf_counter() - eval_start
    plain = scores if r["tta_level"] == 0 else predict_tta(net, data.test.images, normalize, 0, amp=amp).cpu()
    report = metrics.report(scores, data.test.labels, data.num_classes)
    trained = sum(row["seconds"] for row in history)
    log(f"test accuracy {report['accuracy']:.2%} (test-time augmentation level {r['tta_level']}), "
        f"{metrics.accuracy(plain, data.test.labels):.2%} without; {train_seconds + eval_seconds:.1f} s")
    return FastResult(model=net, test_accuracy=report["accuracy"],
                      test_accuracy_plain=metrics.accuracy(plain, data.test.labels), history=history,
                      seconds=train_seconds + eval_seconds, train_seconds=train_seconds,
                      images_per_second=sum(row["images_per_second"] * row["seconds"] for row in history) / trained,
                      steps=step, train_size=len(labels), recipe=copy.deepcopy(r), device=str(dev), amp=amp,
                      report=report)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ablate(data: data_lib.Dataset, recipe: dict | None = None, *, ingredients=None, seeds=(0,),
           log=print, **options) -> list[dict]:
    """Train the full recipe and the recipe without each ingredient (INGREDIENTS, or the names given),
    for every seed; one row per run: ingredient removed ("none" for the full recipe), seed, test
    accuracy, seconds. `options` go to `train`. Chapter 5 (results page)."""
    names = list(INGREDIENTS) if ingredients is None else list(ingredients)
    unknown = [n for n in names if n not in INGREDIENTS]
    if unknown:
        raise RecipeError(f"unknown ingredient(s) {unknown}; choose from {', '.join(INGREDIENTS)}")
    base = make_recipe(recipe)
    rows = []
    for removed in ["none", *names]:
        changes = {} if removed == "none" else INGREDIENTS[removed][0]
        for seed in seeds:
            log(f"-- without {removed} (seed {seed})" if removed != "none" else f"-- full recipe (seed {seed})")
            result = train(data, {**base, **changes}, seed=seed, log=log, **options)
            rows.append({"removed": removed, "seed": seed, "test_accuracy": result.test_accuracy,
                         "test_accuracy_plain": result.test_accuracy_plain, "seconds": result.seconds,
                         "train_seconds": result.train_seconds})
    return rows
