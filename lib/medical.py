"""Medical images for the course: the 2D MedMNIST datasets, read through the `medmnist` package.

Chapter 6.6 ("Trust, for medical imaging") runs on them when `dataset` names one. MedMNIST v2
(Yang et al., 2023) packs each dataset as one NumPy `.npz` file, `<flag>.npz` (28x28 pixels) or
`<flag>_<size>.npz` (64, 128 or 224), holding `train_images`, `train_labels`, `val_images`,
`val_labels`, `test_images`, `test_labels`: uint8 images (N, H, W) or (N, H, W, 3) and integer labels
(N, 1). `medmnist` downloads them (with `download=True`, from Zenodo, checking their MD5) and reads
them; this module turns them into the course's `lib.data.Dataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lib import data as data_lib

# The 2D MedMNIST datasets with one label per image (ChestMNIST, which is multi-label, is left out).
MEDMNIST_2D = ("pathmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
               "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist")
SIZES = (28, 64, 128, 224)


def file_name(flag: str, size: int = 28) -> str:
    """The file MedMNIST stores a dataset in: `pneumoniamnist.npz`, `pneumoniamnist_64.npz`, ..."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def check_name(flag: str) -> None:
    """Raise DatasetError, listing the choices, unless `flag` is one of MEDMNIST_2D."""
    if flag not in MEDMNIST_2D:
        raise data_lib.DatasetError(f"unknown MedMNIST dataset {flag!r}; choose one of: {', '.join(MEDMNIST_2D)}")


def load_medmnist(flag: str, root: str | os.PathLike | None = None, *, size: int = 28,
                  download: bool = False) -> data_lib.Dataset:
    """A 2D MedMNIST dataset as a `lib.data.Dataset` (train/val/test as MedMNIST splits them).

    flag: one of MEDMNIST_2D (e.g. "pneumoniamnist"); root: the folder holding `file_name(flag, size)`
    (default: medmnist's own, ~/.medmnist); `download=True` fetches the file when it is missing (it
    needs internet). Needs the `medmnist` package (`pip install medmnist`). Chapter 6.6.
    """
    check_name(flag)
    if size not in SIZES:
        raise data_lib.DatasetError(f"MedMNIST images come in sizes {', '.join(map(str, SIZES))}, not {size}")
    try:
        import medmnist
    except ImportError:
        raise data_lib.DatasetError("reading MedMNIST needs the medmnist package: pip install medmnist") from None
    root = Path(root).expanduser() if root is not None else Path(medmnist.info.DEFAULT_ROOT)
    if download:
        root.mkdir(parents=True, exist_ok=True)
    elif not (root / file_name(flag, size)).is_file():
        raise data_lib.DatasetError(f"MedMNIST file {root / file_name(flag, size)} not found; pass download=True "
                                    "(needs internet) or put the file there")
    info = medmnist.INFO[flag]
    reader = getattr(medmnist, info["python_class"])
    splits = {}
    for split in ("train", "val", "test"):
        try:
            part = reader(split=split, root=str(root), size=size, download=download and split == "train")
        except Exception as error:  # medmnist raises RuntimeError for failed downloads and missing files
            message = " ".join(str(error).split())
            raise data_lib.DatasetError(f"could not read MedMNIST {flag} under {root}: {message}") from None
        splits[split] = _as_split(part.imgs, part.labels, f"{root / file_name(flag, size)} ({split})")
    classes = [info["label"][str(k)] for k in range(len(info["label"]))]
    for name, split in splits.items():
        if split.labels.min() < 0 or split.labels.max() >= len(classes):
            raise data_lib.DatasetError(f"{flag} {name} labels run outside 0..{len(classes) - 1}; the file is "
                                        "not MedMNIST's: delete it and download it again")
    mean, std = data_lib.channel_stats(splits["train"].images)
    return data_lib.Dataset(flag, classes, splits["train"], splits["val"], splits["test"], mean, std,
                            info={"source": f"MedMNIST v2 {flag} at {root}", "licence": info.get("license", ""),
                                  "description": info.get("description", "")})


def _as_split(images: np.ndarray, labels: np.ndarray, where: str) -> data_lib.TensorSplit:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise data_lib.DatasetError(f"{where}: expected uint8 images (N, H, W) or (N, H, W, 3), got "
                                    f"{images.dtype} {images.shape}")
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise data_lib.DatasetError(f"{where}: expected one label per image, got labels of shape {labels.shape}")
    labels = labels.reshape(-1)
    if len(labels) != len(images):
        raise data_lib.DatasetError(f"{where}: {len(images)} images but {len(labels)} labels")
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    tensor = tensor[:, None] if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
    return data_lib.TensorSplit(tensor, torch.from_numpy(labels.astype(np.int64)))
