"""Datasets and loaders: one `load` for every dataset the course uses, and loaders that feed `fit`.

Chapter 0 ("How this course runs") shows them at work; chapter 5 explains splits, normalisation
and why ImageNet must be streamed.

Small datasets (the generated shapes, digits, CIFAR-10, Imagenette at small sizes) are held as one
uint8 tensor on the training device, and random crops and flips are done there on whole batches.
Large ones (ImageNet) are streamed from disk by a torch DataLoader; the same on-device augmentation
is then applied to each batch, so both paths train the same way.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib import shapes

DATASETS = ("shapes", "digits", "cifar10", "imagenette", "imagenet", "folder")
# Default image side per dataset; `image_size=` changes it.
DEFAULT_IMAGE_SIZE = {"shapes": 32, "digits": 32, "cifar10": 32, "imagenette": 128, "imagenet": 224, "folder": 64}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3  # above this a folder dataset is streamed from disk


class DatasetError(ValueError):
    """A dataset is unknown, missing or damaged. The message says what to do."""


@dataclass
class TensorSplit:
    """A split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> TensorSplit:
        return TensorSplit(self.images.to(device), self.labels.to(device))


@dataclass
class FileSplit:
    """A split streamed from image files; `paths[i]` has class `labels[i]`."""

    paths: list[str]
    labels: torch.Tensor
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """A dataset with train/val/test splits, class names and the training set's channel statistics."""

    name: str
    classes: list[str]
    train: TensorSplit | FileSplit
    val: TensorSplit | FileSplit
    test: TensorSplit | FileSplit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hierarchy: dict[str, list[str]] | None = None  # superclass -> class names, where known
    info: dict = field(default_factory=dict)  # where it came from, sizes, notes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def image_size(self) -> int:
        split = self.train
        return split.images.shape[-1] if isinstance(split, TensorSplit) else split.image_size

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, TensorSplit)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s)):,}" for s in ("train", "val", "test"))
        where = "in memory" if self.in_memory else "streamed from disk"
        return (f"Dataset({self.name!r}: {self.num_classes} classes, {self.channels}x{self.image_size}x"
                f"{self.image_size} images, {sizes}, {where})")


def check_name(name: str) -> None:
    """Raise DatasetError, listing the choices, unless `name` is one of DATASETS."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def load(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    val_fraction: float = 0.1,
    download: bool = False,
    in_memory: bool | None = None,
) -> Dataset:
    """Load a dataset by name. Defined in chapter 0; chapter 5 explains the splits.

    name: one of DATASETS. `shapes` is generated (n_train/n_val/n_test images from `seed`);
    `digits` is scikit-learn's handwritten digits; `cifar10`, `imagenette` and `imagenet` read local
    copies under `root` (`download=True` fetches the first two); `folder` reads any ImageNet-style
    folder `root/train/<class>/...` with `root/val/` (and optionally `root/test/`).
    Where a dataset has no separate validation split, one is carved from train (`val_fraction`),
    with `seed` fixing which images.
    """
    check_name(name)
    size = DEFAULT_IMAGE_SIZE[name] if image_size is None else int(image_size)
    if size < 8:
        raise DatasetError(f"image_size must be at least 8 pixels, got {size}")
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if name == "shapes":
        return _load_shapes(size, seed, n_train, n_val, n_test)
    if name == "digits":
        return _load_digits(size, seed, val_fraction)
    if root is None:
        raise DatasetError(f"dataset {name!r} is read from disk: pass root= (--data-root) with its folder")
    root = Path(root).expanduser()
    if name == "cifar10":
        return _load_cifar10(root, size, seed, val_fraction, download, in_memory)
    if name == "imagenette":
        return _load_imagenette(root, size, seed, val_fraction, download, in_memory)
    if name == "imagenet":
        return _load_imagenet(root, size, seed, val_fraction, in_memory)
    return _load_folder(root, size, seed, val_fraction, in_memory, name="folder")


# ---------------------------------------------------------------------------------------------
# Datasets that ship with the course or its packages


def _load_shapes(size: int, seed: int, n_train: int, n_val: int, n_test: int) -> Dataset:
    splits = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        images, labels = shapes.generate(n, split, seed=seed, size=size)
        splits[split] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))
    mean, std = channel_stats(splits["train"].images)
    return Dataset("shapes", list(shapes.CLASSES), splits["train"], splits["val"], splits["test"], mean, std,
                   hierarchy={k: list(v) for k, v in shapes.HIERARCHY.items()},
                   info={"source": "generated by lib.shapes", "seed": seed})


def _load_digits(size: int, seed: int, val_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # 60% train, 20% validation, 20% test, stratified by class and fixed by the seed.
    train_idx, rest = stratified_split(labels, 0.4, seed)
    val_idx, test_idx = (rest[i] for i in stratified_split(labels[rest], 0.5, seed + 1))
    full = TensorSplit(images, labels)
    train, val, test = (_subset(full, idx) for idx in (train_idx, val_idx, test_idx))
    mean, std = channel_stats(train.images)
    return Dataset("digits", [str(d) for d in range(10)], train, val, test, mean, std,
                   info={"source": "sklearn.datasets.load_digits (UCI optical digits, 8x8)"})


# ---------------------------------------------------------------------------------------------
# Datasets read from disk


def _load_cifar10(root: Path, size, seed, val_fraction, download, in_memory) -> Dataset:
    if (root / "train").is_dir():  # the same images as an image folder (e.g. JPEG exports)
        data = _load_folder(root, size, seed, val_fraction, in_memory, name="cifar10")
        if data.classes != CIFAR10_CLASSES:
            raise DatasetError(f"{root / 'train'} has class folders {data.classes}, not CIFAR-10's "
                               f"{CIFAR10_CLASSES}; use dataset 'folder' for other image folders")
        return data
    from torchvision.datasets import CIFAR10

    if not download and not (root / "cifar-10-batches-py").is_dir():
        raise DatasetError(f"CIFAR-10 not found under {root}: expected {root / 'cifar-10-batches-py'} "
                           "(pass download=True / --download to fetch it) or an image folder "
                           f"{root / 'train'}/<class>/")
    try:
        parts = [CIFAR10(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as error:  # torchvision's integrity check failed
        raise DatasetError(f"CIFAR-10 under {root} is damaged ({error}); delete "
                           f"{root / 'cifar-10-batches-py'} and download it again") from None
    splits = [TensorSplit(torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(),
                          torch.tensor(p.targets, dtype=torch.int64)) for p in parts]
    if size != 32:
        splits = [TensorSplit(_resize_uint8(s.images, size), s.labels) for s in splits]
    train_idx, val_idx = stratified_split(splits[0].labels, val_fraction, seed)
    train, val = _subset(splits[0], train_idx), _subset(splits[0], val_idx)
    mean, std = channel_stats(train.images)
    return Dataset("cifar10", list(parts[0].classes), train, val, splits[1], mean, std,
                   info={"source": f"torchvision CIFAR10 at {root}", "val": f"{val_fraction:.0%} of train"})


def _load_imagenette(root: Path, size, seed, val_fraction, download, in_memory) -> Dataset:
    from torchvision.datasets import Imagenette

    wnid_names = {wnid: names[0] for wnid, names in Imagenette._WNID_TO_CLASS.items()}
    folders = [root / stem for stem in ("imagenette2-160", "imagenette2-320", "imagenette2")]
    found = [f for f in folders if (f / "train").is_dir()]
    if not found:
        if not download:
            raise DatasetError(f"Imagenette not found under {root}: expected one of "
                               f"{', '.join(f.name for f in folders)} with train/ and val/ inside "
                               "(pass download=True / --download to fetch the 160px version)")
        Imagenette(str(root), split="train", size="160px", download=True)
        found = [root / "imagenette2-160"]
    data = _load_folder(found[0], size, seed, val_fraction, in_memory, name="imagenette")
    data.classes = [wnid_names.get(wnid, wnid) for wnid in data.classes]
    data.info["wnids"] = sorted(wnid_names)
    return data


def _load_imagenet(root: Path, size, seed, val_fraction, in_memory) -> Dataset:
    """ILSVRC-2012 from its archives (torchvision extracts them once) or from extracted folders."""
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        archives = ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"]
        missing = [a for a in archives if not (root / a).is_file()]
        if missing:
            raise DatasetError(f"ImageNet (ILSVRC-2012) not found under {root}: it needs train/ and val/ "
                               f"folders or the archives {', '.join(archives)} (missing: "
                               f"{', '.join(missing)}); get them from image-net.org after registering")
        from torchvision.datasets import ImageNet

        for split in ("train", "val"):  # extracts and sorts the val images into class folders
            ImageNet(str(root), split=split)
    # ILSVRC-2012's test labels were never released: its val set serves as the test set here.
    data = _load_folder(root, size, seed, val_fraction, in_memory, name="imagenet")
    names = imagenet_class_names()
    if len(data.classes) == len(names):
        data.info["wnids"] = data.classes
        data.classes = names
    return data


def imagenet_class_names() -> list[str]:
    """The 1000 ILSVRC-2012 class names in wnid order, from torchvision's offline metadata."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def scan_folder(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """List an ImageNet-style split folder `folder/<class>/<image>`: (paths, labels, class names).

    Raises DatasetError naming the folder or file when the layout is wrong or a file is empty.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist or is not a folder")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DatasetError(f"{folder} has no class folders: expected {folder}/<class>/<image files>")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = sorted((e for e in os.scandir(folder / name)
                        if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)), key=lambda e: e.name)
        if not files:
            raise DatasetError(f"class folder {folder / name} holds no images: the archive may be only "
                               "partly extracted; extract it again")
        for entry in files:
            if entry.stat().st_size == 0:
                raise DatasetError(f"{entry.path} is empty (0 bytes): the archive was probably not fully "
                                   "extracted; extract it again or delete the file")
            paths.append(entry.path)
            labels.append(index)
    return paths, labels, classes


def _load_folder(root: Path, size, seed, val_fraction, in_memory, name: str) -> Dataset:
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist")
    if not (root / "train").is_dir():
        raise DatasetError(f"{root} has no train/ folder: an image folder dataset needs "
                           f"{root}/train/<class>/ and {root}/val/<class>/ (or test/)")
    train_paths, train_labels, classes = scan_folder(root / "train")
    has_val, has_test = (root / "val").is_dir(), (root / "test").is_dir()
    if not (has_val or has_test):
        raise DatasetError(f"{root} has train/ but neither val/ nor test/: add one of them")
    held = {}
    for split in ("val", "test"):
        if (root / split).is_dir():
            paths, labels, split_classes = scan_folder(root / split)
            if split_classes != classes:
                extra = sorted(set(split_classes) ^ set(classes))[:5]
                raise DatasetError(f"{root / split} and {root / 'train'} have different class folders "
                                   f"(first differences: {extra})")
            held[split] = (paths, labels)
    labels_t = torch.tensor(train_labels, dtype=torch.int64)
    if has_test and has_val:
        test, val = held["test"], held["val"]
        train = (train_paths, train_labels)
        val_note = "val/"
    else:  # the held-out folder is the test split; carve a validation split from train
        test = held["test"] if has_test else held["val"]
        train_idx, val_idx = stratified_split(labels_t, val_fraction, seed)
        train = ([train_paths[i] for i in train_idx], [train_labels[i] for i in train_idx])
        val = ([train_paths[i] for i in val_idx], [train_labels[i] for i in val_idx])
        val_note = f"{val_fraction:.0%} of train/"
    parts = {"train": train, "val": val, "test": test}
    total = sum(len(p[0]) for p in parts.values())
    if in_memory is None:
        in_memory = total * 3 * size * size <= IN_MEMORY_LIMIT_BYTES
    info = {"source": str(root), "val": val_note, "test": "test/" if has_test else "val/"}
    if in_memory:
        splits = {s: TensorSplit(read_images(p, size), torch.tensor(lab, dtype=torch.int64))
                  for s, (p, lab) in parts.items()}
        mean, std = channel_stats(splits["train"].images)
    else:
        splits = {s: FileSplit(list(p), torch.tensor(lab, dtype=torch.int64), size) for s, (p, lab) in parts.items()}
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(train[0]), size=min(2000, len(train[0])), replace=False)
        mean, std = channel_stats(read_images([train[0][i] for i in sample], size))
        info["stats"] = f"mean/std from {len(sample)} training images"
    return Dataset(name, classes, splits["train"], splits["val"], splits["test"], mean, std, info=info)


def read_image(path: str, size: int) -> np.ndarray:
    """Decode one image file to uint8 (3, size, size): shorter side resized to `size`, centre-cropped."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            if (width, height) != (size, size):
                scale = size / min(width, height)
                new = (max(size, round(width * scale)), max(size, round(height * scale)))
                image = image.resize(new, Image.BILINEAR)
                left, top = (new[0] - size) // 2, (new[1] - size) // 2
                image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # PIL raises several types for damaged files
        raise DatasetError(f"cannot read image {path}: {error}; the file is damaged: replace or delete it") from None
    return array.transpose(2, 0, 1)


def read_images(paths: list[str], size: int, threads: int | None = None) -> torch.Tensor:
    """Decode many image files into one uint8 tensor (N, 3, size, size), using a few threads."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = read_image(paths[i], size)

    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 1) + 2)) as pool:
        list(pool.map(work, range(len(paths)), chunksize=256))
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the loaders above


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held) with `fraction` of every class held out, fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def _subset(split: TensorSplit, idx: torch.Tensor) -> TensorSplit:
    return TensorSplit(split.images[idx].contiguous(), split.labels[idx].contiguous())


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale."""
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


# ---------------------------------------------------------------------------------------------
# Loaders


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU random generator determined by (seed, epoch, stream): each epoch's shuffling and
    augmentation depend on nothing else, so a resumed run repeats them exactly."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops (after `pad` pixels of reflection padding) and horizontal flips of a uint8 or
    float batch (N, C, H, W), on whatever device it lives; randomness comes from `generator` (CPU)."""
    n, _, h, w = x.shape
    if pad > 0:
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        padded = F.pad(x if x.is_floating_point() else x.float(), (pad, pad, pad, pad), mode="reflect")
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, channel, rows, cols].to(x.dtype)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class Normalize:
    """uint8 batch -> float batch with the dataset's per-channel mean and std."""

    def __init__(self, mean, std, device, channels_last: bool = False):
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)


class _Batches:
    """What both loaders share: batch counting and the epoch that fixes their randomness."""

    def __init__(self, split, batch_size: int, device, mean, std, shuffle: bool, augment: bool, drop_last: bool,
                 seed: int, channels_last: bool):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.split, self.device = split, torch.device(device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.seed, self.epoch = seed, 0
        self.normalize = Normalize(mean, std, device, channels_last)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DeviceLoader(_Batches):
    """Batches from a split held on the training device: shuffling, crops and flips happen there.

    Iterating yields (float images normalised with the training set's statistics, labels).
    Call `set_epoch(epoch)` before each epoch: the order and augmentation depend only on
    (seed, epoch), which makes resumed runs exact.
    """

    def __init__(self, split: TensorSplit, batch_size: int, device, mean, std, *, shuffle: bool = False,
                 augment: bool = False, drop_last: bool = False, seed: int = 0, channels_last: bool = False):
        super().__init__(split.to(device), batch_size, device, mean, std, shuffle, augment, drop_last, seed,
                         channels_last)

    def __iter__(self):
        n = len(self.split)
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.split.labels.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.split.images[idx]
            if self.augment:
                x = augment_batch(x, generator)
            yield self.normalize(x), self.split.labels[idx]


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return torch.from_numpy(read_image(self.split.paths[i], self.split.image_size)), self.split.labels[i]


class StreamLoader(_Batches):
    """Batches decoded from image files by DataLoader worker processes, then augmented and
    normalised on the device exactly as DeviceLoader does. For datasets too large for memory."""

    def __init__(self, split: FileSplit, batch_size: int, device, mean, std, *, shuffle: bool = False,
                 augment: bool = False, drop_last: bool = False, seed: int = 0, channels_last: bool = False,
                 num_workers: int | None = None):
        super().__init__(split, batch_size, device, mean, std, shuffle, augment, drop_last, seed, channels_last)
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        loader = torch.utils.data.DataLoader(
            _FileDataset(self.split), batch_size=self.batch_size, shuffle=self.shuffle,
            drop_last=self.drop_last, num_workers=self.num_workers, generator=generator,
            pin_memory=self.device.type == "cuda", persistent_workers=False)
        augment_generator = epoch_generator(self.seed, self.epoch, stream=1)
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            if self.augment:
                x = augment_batch(x, augment_generator)
            yield self.normalize(x), y.to(self.device, non_blocking=True)


def loader(data: Dataset, split: str, batch_size: int, device="cpu", *, train: bool = False,
           augment: bool = False, seed: int = 0, channels_last: bool = False, num_workers: int | None = None):
    """The right loader for a split: on-device for in-memory data, streaming otherwise.
    `train=True` shuffles and drops the last partial batch; `augment=True` adds crops and flips."""
    part = getattr(data, split)
    options = dict(shuffle=train, augment=augment, drop_last=train and len(part) > batch_size, seed=seed,
                   channels_last=channels_last)
    if isinstance(part, TensorSplit):
        return DeviceLoader(part, batch_size, device, data.mean, data.std, **options)
    return StreamLoader(part, batch_size, device, data.mean, data.std, num_workers=num_workers, **options)


def write_folder(data: Dataset, root: str | os.PathLike, splits=("train", "val", "test"), fmt: str = "png") -> Path:
    """Write an in-memory dataset to disk in ImageNet's folder layout: root/<split>/<class>/<n>.<fmt>.
    Chapter 2 uses it to show that one folder reader serves both ImageNet and the generated data."""
    from PIL import Image

    root = Path(root)
    for split in splits:
        part = getattr(data, split)
        if not isinstance(part, TensorSplit):
            raise DatasetError(f"{data.name} is streamed from disk already; it has no images to write")
        for c in data.classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        images = part.images.permute(0, 2, 3, 1).cpu().numpy()
        for i, (image, label) in enumerate(zip(images, part.labels.tolist())):
            array = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(array).save(root / split / data.classes[label] / f"{i:06d}.{fmt}")
    return root
