"""lib.medical: MedMNIST read through the medmnist package, offline, from tiny files written here in
MedMNIST's format (chapter 6.6)."""

import numpy as np
import pytest
import torch

from lib import data, imbalance, medical

medmnist = pytest.importorskip("medmnist")

SPLIT_SIZES = {"train": 30, "val": 8, "test": 10}


def write_medmnist(folder, flag, rgb=False, size=28, classes=2, label=None):
    """A tiny `<flag>.npz` with MedMNIST's keys, shapes and dtypes: uint8 images (N, H, W[, 3]) and
    labels (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SPLIT_SIZES.items():
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        drawn = rng.integers(0, classes, (n, 1)) if label is None else np.full((n, 1), label)
        arrays[f"{split}_labels"] = drawn.astype(np.uint8)
    path = folder / medical.file_name(flag, size)
    np.savez_compressed(path, **arrays)
    return arrays


def test_reads_a_grayscale_binary_dataset(tmp_path):
    arrays = write_medmnist(tmp_path, "breastmnist")
    ds = medical.load_medmnist("breastmnist", tmp_path)
    assert ds.name == "breastmnist" and ds.classes == ["malignant", "normal, benign"]
    assert ds.channels == 1 and ds.image_size == 28
    for split, n in SPLIT_SIZES.items():
        part = getattr(ds, split)
        assert part.images.shape == (n, 1, 28, 28) and part.images.dtype == torch.uint8
        assert torch.equal(part.images[:, 0], torch.from_numpy(arrays[f"{split}_images"]))
        assert torch.equal(part.labels, torch.from_numpy(arrays[f"{split}_labels"][:, 0].astype(np.int64)))
    task = imbalance.rare_positive(ds, "malignant")  # chapter 6.6's path
    assert torch.equal(task.test.labels, (ds.test.labels == 0).long())


def test_reads_an_rgb_multiclass_dataset_at_64_pixels(tmp_path):
    arrays = write_medmnist(tmp_path, "bloodmnist", rgb=True, size=64, classes=8)
    ds = medical.load_medmnist("bloodmnist", tmp_path, size=64)
    assert ds.channels == 3 and ds.image_size == 64 and ds.num_classes == 8
    assert torch.equal(ds.train.images.permute(0, 2, 3, 1), torch.from_numpy(arrays["train_images"]))


def test_missing_file_says_where_and_what_to_do(tmp_path):
    with pytest.raises(data.DatasetError, match=r"pneumoniamnist\.npz not found; pass download=True"):
        medical.load_medmnist("pneumoniamnist", tmp_path)


def test_bad_names_sizes_and_labels(tmp_path):
    with pytest.raises(data.DatasetError, match="unknown MedMNIST dataset 'chestmnist'"):
        medical.load_medmnist("chestmnist", tmp_path)
    with pytest.raises(data.DatasetError, match="sizes 28, 64, 128, 224"):
        medical.load_medmnist("breastmnist", tmp_path, size=32)
    write_medmnist(tmp_path, "breastmnist", label=7)
    with pytest.raises(data.DatasetError, match="labels run outside 0..1"):
        medical.load_medmnist("breastmnist", tmp_path)
