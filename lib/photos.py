"""Real photos that ship offline with scikit-image and scikit-learn, with their ImageNet class where it
is certain. Chapter 6.1 ("What an ImageNet network sees") shows an ImageNet network on them.

`samples()` gives the images; `catalogue()` says what each shows, which of ImageNet's 1000 classes
it belongs to when that is certain, and why not otherwise; `write_imagenet_folder` writes the
labelled ones in ImageNet's validation layout (`val/<wnid>/<name>.JPEG`) for `python -m lib.evaluate`;
`from_folder` reads a reader's own folder of images the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class PhotoError(ValueError):
    """An unknown photo name or a folder that would be overwritten. The message says what to do."""


@dataclass(frozen=True)
class Photo:
    """One sample photo: where it comes from, what it shows, and its ImageNet class if certain."""

    name: str
    source: str  # the package and function that ship it
    description: str
    wnid: str | None  # the ILSVRC-2012 class it belongs to, where certain
    accept: tuple[str, ...]  # every class a correct answer may name (several where ImageNet splits hairs)
    note: str  # why the class is certain, ambiguous or missing


TABBY, TIGER_CAT, EGYPTIAN_CAT, ESPRESSO = "n02123045", "n02123159", "n02124075", "n07920052"

_PHOTOS = (
    Photo("chelsea", "skimage.data.chelsea", "a domestic cat (Chelsea), striped tabby coat, head and shoulders",
          TABBY, (TABBY, TIGER_CAT, EGYPTIAN_CAT),
          "a tabby; ImageNet's three short-haired domestic cat classes (tabby, tiger cat, Egyptian cat) differ "
          "only in coat pattern, which one photo rarely settles, so any of the three counts"),
    Photo("coffee", "skimage.data.coffee", "a cup of espresso on a saucer, photographed at an espresso bar",
          ESPRESSO, (ESPRESSO,), "espresso (n07920052) is an ImageNet class; 'cup' (n07930864) is another"),
    Photo("astronaut", "skimage.data.astronaut", "portrait of the astronaut Eileen Collins in a flight suit",
          None, (), "no class for an astronaut or a portrait: people appear in only three classes "
          "(ballplayer, groom, scuba diver)"),
    Photo("rocket", "skimage.data.rocket", "a Falcon 9 rocket on its launch pad at night",
          None, (), "no rocket class: the nearest are 'missile', 'projectile' and 'space shuttle'"),
    Photo("motorcycle", "skimage.data.stereo_motorcycle", "a motorbike in a workshop (Middlebury stereo, left view)",
          None, (), "no motorcycle class: the nearest are 'moped' and 'motor scooter'"),
    Photo("camera", "skimage.data.camera", "a man with a camera on a tripod, grayscale",
          None, (), "several objects (person, camera, tripod); no single certain class"),
    Photo("coins", "skimage.data.coins", "ancient Greek coins on a gray background, grayscale",
          None, (), "ImageNet's 1000 classes have no coin class"),
    Photo("china", "sklearn.datasets.load_sample_images", "a many-storeyed Chinese pavilion on a wooded hill",
          None, (), "'palace', 'monastery' and 'bell cote' all fit partly; none is certain"),
    Photo("flower", "sklearn.datasets.load_sample_images", "an orange dahlia-like flower, close up",
          None, (), "ImageNet's 1000 classes have almost no flowers (daisy is one); no dahlia"),
    Photo("hubble_deep_field", "skimage.data.hubble_deep_field", "Hubble's extreme deep field: distant galaxies",
          None, (), "astronomy is outside ImageNet's classes"),
    Photo("retina", "skimage.data.retina", "a fundus photograph of a human retina",
          None, (), "medical images are outside ImageNet's classes"),
    Photo("immunohistochemistry", "skimage.data.immunohistochemistry", "stained colon tissue under a microscope",
          None, (), "microscopy is outside ImageNet's classes"),
    Photo("moon", "skimage.data.moon", "the surface of the moon, low contrast, grayscale",
          None, (), "outside ImageNet's classes"),
    Photo("page", "skimage.data.page", "a scanned page of printed text, grayscale",
          None, (), "no class for a page of text ('book jacket', 'menu' and 'crossword puzzle' come near)"),
)


def catalogue() -> dict[str, Photo]:
    """Every sample photo by name, in a fixed order: the two with a certain class first."""
    return {photo.name: photo for photo in _PHOTOS}


def _check(names) -> list[str]:
    known = catalogue()
    if names is None:
        return list(known)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PhotoError(f"unknown photo(s) {unknown}; choose from: {', '.join(known)}")
    return list(names)


def _array(name: str):
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[0 if name == "china" else 1]
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def samples(names=None) -> dict:
    """Photos by name as PIL images, as the packages ship them (RGB, or 'L' for grayscale ones).
    `names` chooses some (default: all of `catalogue()`). Nothing is downloaded."""
    from PIL import Image

    return {name: Image.fromarray(_array(name)) for name in _check(names)}


def labelled() -> list[str]:
    """Names of the photos whose ImageNet class is certain."""
    return [photo.name for photo in _PHOTOS if photo.wnid]


def from_folder(root: str | os.PathLike, limit: int | None = None) -> dict:
    """The images under `root` (searched recursively), by path relative to `root`, read fully into
    memory as PIL images in their own mode. With `limit`, at most that many, spread evenly over the
    sorted list of files (so that a folder of class folders gives images of many classes). Chapter
    6.1 classifies a reader's own folder this way."""
    from PIL import Image

    from lib.data import IMAGE_EXTENSIONS, DatasetError

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    paths = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
    if not paths:
        raise DatasetError(f"no image files under {root} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if limit is not None:
        if limit < 1:
            raise PhotoError(f"limit must be at least 1, got {limit}")
        if limit < len(paths):  # evenly spaced, the first and the last file included
            step = (len(paths) - 1) / max(1, limit - 1)
            paths = [paths[round(i * step)] for i in range(limit)]
    images = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as error:  # PIL raises several types for damaged files
            raise DatasetError(f"cannot read image {path}: {error}; the file is damaged: replace or delete it") from None
        images[path.relative_to(root).as_posix()] = image
    return images


MODES = ("RGB", "L", "CMYK")


def write_imagenet_folder(root: str | os.PathLike, names=None, split: str = "val",
                          modes=("RGB",), quality: int = 95) -> list[Path]:
    """Write labelled photos as JPEG in ImageNet's layout, `root/<split>/<wnid>/<name>.JPEG`, once per
    mode in `modes` ("RGB", "L" for grayscale, "CMYK"); modes after the first get the suffix
    `_<mode>`. `names` defaults to every photo with a certain class. Refuses to overwrite a file.
    Returns the paths written. Chapter 6.1; tests use it to run `python -m lib.evaluate`."""
    names = labelled() if names is None else _check(names)
    known = catalogue()
    unlabelled = [n for n in names if not known[n].wnid]
    if unlabelled:
        raise PhotoError(f"{unlabelled} have no certain ImageNet class, so no <wnid> folder; "
                         f"choose from {labelled()}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise PhotoError(f"unknown image mode(s) {bad or list(modes)}; choose from {', '.join(MODES)}")
    root = Path(root)
    targets = []
    for name in names:
        for i, mode in enumerate(modes):
            stem = name if i == 0 else f"{name}_{mode.lower()}"
            targets.append((name, mode, root / split / known[name].wnid / f"{stem}.JPEG"))
    existing = [str(path) for _, _, path in targets if path.exists()]
    if existing:
        raise PhotoError(f"{existing[0]} exists already; write into an empty folder")
    images = samples(sorted({name for name, _, _ in targets}))
    for name, mode, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        images[name].convert(mode).save(path, "JPEG", quality=quality)
    return [path for _, _, path in targets]
