"""Datasets and loaders: one `load` for every dataset the course uses, and loaders that feed `fit`.

Chapter 0 ("How this course runs") shows them at work; chapter 5 explains splits, normalisation
and why ImageNet must be streamed.

Small datasets (the generated shapes, digits, CIFAR-10, Imagenette at small sizes) are held as one
uint8 tensor on the training device, and random crops and flips are done there on whole batches.
Large ones (ImageNet) are streamed from disk by a torch DataLoader; the same on-device augmentation
is then applied to each batch, so both paths train the same way.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib import shapes
from lib.seeds import Stream
from lib.seeds import generator as stream_generator

DATASETS = ("shapes", "digits", "cifar10", "imagenette", "imagenet", "folder")
# Default image side per dataset; `image_size=` changes it. A `folder` of images that all share one
# size keeps that size; FOLDER_MIXED_SIZE is for folders of mixed sizes.
DEFAULT_IMAGE_SIZE = {"shapes": 32, "digits": 32, "cifar10": 32, "imagenette": 128, "imagenet": 224}
FOLDER_MIXED_SIZE = 64
MIN_IMAGE_SIZE = 8
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Imagenette's ten classes: the class folders (ILSVRC-2012 wnids) of fast.ai's archives
# (https://github.com/fastai/imagenette, whose README names them: tench, English springer, cassette
# player, chain saw, church, French horn, garbage truck, gas pump, golf ball, parachute).
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                    "n03417042", "n03425413", "n03445777", "n03888257")
DISPLAY_NAMES = {"cifar10": "CIFAR-10", "imagenette": "Imagenette", "imagenet": "ImageNet"}
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
    """A dataset with train/val/test splits, class names and the training set's channel statistics.

    `val` may be empty (a run asked for no validation split: `val_fraction=0` or `n_val=0`);
    `fit` then trains without validation and says so.
    """

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
        side = f"{self.channels}x{self.image_size}x{self.image_size} images"
        if self.info.get("size_note"):
            side += f" ({self.info['size_note']})"
        level = self.info.get("difficulty", "standard")
        name = repr(self.name) if level == "standard" else f"{self.name!r} ({level})"
        return f"Dataset({name}: {self.num_classes} classes, {side}, {sizes}, {where})"


def check_name(name: str) -> None:
    """Raise DatasetError, listing the choices, unless `name` is one of DATASETS."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def check_arguments(name: str, root: str | os.PathLike | None = None, *, image_size: int | None = None,
                    seed: int = 0, n_train: int = 10_000, n_val: int = 2_000, n_test: int = 2_000,
                    val_fraction: float = 0.1, download: bool = False, difficulty: str = "standard") -> None:
    """The rules for `load`'s arguments, checked before any work (`load` calls it first; the command
    line and `lib.params` call it to refuse bad values before anything else runs). Raises
    DatasetError with a one-line message naming the argument. Chapter 0."""
    check_name(name)
    whole = {"seed": (seed, 0), "n_train": (n_train, 1), "n_val": (n_val, 0), "n_test": (n_test, 1)}
    if image_size is not None:
        whole["image_size"] = (image_size, MIN_IMAGE_SIZE)
    for argument, (value, floor) in whole.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < floor:
            raise DatasetError(f"{argument} must be a whole number of at least {floor}, got {value!r}")
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction must be in [0, 1) (0: no validation split), got {val_fraction!r}")
    if difficulty not in shapes.DIFFICULTIES:
        raise DatasetError(f"unknown difficulty {difficulty!r}; choose one of: {', '.join(shapes.DIFFICULTIES)}")
    if name in ("shapes", "digits"):
        return
    if root is None:
        raise DatasetError(f"dataset {name!r} is read from disk: pass root= (--data-root) with its folder")
    if not download and not Path(root).expanduser().is_dir():
        raise DatasetError(f"data root {root} does not exist")


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
    difficulty: str = "standard",
) -> Dataset:
    """Load a dataset by name. Defined in chapter 0; chapter 5 explains the splits.

    name: one of DATASETS. `shapes` is generated (n_train/n_val/n_test images from `seed`, as hard
    as `difficulty`, a name in `lib.shapes.DIFFICULTIES`);
    `digits` is scikit-learn's handwritten digits; `cifar10`, `imagenette` and `imagenet` read local
    copies under `root` (`download=True` fetches the first two); `folder` reads any ImageNet-style
    folder `root/train/<class>/...` with `root/val/` (and optionally `root/test/`).
    `image_size` defaults to DEFAULT_IMAGE_SIZE; a `folder` whose images all share one size keeps
    it (the dataset's line says so), one of mixed sizes gets FOLDER_MIXED_SIZE.
    Where a dataset has no separate validation split, one is carved from train (`val_fraction` of
    it, stratified by class, `seed` fixing which images); `val_fraction=0` (or `n_val=0` for
    shapes) means no validation split, and `fit` then trains without validation. A carve-out that
    cannot work (a class with a single training image, fewer held-out images than classes) is
    refused before any work with a one-line error naming `val_fraction`. (`digits` keeps its own
    60/20/20 split.) Every argument is checked first (`check_arguments`).
    """
    check_arguments(name, root, image_size=image_size, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                    val_fraction=val_fraction, download=download, difficulty=difficulty)
    size = DEFAULT_IMAGE_SIZE.get(name) if image_size is None else int(image_size)
    if name == "shapes":
        return _load_shapes(size, seed, n_train, n_val, n_test, difficulty)
    if name == "digits":
        return _load_digits(size, seed)
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


def _load_shapes(size: int, seed: int, n_train: int, n_val: int, n_test: int, difficulty: str) -> Dataset:
    splits = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:  # no validation split was asked for
            splits[split] = TensorSplit(torch.empty(0, 3, size, size, dtype=torch.uint8),
                                        torch.empty(0, dtype=torch.int64))
            continue
        images, labels = shapes.generate(n, split, seed=seed, size=size,
                                         difficulty=shapes.DIFFICULTIES[difficulty])
        splits[split] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))
    mean, std = channel_stats(splits["train"].images)
    return Dataset("shapes", list(shapes.CLASSES), splits["train"], splits["val"], splits["test"], mean, std,
                   hierarchy={k: list(v) for k, v in shapes.HIERARCHY.items()},
                   info={"source": "generated by lib.shapes", "seed": seed, "difficulty": difficulty,
                         "val": "generated" if n_val else "none (n_val=0)"})


def _load_digits(size: int, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # Its own fixed split (val_fraction does not apply): 60% train, 20% validation, 20% test,
    # stratified by class and fixed by the seed (sizes as in stratified_split: ceil of the share held).
    train_idx, rest = stratified_split(labels, 0.4, seed)
    val_idx, test_idx = (rest[i] for i in stratified_split(labels[rest], 0.5, seed + 1))
    full = TensorSplit(images, labels)
    train, val, test = (_subset(full, idx) for idx in (train_idx, val_idx, test_idx))
    mean, std = channel_stats(train.images)
    return Dataset("digits", [str(d) for d in range(10)], train, val, test, mean, std,
                   info={"source": "sklearn.datasets.load_digits (UCI optical digits, 8x8)",
                         "val": "20% of the images"})


# ---------------------------------------------------------------------------------------------
# Datasets read from disk


def _load_cifar10(root: Path, size, seed, val_fraction, download, in_memory) -> Dataset:
    if (root / "train").is_dir():  # the same images as an image folder (e.g. JPEG exports)
        return _load_folder(root, size, seed, val_fraction, in_memory, name="cifar10", classes=CIFAR10_CLASSES)
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
    train_idx, val_idx = _carve(splits[0].labels, val_fraction, seed, list(parts[0].classes), str(root))
    train, val = _subset(splits[0], train_idx), _subset(splits[0], val_idx)
    mean, std = channel_stats(train.images)
    return Dataset("cifar10", list(parts[0].classes), train, val, splits[1], mean, std,
                   info={"source": f"torchvision CIFAR10 at {root}",
                         "val": f"{val_fraction:.0%} of train" if val_fraction else "none (val_fraction=0)"})


def imagenette_classes() -> dict[str, str]:
    """Imagenette's ten classes: wnid -> ILSVRC-2012 class name, in wnid order. Chapter 2."""
    from lib.pretrained import imagenet_wnids

    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    names = imagenet_class_names()
    return {wnid: names[index[wnid]] for wnid in IMAGENETTE_WNIDS}


def _load_imagenette(root: Path, size, seed, val_fraction, download, in_memory) -> Dataset:
    folders = [root / stem for stem in ("imagenette2-160", "imagenette2-320", "imagenette2")]
    found = [f for f in folders if (f / "train").is_dir()]
    if not found:
        if not download:
            raise DatasetError(f"Imagenette not found under {root}: expected one of "
                               f"{', '.join(f.name for f in folders)} with train/ and val/ inside "
                               "(pass download=True / --download to fetch the 160px version)")
        from torchvision.datasets import Imagenette

        Imagenette(str(root), split="train", size="160px", download=True)
        found = [root / "imagenette2-160"]
    data = _load_folder(found[0], size, seed, val_fraction, in_memory, name="imagenette")
    names = imagenette_classes()
    data.info["wnids"] = list(data.classes)
    data.classes = [names.get(wnid, wnid) for wnid in data.classes]
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

    Class folders are found and listed by torchvision (`find_classes`, `make_dataset`: image files
    by extension, also in subfolders of a class folder, in sorted order). Raises DatasetError
    naming the folder or file when the layout is wrong, a class folder holds no image or a file is
    empty. Chapter 2 shows the layout.
    """
    from torchvision.datasets.folder import find_classes, make_dataset

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist or is not a folder")
    try:
        classes, class_to_idx = find_classes(folder)
    except FileNotFoundError:
        raise DatasetError(f"{folder} has no class folders: expected {folder}/<class>/<image files>") from None

    def is_image(path: str) -> bool:
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            return False
        if os.path.getsize(path) == 0:
            raise DatasetError(f"{path} is empty (0 bytes): the archive was probably not fully "
                               "extracted; extract it again or delete the file")
        return True

    samples = make_dataset(str(folder), class_to_idx, is_valid_file=is_image, allow_empty=True)
    counts = np.bincount([label for _, label in samples], minlength=len(classes))
    if (counts == 0).any():
        empty = classes[int(np.flatnonzero(counts == 0)[0])]
        raise DatasetError(f"class folder {folder / empty} holds no images: the archive may be only "
                           "partly extracted; extract it again")
    return [path for path, _ in samples], [label for _, label in samples], classes


def common_size(paths: list[str]) -> tuple[int, int] | None:
    """The (width, height) that every image file shares, read from the files' headers; None as
    soon as two differ. Chapter 5 (image folders of your own)."""
    from PIL import Image

    first = None
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except Exception as error:  # PIL raises several types for damaged files
            raise DatasetError(f"cannot read image {path}: {error}; the file is damaged: replace or "
                               "delete it") from None
        if first is None:
            first = size
        elif size != first:
            return None
    return first


def _folder_size(parts: dict, root: Path, size: int | None) -> tuple[int, str]:
    """The image side for a folder dataset, and the note for its line: the size asked for, the
    images' own size when they all share one, or FOLDER_MIXED_SIZE."""
    if size is not None:
        return size, ""
    shared = common_size([p for paths, _ in parts.values() for p in paths])
    if shared is None:
        return FOLDER_MIXED_SIZE, "resized: the images' sizes differ; image_size= sets another"
    side = min(shared)
    if side < MIN_IMAGE_SIZE:
        raise DatasetError(f"the images in {root} are {shared[0]}x{shared[1]}, smaller than {MIN_IMAGE_SIZE} "
                           "pixels: pass image_size= (--image-size) to enlarge them")
    note = "the images' own size" if shared[0] == shared[1] else f"centre crops of the images' {shared[0]}x{shared[1]}"
    return side, note


def _load_folder(root: Path, size, seed, val_fraction, in_memory, name: str,
                 classes: list[str] | None = None) -> Dataset:
    """An ImageNet-layout folder; `classes`, when given, are the class folders it must have."""
    expected = classes
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist")
    if not (root / "train").is_dir():
        raise DatasetError(f"{root} has no train/ folder: an image folder dataset needs "
                           f"{root}/train/<class>/ and {root}/val/<class>/ (or test/)")
    train_paths, train_labels, classes = scan_folder(root / "train")
    if expected is not None and classes != expected:
        raise DatasetError(f"{root / 'train'} has class folders {classes}, not {DISPLAY_NAMES.get(name, name)}'s "
                           f"{expected}; use dataset 'folder' for other image folders")
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
    if has_test and has_val:
        test, val = held["test"], held["val"]
        train = (train_paths, train_labels)
        val_note = "val/"
    else:  # the held-out folder is the test split; carve a validation split from train
        test = held["test"] if has_test else held["val"]
        labels_t = torch.tensor(train_labels, dtype=torch.int64)
        train_idx, val_idx = _carve(labels_t, val_fraction, seed, classes, str(root / "train"))
        train = ([train_paths[i] for i in train_idx], [train_labels[i] for i in train_idx])
        val = ([train_paths[i] for i in val_idx], [train_labels[i] for i in val_idx])
        val_note = f"{val_fraction:.0%} of train/" if val_fraction else "none (val_fraction=0)"
    parts = {"train": train, "val": val, "test": test}
    size, size_note = _folder_size(parts, root, size)
    total = sum(len(p[0]) for p in parts.values())
    if in_memory is None:
        in_memory = total * 3 * size * size <= IN_MEMORY_LIMIT_BYTES
    info = {"source": str(root), "val": val_note, "test": "test/" if has_test else "val/", "size_note": size_note}
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
            array = np.array(image, dtype=np.uint8)  # a writable copy (asarray's is read-only)
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
    """Split indices into (kept, held), holding out `fraction` of them with every class in the same
    proportion on both sides; `seed` fixes which. Chapter 5.

    scikit-learn's `train_test_split(stratify=...)` chooses them: ceil(fraction * N) images are
    held in all, spread over the classes in proportion (a class too small for its share may have
    none held). Both index tensors are sorted. Raises ValueError when a class has a single image
    or either side would have fewer images than there are classes.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    kept, held = train_test_split(index, test_size=fraction, stratify=np.asarray(labels), random_state=seed)
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))


def _carve(labels: torch.Tensor, fraction: float, seed: int, classes: list[str],
           where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A validation split carved from training labels: (train, val) indices, before any work. When
    the carve-out is impossible (a class with one image; fewer images on a side than classes),
    DatasetError says so in one line and names `val_fraction`. `fraction` 0 carves nothing."""
    everything = torch.arange(len(labels))
    if fraction == 0:
        return everything, everything[:0]
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    held = math.ceil(fraction * len(labels))
    remedy = ("pass val_fraction=0 (--val-fraction 0) to train without a validation split, or add val/ and "
              "test/ folders")
    if counts.min() < 2:
        raise DatasetError(f"class {classes[int(counts.argmin())]!r} has {counts.min()} training image(s) in "
                           f"{where}: a validation split needs at least 2 per class; {remedy}")
    if held < len(classes) or len(labels) - held < len(classes):
        least = len(classes) / len(labels)
        raise DatasetError(f"val_fraction={fraction:g} of {len(labels)} images in {where} cannot give each of the "
                           f"{len(classes)} classes an image on both sides (it needs between {least:.2f} and "
                           f"{1 - least:.2f}); {remedy}")
    return stratified_split(labels, fraction, seed)


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


class CropFlip:
    """Random crops after `pad` pixels of reflection padding, and random horizontal flips, of whole
    batches (N, C, height, width) of any dtype, on any device. Chapter 5 explains augmentation.

    Both are one gather: for each image a row shift, a column shift and a flip choose which source
    pixel lands where (the padding is never built: a reflected index points back into the image).
    `draw` chooses them for n images from a CPU generator; `apply` (or calling the object) applies
    them to a batch.
    """

    def __init__(self, height: int, width: int, pad: int = 4, flip: bool = True, device="cpu"):
        if not 0 <= pad < min(height, width):
            raise ValueError(f"pad must be in [0, {min(height, width)}) for {height}x{width} images, got {pad}")
        self.height, self.width, self.pad, self.flip = height, width, pad, flip
        shifts = torch.arange(2 * pad + 1)[:, None]
        # rows: for each shift, the source row of every output row, times the width (its offset);
        # cols: for each shift, the source column of every output column; flipped shifts follow.
        self.rows = (_reflect(shifts + torch.arange(height) - pad, height) * width).to(device)
        cols = _reflect(shifts + torch.arange(width) - pad, width)
        self.cols = torch.cat([cols, cols.flip(1)]).to(device)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (row choice, column choice) for n images. A row choice r in [0, 2 pad] shifts the
        crop down by r - pad pixels; a column choice c in [0, 2 pad] shifts it right by c - pad, and
        c + 2 pad + 1 is the same shift, flipped."""
        span = 2 * self.pad + 1
        rows = torch.randint(0, span, (n,), generator=generator)
        cols = torch.randint(0, span, (n,), generator=generator)
        if self.flip:
            cols += span * (torch.rand(n, generator=generator) < 0.5)
        return rows.to(self.rows.device), cols.to(self.rows.device)

    def apply(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The batch x with each image's choice (from `draw`) applied."""
        n, c, h, w = x.shape
        source = self.rows.index_select(0, rows)[:, :, None] + self.cols.index_select(0, cols)[:, None, :]
        index = source.view(n, 1, h * w).expand(n, c, h * w)
        return x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, *self.draw(len(x), generator))


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Positions outside [0, size) mirrored back inside, as reflection padding does (no repeated edge)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops (after `pad` pixels of reflection padding) and horizontal flips of a batch
    (N, C, H, W) of any dtype, on whatever device it lives; randomness from `generator` (CPU).
    The loaders use the same `CropFlip`, drawing a whole epoch's choices at once."""
    return CropFlip(x.shape[-2], x.shape[-1], pad, flip, x.device)(x, generator)


class Normalize:
    """uint8 batch -> float batch with the dataset's per-channel mean and std: x * scale + shift,
    with scale = 1 / (255 std) and shift = -mean / std, in place after the conversion to float (the
    fastest of the forms measured, torchvision's `to_dtype` + `normalize` included: see
    benchmarks/README.md)."""

    def __init__(self, mean, std, device, channels_last: bool = False):
        mean = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        self.scale = (1 / (255 * std)).to(device, torch.float32)
        self.shift = (-mean / std).to(device, torch.float32)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32, copy=True).mul_(self.scale).add_(self.shift)  # never the dataset itself
        return x.contiguous(memory_format=self.memory_format)


class _Batches:
    """What both loaders share: batch counting, the epoch that fixes their randomness, and the
    random choices of an epoch (order: Stream.SHUFFLE; crops and flips: Stream.AUGMENT)."""

    def __init__(self, split, batch_size: int, device, mean, std, shuffle: bool, augment: bool, drop_last: bool,
                 seed: int, channels_last: bool, image_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.split, self.device = split, torch.device(device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.seed, self.epoch = seed, 0
        self.normalize = Normalize(mean, std, self.device, channels_last)
        self.crop_flip = CropFlip(image_size, image_size, device=self.device) if augment else None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Generator:
        return stream_generator(self.seed, self.epoch, Stream.SHUFFLE)

    def _augmentation(self):
        """This epoch's crop and flip choices for every position in the epoch (None without)."""
        if self.crop_flip is None:
            return None
        return self.crop_flip.draw(len(self.split), stream_generator(self.seed, self.epoch, Stream.AUGMENT))

    def _finish(self, x: torch.Tensor, choices, start: int) -> torch.Tensor:
        if choices is not None:
            rows, cols = choices
            x = self.crop_flip.apply(x, rows[start:start + len(x)], cols[start:start + len(x)])
        return self.normalize(x)


class DeviceLoader(_Batches):
    """Batches from a split held on the training device: shuffling, crops and flips happen there.

    Iterating yields (float images normalised with the training set's statistics, labels).
    Call `set_epoch(epoch)` before each epoch: the order and augmentation depend only on
    (seed, epoch), which makes resumed runs exact.
    """

    def __init__(self, split: TensorSplit, batch_size: int, device, mean, std, *, shuffle: bool = False,
                 augment: bool = False, drop_last: bool = False, seed: int = 0, channels_last: bool = False):
        super().__init__(split.to(device), batch_size, device, mean, std, shuffle, augment, drop_last, seed,
                         channels_last, split.images.shape[-1])

    def __iter__(self):
        images, labels = self.split.images, self.split.labels
        n, size = len(labels), self.batch_size
        order = torch.randperm(n, generator=self._order()).to(self.device) if self.shuffle else None
        choices = self._augmentation()
        for start in range(0, len(self) * size, size):
            if order is None:
                x, y = images[start:start + size], labels[start:start + size]
            else:
                idx = order[start:start + size]
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
            yield self._finish(x, choices, start), y


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
        super().__init__(split, batch_size, device, mean, std, shuffle, augment, drop_last, seed, channels_last,
                         split.image_size)
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers

    def _reader(self) -> torch.utils.data.DataLoader:
        """The DataLoader that decodes this epoch's files in worker processes, in this loader's order
        (lib.distributed's sharded loader replaces the order by its shard of it)."""
        return self._decoding(shuffle=self.shuffle, generator=self._order())

    def _decoding(self, **order) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            _FileDataset(self.split), batch_size=self.batch_size, drop_last=self.drop_last,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda", persistent_workers=False,
            **order)

    def __iter__(self):
        loader = self._reader()
        choices = self._augmentation()
        start = 0
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield self._finish(x, choices, start), y.to(self.device, non_blocking=True)
            start += len(y)


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
