"""Transfer learning from an ImageNet network: frozen embeddings, a linear probe, fine-tuning, and
learning curves against the number of labelled images per class. Chapter 6.2 ("Transfer learning:
what ImageNet pretraining buys") explains everything here; chapter 6.3 reuses `embed`.

The network comes from `lib.pretrained` (EfficientNet-Lite0 with its ILSVRC-2012 weights, offline).
Images come from any `lib.data.Dataset`; they are resized to `size` pixels (the network is fully
convolutional, so any size of at least 32 works; smaller is faster and, as the chapter measures,
less accurate) and normalised as the network was trained. Embeddings are cached on disk under a key
made of the network, the input size, the split and a fingerprint of the images themselves, so a rerun
reads them back instead of recomputing, and different data can never hit a stale file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib import data as data_lib
from lib import pretrained
from lib.files import atomic_write

METHODS = ("probe", "finetune", "scratch")
MIN_SIZE = 32  # EfficientNet-Lite0 halves the image five times: 32 px leaves a 1x1 feature map
PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried on the validation split


class TransferError(ValueError):
    """A transfer-learning request that cannot work; the message says what to do."""


def check_size(size) -> int:
    """Raise TransferError unless `size` is a whole number of at least MIN_SIZE pixels."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < MIN_SIZE:
        raise TransferError(f"size must be a whole number of at least {MIN_SIZE} pixels, got {size!r}")
    return int(size)


class ImageNetInput(nn.Module):
    """Turn a batch as `lib.data`'s loaders give it (normalised with the dataset's own mean and
    standard deviation, 1 or 3 channels, any side) into what an ImageNet network expects: RGB, `size`
    pixels a side, normalised with the network's mean and standard deviation. Chapter 6.2."""

    def __init__(self, data_mean, data_std, net_mean, net_std, size: int):
        super().__init__()
        self.size = check_size(size)
        self.register_buffer("data_mean", torch.tensor(data_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("data_std", torch.tensor(data_std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("net_mean", torch.tensor(net_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("net_std", torch.tensor(net_std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.data_std + self.data_mean  # back to pixels in [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)
        return (x - self.net_mean) / self.net_std


class FrozenNormNet(nn.Sequential):
    """A network whose batch-norm layers keep their ImageNet statistics while it trains: with a
    handful of labelled images per class, batch statistics would be noisy and wreck the features.
    Chapter 6.2."""

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


# ---------------------------------------------------------------------------------------------
# Frozen embeddings, cached


def _pixels(split, index: torch.Tensor) -> torch.Tensor:
    """uint8 images (n, C, H, W) of a split at the given positions."""
    if isinstance(split, data_lib.TensorSplit):
        return split.images[index]
    return data_lib.read_images([split.paths[i] for i in index.tolist()], split.image_size)


def fingerprint(split) -> str:
    """A short hash of a split's content (its pixels or file paths, and its labels)."""
    digest = hashlib.sha256()
    if isinstance(split, data_lib.TensorSplit):
        digest.update(np.ascontiguousarray(split.images.cpu().numpy()).tobytes())
    else:
        digest.update("\n".join(split.paths).encode())
        digest.update(str(split.image_size).encode())
    digest.update(split.labels.cpu().numpy().astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's weights and buffers, so that a cache never mixes up two networks that
    share a name (the ImageNet-trained one and a randomly initialised copy, say)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()[:16]


def embed(net: pretrained.Pretrained, data: data_lib.Dataset, split: str, *, size: int = 96,
          batch_size: int = 64, cache_dir: str | Path | None = None, log=print) -> tuple[np.ndarray, np.ndarray]:
    """Frozen embeddings of every image of `data`'s `split` (train, val or test): a float32 array
    (N, D) and the labels (N,). With `cache_dir`, they are read from / written atomically to a file
    named by the network and a fingerprint of its weights, `size`, the dataset, the split and a fingerprint of
    its content. Chapter 6.2."""
    size = check_size(size)
    if split not in ("train", "val", "test"):
        raise TransferError(f"split must be train, val or test, got {split!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise TransferError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    part = getattr(data, split)
    labels = part.labels.cpu().numpy().astype(np.int64)
    path = None
    if cache_dir is not None:
        key = f"{net.name}-{weights_fingerprint(net.model)}-{size}px-{data.name}-{split}-{fingerprint(part)}"
        path = Path(cache_dir).expanduser() / f"{key}.npz"
        if path.is_file():
            with np.load(path) as saved:
                if np.array_equal(saved["labels"], labels):
                    return saved["features"], labels
    features = []
    started = time.perf_counter()
    for start in range(0, len(part), batch_size):
        index = torch.arange(start, min(start + batch_size, len(part)))
        x = _pixels(part, index).float() / 255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
        features.append(net.embed(net.normalize(x)).numpy())
    features = np.concatenate(features) if features else np.zeros((0, 0), np.float32)
    log(f"embedded {len(part):,} {split} images of {data.name} at {size} px with {net.name} "
        f"in {time.perf_counter() - started:.1f} s")
    if path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, features=features, labels=labels)
        atomic_write(path, lambda file: file.write(buffer.getvalue()))
    return features, labels


# ---------------------------------------------------------------------------------------------
# Subsets with n labelled images per class


def per_class(labels, n: int | None, seed: int = 0) -> np.ndarray:
    """Positions of `n` images of every class (all of them when `n` is None), drawn with `seed`;
    a class with fewer than `n` images is refused. The draws are nested: the first n of a larger
    draw are the draw for n. Chapter 6.2."""
    labels = np.asarray(labels)
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
        raise TransferError(f"images per class must be a whole number of at least 1, got {n!r}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        if n is not None and len(where) < n:
            raise TransferError(f"class {c} has only {len(where)} training images, fewer than the {n} "
                                "per class asked for; ask for fewer")
        chosen.append(rng.permutation(where)[: len(where) if n is None else n])
    return np.sort(np.concatenate(chosen))


def subset(data: data_lib.Dataset, index) -> data_lib.Dataset:
    """`data` with its training split cut to the given positions (validation and test untouched)."""
    index = torch.as_tensor(np.asarray(index), dtype=torch.int64)
    train = data.train
    if isinstance(train, data_lib.TensorSplit):
        cut = data_lib.TensorSplit(train.images[index], train.labels[index])
    else:
        cut = data_lib.FileSplit([train.paths[i] for i in index.tolist()], train.labels[index], train.image_size)
    return dataclasses.replace(data, train=cut, info={**data.info, "train": f"{len(index):,} images"})


# ---------------------------------------------------------------------------------------------
# Linear probe


@dataclasses.dataclass
class Probe:
    """A logistic regression on standardised frozen embeddings, with the C chosen on validation."""

    model: object  # a scikit-learn pipeline: StandardScaler then LogisticRegression
    C: float
    val_acc: float  # accuracy on the validation split with that C

    def score(self, features, labels) -> float:
        return float(self.model.score(features, labels))


def linear_probe(train_x, train_y, val_x, val_y, Cs=PROBE_CS, max_iter: int = 2000) -> Probe:
    """Fit a multinomial logistic regression on frozen embeddings for each C in `Cs` and keep the one
    with the best validation accuracy (the smallest C on ties: the most regularised). Chapter 6.2."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(val_y) == 0:
        raise TransferError("the linear probe chooses C on the validation split, which is empty; "
                            "load the dataset with val_fraction > 0")
    if len(np.unique(train_y)) < 2:
        raise TransferError("the linear probe needs training images of at least two classes")
    best = None
    for C in Cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        model.fit(train_x, train_y)
        accuracy = float(model.score(val_x, val_y))
        if best is None or accuracy > best.val_acc:
            best = Probe(model, float(C), accuracy)
    return best


# ---------------------------------------------------------------------------------------------
# Fine-tuning and training from scratch: the same architecture, with or without ImageNet's weights


def network_for(data: data_lib.Dataset, *, size: int = 96, pretrained_weights: bool = True,
                seed: int = 0) -> nn.Module:
    """EfficientNet-Lite0 for `data`: an `ImageNetInput` adapter, then the network with a new
    classifier for `data.num_classes` (its weights drawn with `seed`). With `pretrained_weights`, the
    ILSVRC-2012 weights, batch norm frozen (`FrozenNormNet`); without, random weights, batch norm
    training as usual (training from scratch). Chapter 6.2."""
    size = check_size(size)
    body = pretrained.efficientnet_lite0(pretrained=pretrained_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if not pretrained_weights:  # a fresh draw of every weight, not just the classifier
            body = pretrained.EfficientNetLite()
        body.classifier[-1] = nn.Linear(body.classifier[-1].in_features, data.num_classes)
    adapter = ImageNetInput(data.mean, data.std, pretrained.LITE0_MEAN, pretrained.LITE0_STD, size)
    wrapper = FrozenNormNet if pretrained_weights else nn.Sequential
    return wrapper(adapter, body)


def steps_to_epochs(n_train: int, batch_size: int, steps: int) -> int:
    """Epochs that give at least `steps` updates on `n_train` images in batches of `batch_size`."""
    return max(1, math.ceil(steps / math.ceil(n_train / batch_size)))


def without_validation(data: data_lib.Dataset) -> data_lib.Dataset:
    """`data` with an empty validation split (training and test untouched)."""
    val = data.val
    if isinstance(val, data_lib.TensorSplit):
        empty = data_lib.TensorSplit(val.images[:0], val.labels[:0])
    else:
        empty = data_lib.FileSplit([], val.labels[:0], val.image_size)
    return dataclasses.replace(data, val=empty, info={**data.info, "val": "not used"})


def train_network(data: data_lib.Dataset, *, pretrained_weights: bool, size: int = 96, steps: int = 40,
                  batch_size: int = 32, lr: float | None = None, seed: int = 0, validate: bool = False,
                  log=print):
    """Fine-tune (`pretrained_weights=True`) or train from scratch the same EfficientNet-Lite0 on
    `data.train` for about `steps` updates with `lib.train.fit` (AdamW, warm-up then linear decay, no
    augmentation); returns (model, FitResult). `lr` defaults to 1e-3 for fine-tuning and 3e-3 from
    scratch. The run has a fixed number of updates and chooses nothing on the validation split, so by
    default it does not score it after every epoch (with one image per class that is most of the
    cost); `validate=True` does, for the history's val_loss and val_acc. Chapter 6.2."""
    from lib import train

    model = network_for(data, size=size, pretrained_weights=pretrained_weights, seed=seed)
    batch = min(batch_size, len(data.train))
    epochs = steps_to_epochs(len(data.train), batch, steps)
    lr = lr if lr is not None else (1e-3 if pretrained_weights else 3e-3)
    result = train.fit(model, data if validate else without_validation(data), epochs=epochs,
                       batch_size=batch, lr=lr, augment=False, seed=seed, device="cpu", progress=False,
                       log=log)
    return model, result


def accuracy(model: nn.Module, data: data_lib.Dataset, split: str = "test") -> float:
    """Top-1 accuracy of a trained model on a split of `data`."""
    from lib import train

    scores, labels = train.predict(model, data, split, batch_size=256)
    return float((scores.argmax(1) == labels).float().mean())


# ---------------------------------------------------------------------------------------------
# Learning curves


def learning_curves(data: data_lib.Dataset, shots, methods=METHODS, *, size: int = 96, steps: int = 40,
                    seed: int = 0, cache_dir: str | Path | None = None, log=print) -> list[dict]:
    """Test accuracy of each method in `methods` ('probe', 'finetune', 'scratch') trained on `n`
    labelled images per class, for each n in `shots` (None: every training image). One row per
    (method, n): method, shots, n_train, accuracy, seconds (and C for the probe). The same images
    are used by every method for a given n. Chapter 6.2."""
    size = check_size(size)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise TransferError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    labels = data.train.labels.cpu().numpy()
    draws = [per_class(labels, n, seed) for n in shots]  # refuse impossible shots before any work
    rows = []
    if "probe" in methods:
        net = pretrained.load("efficientnet_lite0")
        train_x, train_y = embed(net, data, "train", size=size, cache_dir=cache_dir, log=log)
        val_x, val_y = embed(net, data, "val", size=size, cache_dir=cache_dir, log=log)
        test_x, test_y = embed(net, data, "test", size=size, cache_dir=cache_dir, log=log)
    for n, index in zip(shots, draws):
        for method in methods:
            started = time.perf_counter()
            row = {"method": method, "shots": n if n is not None else "all", "n_train": len(index)}
            if method == "probe":
                probe = linear_probe(train_x[index], train_y[index], val_x, val_y)
                row.update(accuracy=probe.score(test_x, test_y), C=probe.C)
            else:
                model, _ = train_network(subset(data, index), pretrained_weights=method == "finetune",
                                         size=size, steps=steps, seed=seed, log=lambda *a: None)
                row["accuracy"] = accuracy(model, data, "test")
            row["seconds"] = time.perf_counter() - started
            log(f"{method:>8} with {row['shots']!s:>4} per class ({len(index):>5} images): "
                f"test accuracy {row['accuracy']:.1%} in {row['seconds']:.1f} s")
            rows.append(row)
    return rows
