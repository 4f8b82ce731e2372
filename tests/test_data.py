"""Datasets: shapes, determinism, splits, the folder reader and its error messages."""

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from lib import data, shapes

from .conftest import SHARED_CIFAR


def test_generation_is_deterministic_and_balanced():
    a_images, a_labels = shapes.generate(300, "train", seed=7)
    b_images, b_labels = shapes.generate(300, "train", seed=7)
    assert a_images.dtype == np.uint8 and a_images.shape == (300, 3, 32, 32)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    counts = np.bincount(a_labels, minlength=len(shapes.CLASSES))
    assert counts.max() - counts.min() <= 1
    c_images, _ = shapes.generate(300, "train", seed=8)
    assert not np.array_equal(a_images, c_images)


def test_splits_are_independent_streams():
    test_small, _ = shapes.generate(50, "test", seed=0)
    train_images, _ = shapes.generate(50, "train", seed=0)
    assert not np.array_equal(test_small, train_images)
    # the test split does not depend on how many training images were asked for
    small = data.load("shapes", n_train=20, n_val=10, n_test=30)
    large = data.load("shapes", n_train=60, n_val=10, n_test=30)
    assert torch.equal(small.test.images, large.test.images)


@pytest.mark.parametrize("size", [64, 128])
def test_other_sizes(size):
    images, _ = shapes.generate(12, "val", seed=1, size=size)
    assert images.shape == (12, 3, size, size)


def test_hierarchy_covers_every_class_once():
    members = [c for group in shapes.HIERARCHY.values() for c in group]
    assert sorted(members) == sorted(shapes.CLASSES) and len(set(members)) == len(members) >= 10
    assert len(set(shapes.WNIDS.values())) == len(shapes.CLASSES)


def test_dataset_object(tiny_shapes):
    ds = tiny_shapes
    assert (len(ds.train), len(ds.val), len(ds.test)) == (400, 100, 100)
    assert ds.num_classes == 10 and ds.channels == 3 and ds.image_size == 32 and ds.in_memory
    assert ds.train.images.dtype == torch.uint8
    assert all(0 < s < 1 for s in ds.std) and all(0 < m < 1 for m in ds.mean)


def test_digits():
    ds = data.load("digits")
    assert ds.channels == 1 and ds.image_size == 32 and ds.num_classes == 10
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    joined = torch.cat([ds.train.images, ds.val.images, ds.test.images]).flatten(1)
    assert len(torch.unique(joined, dim=0)) > 1700  # splits do not share images (a few digits repeat)


def test_unknown_dataset_lists_choices():
    with pytest.raises(data.DatasetError, match="unknown dataset 'imagenet21k'; choose one of: shapes, digits"):
        data.load("imagenet21k")


def test_missing_datasets_say_how_to_get_them(tmp_path):
    with pytest.raises(data.DatasetError, match="download=True"):
        data.load("cifar10", tmp_path)
    with pytest.raises(data.DatasetError, match="Imagenette not found"):
        data.load("imagenette", tmp_path)
    with pytest.raises(data.DatasetError, match="ILSVRC2012_img_train.tar"):
        data.load("imagenet", tmp_path)
    with pytest.raises(data.DatasetError, match="pass root="):
        data.load("folder")
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load("folder", tmp_path / "nowhere")


def test_folder_round_trip(tiny_shapes, tmp_path):
    small = data.Dataset("shapes", tiny_shapes.classes, tiny_shapes.train, tiny_shapes.val, tiny_shapes.test,
                         tiny_shapes.mean, tiny_shapes.std)
    data.write_folder(small, tmp_path)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(shapes.CLASSES)
    back = data.load("folder", tmp_path, image_size=32)
    assert back.classes == sorted(shapes.CLASSES) and back.in_memory
    assert (len(back.train), len(back.val), len(back.test)) == (400, 100, 100)
    # PNG is lossless: the same multiset of images comes back
    original = sorted(x.numpy().tobytes() for x in tiny_shapes.test.images)
    assert sorted(x.numpy().tobytes() for x in back.test.images) == original


def test_folder_without_test_carves_validation(tiny_shapes, tmp_path):
    data.write_folder(tiny_shapes, tmp_path, splits=("train", "val"))
    ds = data.load("folder", tmp_path, image_size=32, val_fraction=0.25)
    assert len(ds.test) == 100  # val/ became the test split
    assert len(ds.val) == 100 and len(ds.train) == 300  # 25% of train/ carved out, per class
    streamed = data.load("folder", tmp_path, image_size=32, val_fraction=0.25, in_memory=False)
    assert not streamed.in_memory and len(streamed.train) == 300
    x, y = next(iter(data.loader(streamed, "test", 64)))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (64,)


def _write_tiny_folder(root, classes=("a", "b"), splits=("train", "val"), n=3):
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (10, 12), (40 * i, 90, 200)).save(root / split / c / f"{i}.png")


def test_folder_errors_name_the_problem(tmp_path):
    _write_tiny_folder(tmp_path)
    (tmp_path / "train" / "a" / "1.png").write_bytes(b"")
    with pytest.raises(data.DatasetError, match=r"1\.png is empty \(0 bytes\)"):
        data.load("folder", tmp_path, image_size=8, val_fraction=0.5)
    (tmp_path / "train" / "a" / "1.png").write_bytes(b"this is not a png")
    with pytest.raises(data.DatasetError, match=r"cannot read image .*1\.png"):
        data.load("folder", tmp_path, image_size=8, val_fraction=0.5)
    for f in (tmp_path / "train" / "a").iterdir():
        f.unlink()
    with pytest.raises(data.DatasetError, match="holds no images"):
        data.load("folder", tmp_path, image_size=8, val_fraction=0.5)


def test_folder_class_mismatch_and_missing_split(tmp_path):
    _write_tiny_folder(tmp_path / "one", splits=("train",))
    with pytest.raises(data.DatasetError, match="neither val/ nor test/"):
        data.load("folder", tmp_path / "one", image_size=8)
    _write_tiny_folder(tmp_path / "two", splits=("train",))
    _write_tiny_folder(tmp_path / "two", classes=("a", "c"), splits=("val",))
    with pytest.raises(data.DatasetError, match="different class folders"):
        data.load("folder", tmp_path / "two", image_size=8)
    (tmp_path / "three" / "train").mkdir(parents=True)
    (tmp_path / "three" / "val").mkdir()
    with pytest.raises(data.DatasetError, match="no class folders"):
        data.load("folder", tmp_path / "three", image_size=8)


def test_cifar10_folder_with_wrong_classes_is_refused(tmp_path):
    _write_tiny_folder(tmp_path, classes=("cat", "dog"), splits=("train", "test"))
    with pytest.raises(data.DatasetError, match="not CIFAR-10's"):
        data.load("cifar10", tmp_path)


def test_device_loader_is_deterministic_per_epoch(tiny_shapes):
    def first_batch(epoch):
        loader = data.loader(tiny_shapes, "train", 32, train=True, augment=True, seed=1)
        loader.set_epoch(epoch)
        return next(iter(loader))

    x0, y0 = first_batch(0)
    x0_again, y0_again = first_batch(0)
    x1, _ = first_batch(1)
    assert torch.equal(x0, x0_again) and torch.equal(y0, y0_again)
    assert not torch.equal(x0, x1)
    assert abs(x0.mean().item()) < 0.5  # normalised with the training statistics


def test_augment_batch_crops_and_flips():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    out = data.augment_batch(x, generator, pad=0, flip=True)
    for original, new in zip(x, out):
        assert torch.equal(new, original) or torch.equal(new, original.flip(2))
    shifted = data.augment_batch(x, torch.Generator().manual_seed(1), pad=1, flip=False)
    assert shifted.shape == x.shape and shifted.dtype == torch.uint8


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="the real CIFAR-10 archive in ../shared is not here")
def test_real_cifar10_jpeg_folder(tmp_path):
    """Reads a slice of the real CIFAR-10 (JPEG folder layout) through the cifar10 loader."""
    wanted = {f"{split}/{c}/{i:04d}.jpg" for split in ("train", "test") for c in data.CIFAR10_CLASSES
              for i in range(1, 21)}
    with tarfile.open(SHARED_CIFAR) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and any(m.name.endswith(w) for w in wanted)]
        prefix = members[0].name.split("train/")[0].split("test/")[0]
        archive.extractall(tmp_path, members=members, filter="data")
    ds = data.load("cifar10", tmp_path / prefix)
    assert ds.classes == data.CIFAR10_CLASSES and ds.image_size == 32
    assert len(ds.test) == len([m for m in members if "/test/" in "/" + m.name])
    assert len(ds.train) + len(ds.val) == len(members) - len(ds.test)


# ---------------------------------------------------------------------------------------------
# Few-shot folders, splits that may be empty, and the folder's own image size


def _write_images(root, counts: dict, splits=("train", "val"), size=(10, 12), held=3):
    """root/<split>/<class>/<i>.png: counts[class] images in train/, `held` in the other splits."""
    for split in splits:
        for c, n in counts.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else held):
                Image.new("RGB", size, (20 * i % 255, 90, 200)).save(root / split / c / f"{i}.png")


def test_one_image_per_class_is_refused_before_any_work_naming_val_fraction(tmp_path, monkeypatch):
    _write_images(tmp_path, {"a": 1, "b": 1, "c": 1})
    monkeypatch.setattr(data, "read_images", lambda *a, **k: pytest.fail("images were decoded"))
    with pytest.raises(data.DatasetError) as caught:
        data.load("folder", tmp_path)
    message = str(caught.value)
    assert "class 'a' has 1 training image(s)" in message and "val_fraction=0" in message and "\n" not in message


def test_too_few_images_for_the_fraction_is_refused(tmp_path):
    _write_images(tmp_path, {"a": 3, "b": 3, "c": 3})
    with pytest.raises(data.DatasetError, match=r"val_fraction=0.1 of 9 images .* cannot give each of the 3"):
        data.load("folder", tmp_path)
    ds = data.load("folder", tmp_path, val_fraction=0.34)  # ceil(0.34 * 9) = 4 held: every class can have one
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5, 4, 9)


def test_val_fraction_zero_means_no_validation_split(tmp_path):
    _write_images(tmp_path, {"a": 1, "b": 1})
    ds = data.load("folder", tmp_path, val_fraction=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (2, 0, 6)
    assert ds.val.images.shape == (0, 3, 10, 10) and ds.info["val"] == "none (val_fraction=0)"
    assert list(data.loader(ds, "val", 8)) == []
    streamed = data.load("folder", tmp_path, val_fraction=0, in_memory=False)
    assert len(streamed.val) == 0 and list(data.loader(streamed, "val", 8, num_workers=0)) == []


def test_shapes_without_validation():
    ds = data.load("shapes", n_train=20, n_val=0, n_test=10)
    assert len(ds.val) == 0 and ds.val.images.shape == (0, 3, 32, 32) and ds.info["val"] == "none (n_val=0)"


def test_shapes_difficulty_is_named_recorded_and_changes_the_images():
    standard = data.load("shapes", n_train=60, n_val=0, n_test=10)
    easy = data.load("shapes", n_train=60, n_val=0, n_test=10, difficulty="easy")
    assert torch.equal(standard.train.labels, easy.train.labels)  # same classes, other images
    assert not torch.equal(standard.train.images, easy.train.images)
    assert easy.info["difficulty"] == "easy" and "'shapes' (easy)" in repr(easy)
    assert "easy" not in repr(standard)
    # the easy images have less noise: neighbouring pixels of the background differ less
    rough = [(d.train.images[:, :, :, 1:].float() - d.train.images[:, :, :, :-1].float()).abs().median()
             for d in (standard, easy)]
    assert rough[1] < rough[0]


def test_difficulty_is_checked_before_any_work():
    with pytest.raises(data.DatasetError, match="unknown difficulty 'hard'; choose one of: standard, easy"):
        data.load("digits", difficulty="hard")  # checked for every dataset, used by shapes only


@pytest.mark.parametrize("kwargs, message", [
    ({"n_train": 0}, "n_train must be a whole number of at least 1, got 0"),
    ({"n_val": -1}, "n_val must be a whole number of at least 0, got -1"),
    ({"n_test": 0}, "n_test must be a whole number of at least 1, got 0"),
    ({"image_size": 4}, "image_size must be a whole number of at least 8, got 4"),
    ({"seed": -3}, "seed must be a whole number of at least 0, got -3"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\) \(0: no validation split\), got 1.0"),
    ({"n_train": 2.5}, "n_train must be a whole number"),
])
def test_check_arguments_one_line_each(kwargs, message):
    with pytest.raises(data.DatasetError, match=message):
        data.load("shapes", **kwargs)
    with pytest.raises(data.DatasetError, match=message):
        data.check_arguments("shapes", **kwargs)


def test_folder_keeps_the_images_own_size(tmp_path):
    _write_images(tmp_path / "square", {"a": 4, "b": 4}, size=(20, 20))
    ds = data.load("folder", tmp_path / "square", val_fraction=0.5)
    assert ds.image_size == 20 and "(the images' own size)" in repr(ds)
    _write_images(tmp_path / "wide", {"a": 4, "b": 4}, size=(24, 16))
    ds = data.load("folder", tmp_path / "wide", val_fraction=0.5)
    assert ds.image_size == 16 and "centre crops of the images' 24x16" in repr(ds)
    asked = data.load("folder", tmp_path / "square", val_fraction=0.5, image_size=12)
    assert asked.image_size == 12 and "own size" not in repr(asked)


def test_folder_of_mixed_sizes_gets_64(tmp_path):
    _write_images(tmp_path, {"a": 4, "b": 4}, size=(20, 20))
    Image.new("RGB", (30, 30)).save(tmp_path / "train" / "a" / "big.png")
    ds = data.load("folder", tmp_path, val_fraction=0.5)
    assert ds.image_size == data.FOLDER_MIXED_SIZE == 64 and "sizes differ" in repr(ds)


def test_folder_of_tiny_images_asks_for_image_size(tmp_path):
    _write_images(tmp_path, {"a": 2, "b": 2}, size=(5, 5))
    with pytest.raises(data.DatasetError, match=r"are 5x5, smaller than 8 pixels: pass image_size="):
        data.load("folder", tmp_path, val_fraction=0.5)


def test_stratified_split_sizes_and_seed():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = data.stratified_split(labels, 0.25, seed=5)
    assert len(held) == 25 and len(kept) == 75  # ceil(0.25 * 100)
    assert torch.bincount(labels[held]).tolist() == [12, 8, 5] or torch.bincount(labels[held]).tolist() == [13, 7, 5]
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(100))
    again_kept, again_held = data.stratified_split(labels, 0.25, seed=5)
    assert torch.equal(held, again_held) and torch.equal(kept, again_kept)
    assert not torch.equal(held, data.stratified_split(labels, 0.25, seed=6)[1])


def test_scan_folder_finds_nested_files_and_names_an_empty_class(tmp_path):
    _write_images(tmp_path, {"a": 2, "b": 2}, splits=("train",))
    (tmp_path / "train" / "a" / "more").mkdir()
    Image.new("RGB", (10, 12)).save(tmp_path / "train" / "a" / "more" / "x.jpg")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    paths, labels, classes = data.scan_folder(tmp_path / "train")
    assert classes == ["a", "b"] and labels == [0, 0, 0, 1, 1] and paths[2].endswith("more/x.jpg")
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(data.DatasetError, match=r"class folder .*train/c holds no images"):
        data.scan_folder(tmp_path / "train")


def test_crop_flip_is_reflection_padding_then_crop_then_flip():
    crop_flip = data.CropFlip(6, 5, pad=2)
    x = torch.randint(0, 255, (64, 3, 6, 5), dtype=torch.uint8)
    rows, cols = crop_flip.draw(64, torch.Generator().manual_seed(0))
    out = crop_flip.apply(x, rows, cols)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    flipped = 0
    for i in range(64):
        dy, dx, flip = int(rows[i]), int(cols[i]) % 5, int(cols[i]) >= 5
        expected = padded[i, :, dy:dy + 6, dx:dx + 5]
        expected = expected.flip(2) if flip else expected
        assert torch.equal(out[i].float(), expected), i
        flipped += flip
    assert 10 < flipped < 54  # about half are flipped
    with pytest.raises(ValueError, match="pad must be in"):
        data.CropFlip(4, 4, pad=4)


def test_normalize_matches_the_formula():
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = data.Normalize(mean, std, "cpu")(x)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-5)


def test_shuffle_and_augmentation_use_their_own_streams(tiny_shapes):
    plain = data.loader(tiny_shapes, "train", 400, train=True, augment=False, seed=2)
    augmented = data.loader(tiny_shapes, "train", 400, train=True, augment=True, seed=2)
    _, y_plain = next(iter(plain))
    _, y_augmented = next(iter(augmented))
    assert torch.equal(y_plain, y_augmented)  # augmenting does not change the order


def test_imagenette_classes_are_the_readme_names():
    names = data.imagenette_classes()
    assert list(names) == list(data.IMAGENETTE_WNIDS) == sorted(data.IMAGENETTE_WNIDS)
    assert list(names.values()) == ["tench", "English springer", "cassette player", "chain saw", "church",
                                    "French horn", "garbage truck", "gas pump", "golf ball", "parachute"]


@pytest.mark.parametrize("file_size", [(16, 16), (30, 20)])
def test_read_image_returns_a_writable_array(tmp_path, file_size):
    """A read-only array makes torch.from_numpy warn in every streamed run (the DataLoader workers)."""
    path = tmp_path / "x.jpg"
    Image.new("RGB", file_size, (10, 120, 200)).save(path)
    array = data.read_image(str(path), 16)
    assert array.shape == (3, 16, 16) and array.dtype == np.uint8
    assert array.flags.writeable
