"""The generated dataset: a miniature ImageNet of drawn objects, made from a seed.

Chapter 0 ("How this course runs") introduces it and chapter 2 uses its class hierarchy.

Every image shows one object from one of ten classes on a textured background. The classes are
grouped under superclasses, the way ImageNet's classes hang under WordNet synsets. The object's
position, size, rotation and colours vary, the background is a random mix of gradients, stripes and
blotches, and pixel noise is added, so that a classifier must learn shape rather than colour or
position. Nothing is downloaded: the same seed always gives the same pixels, on any machine.

Each split draws from its own random stream (seed, split), so the test set does not change when the
training set is made larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The hierarchy: superclass -> classes. The identifiers imitate WordNet ids ("n02084071" is dog):
# "s" for superclass, "c" for class, then a number.
HIERARCHY: dict[str, list[str]] = {
    "round": ["disc", "ring", "crescent"],
    "polygon": ["triangle", "square", "hexagon"],
    "pointed": ["star", "cross", "arrow"],
    "paired": ["twin_discs"],
}
CLASSES: list[str] = [name for names in HIERARCHY.values() for name in names]
SUPERCLASS_OF: dict[str, str] = {c: s for s, names in HIERARCHY.items() for c in names}
WNIDS: dict[str, str] = {name: f"c{index + 1:08d}" for index, name in enumerate(CLASSES)}
SUPER_WNIDS: dict[str, str] = {name: f"s{index + 1:08d}" for index, name in enumerate(HIERARCHY)}

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Difficulty:
    """How hard the images are: the objects' size, position, contrast, the pixel noise and the
    clutter. The defaults are the "standard" images of DIFFICULTIES, which every chapter but
    chapter 5 trains on."""

    scale: tuple[float, float] = (0.45, 0.95)  # object radius as a fraction of half the image side
    max_shift: float = 0.45  # how far the centre may move, as a fraction of half the side
    noise: float = 0.08  # standard deviation of the Gaussian pixel noise (pixels in [0, 1])
    contrast: tuple[float, float] = (0.3, 0.9)  # colour distance between object and background
    clutter: int = 2  # how many small distracting blobs per image, at most


# Named difficulties, the values `lib.data.load("shapes", difficulty=...)` accepts.
# "standard" (the default of every chapter) is Difficulty()'s. "easy" (chapter 5's default) has
# larger, more central, cleaner objects without clutter: with it the article's CNN learns within
# the short runs that chapter 5 repeats fifteen times (about 1,200 images x 6 epochs), where the
# standard images leave it near chance. Measured in chapter 5 and benchmarks/README.md.
DIFFICULTIES: dict[str, Difficulty] = {
    "standard": Difficulty(),
    "easy": Difficulty(scale=(0.6, 0.95), max_shift=0.25, noise=0.02, contrast=(0.5, 0.9), clutter=0),
}


def _polar(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(x, y), np.arctan2(y, x)


def _regular_polygon(x, y, sides: int, radius: float = 1.0):
    """Signed distance (approximate, negative inside) to a regular polygon with a vertex on top."""
    r, theta = _polar(x, y)
    sector = 2 * np.pi / sides
    local = np.mod(theta - np.pi / 2, sector) - sector / 2
    apothem = radius * np.cos(np.pi / sides)
    return r * np.cos(local) - apothem


def _box(x, y, half_w: float, half_h: float):
    dx, dy = np.abs(x) - half_w, np.abs(y) - half_h
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    inside = np.minimum(np.maximum(dx, dy), 0)
    return outside + inside


def _star(x, y, points: int = 5, outer: float = 1.0, inner: float = 0.45):
    """Distance-like function for a star: radius minus the star's boundary radius at that angle."""
    r, theta = _polar(x, y)
    sector = 2 * np.pi / points
    t = np.abs(np.mod(theta - np.pi / 2, sector) - sector / 2) / (sector / 2)  # 0 at tips, 1 between
    boundary = outer + (inner - outer) * t
    return (r - boundary) * 0.6


def signed_distance(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Approximate signed distance (object units, negative inside) of each point to the object.

    The object of class `name` fits in the unit disc around the origin of its own frame. Also used
    by `lib.scenes` to draw the same objects in detection scenes (chapter 6.4)."""
    if name == "disc":
        return np.hypot(x, y) - 0.85
    if name == "ring":
        return np.abs(np.hypot(x, y) - 0.72) - 0.22
    if name == "crescent":
        return np.maximum(np.hypot(x, y) - 0.9, 0.62 - np.hypot(x - 0.45, y + 0.1))
    if name == "triangle":
        return _regular_polygon(x, y + 0.2, 3, 1.15)
    if name == "square":
        return _box(x, y, 0.68, 0.68)
    if name == "hexagon":
        return _regular_polygon(x, y, 6, 0.9)
    if name == "star":
        return _star(x, y)
    if name == "cross":
        return np.minimum(_box(x, y, 0.85, 0.24), _box(x, y, 0.24, 0.85))
    if name == "arrow":
        shaft = _box(x + 0.3, y, 0.55, 0.17)
        head = _regular_polygon(-(y), (x - 0.35), 3, 0.6)  # a triangle pointing along +x
        return np.minimum(shaft, head)
    if name == "twin_discs":
        return np.minimum(np.hypot(x - 0.5, y) - 0.4, np.hypot(x + 0.5, y) - 0.4)
    raise ValueError(f"unknown shape {name!r}; choose one of {CLASSES}")


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=(n, 3)).astype(np.float32)


def _linear_upsampling(coarse: int, size: int) -> np.ndarray:
    """A (size, coarse) matrix that interpolates `coarse` values linearly onto `size` pixels."""
    position = np.linspace(0, coarse - 1, size, dtype=np.float32)
    return np.clip(1 - np.abs(position[:, None] - np.arange(coarse, dtype=np.float32)[None]), 0, 1)


def backgrounds(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Textured backgrounds, shape (n, size, size, 3), float32 values roughly in [0, 1] (not yet
    clipped). Also the backgrounds of `lib.scenes` (chapter 6.4)."""
    coords = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    base = _random_colours(rng, n)
    second = _random_colours(rng, n)
    # A linear gradient between two colours in a random direction.
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    along = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy + 1) / 2
    strength = rng.uniform(0, 1, n).astype(np.float32)[:, None, None]
    mix = (along * strength)[..., None]
    out = base[:, None, None, :] * (1 - mix) + second[:, None, None, :] * mix
    # Stripes of a random frequency and direction.
    freq = rng.uniform(2, 9, n).astype(np.float32)[:, None, None]
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    proj = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    stripes = np.sin(np.pi * freq * proj + phase)
    amplitude = rng.uniform(0, 0.25, n).astype(np.float32)[:, None, None]
    out = out + (amplitude * stripes)[..., None] * rng.choice([-1.0, 1.0], size=(n, 1, 1, 3))
    # Blotches: coarse noise, upsampled by repetition and blurred a little.
    coarse = rng.normal(0, 1, size=(n, 4, 4, 3)).astype(np.float32)
    blend = _linear_upsampling(4, size)
    blotch = np.einsum("ia,nabc,jb->nijc", blend, coarse, blend, optimize=True)
    out = out + rng.uniform(0, 0.15, (n, 1, 1, 1)).astype(np.float32) * blotch
    return out


def render(
    labels: np.ndarray,
    rng: np.random.Generator,
    size: int = 32,
    difficulty: Difficulty = Difficulty(),
) -> np.ndarray:
    """Draw one image per label; returns uint8 images of shape (n, 3, size, size)."""
    labels = np.asarray(labels)
    n = len(labels)
    images = backgrounds(rng, n, size)
    pixel = 2.0 / size  # the width of one pixel in image coordinates [-1, 1]
    coords = (np.arange(size, dtype=np.float32) + 0.5) * pixel - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")

    scale = rng.uniform(*difficulty.scale, n).astype(np.float32)
    room = np.maximum(1 - scale, 0) * difficulty.max_shift / 0.45
    shift = rng.uniform(-1, 1, (n, 2)).astype(np.float32) * np.minimum(room, 1)[:, None]
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    squash = rng.uniform(0.8, 1.2, n).astype(np.float32)  # mild anisotropic stretch

    background_mean = images.mean(axis=(1, 2))
    contrast = rng.uniform(*difficulty.contrast, n).astype(np.float32)
    direction = rng.normal(0, 1, (n, 3)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    colour = np.clip(background_mean + contrast[:, None] * direction * np.sqrt(3), 0, 1)
    # Where clipping ate the contrast, push the colour the other way.
    weak = np.linalg.norm(colour - background_mean, axis=1) < 0.5 * contrast
    colour[weak] = np.clip(background_mean[weak] - contrast[weak, None] * direction[weak] * np.sqrt(3), 0, 1)

    for class_index in np.unique(labels):
        rows = np.flatnonzero(labels == class_index)
        # Inverse transform from image coordinates into the object's own frame.
        cx = xx[None] - shift[rows, 0, None, None]
        cy = yy[None] - shift[rows, 1, None, None]
        cos, sin = np.cos(angle[rows])[:, None, None], np.sin(angle[rows])[:, None, None]
        s = scale[rows][:, None, None]
        u = (cos * cx + sin * cy) / (s * squash[rows][:, None, None])
        v = (-sin * cx + cos * cy) / s
        distance = signed_distance(CLASSES[class_index], u, v) * s  # back to image units
        coverage = np.clip(0.5 - distance / pixel, 0, 1)[..., None]  # anti-aliased edge
        shade = 1 + 0.25 * (v[..., None] * rng.uniform(-1, 1, (len(rows), 1, 1, 1)))  # lighting
        fill = colour[rows][:, None, None, :] * shade
        images[rows] = images[rows] * (1 - coverage) + fill * coverage

    _add_clutter(images, rng, difficulty.clutter, xx, yy, pixel)
    images += rng.normal(0, difficulty.noise, images.shape).astype(np.float32)
    images = np.clip(images * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _add_clutter(images, rng, most: int, xx, yy, pixel) -> None:
    """Small blobs in random colours, so that 'a blob of colour' alone does not name the class."""
    n = len(images)
    for _ in range(most):
        present = rng.uniform(0, 1, n) < 0.5
        centre = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        radius = rng.uniform(0.06, 0.16, n).astype(np.float32)
        colour = _random_colours(rng, n)
        distance = np.hypot(xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None])
        coverage = np.clip(0.5 - (distance - radius[:, None, None]) / pixel, 0, 1)
        coverage *= present[:, None, None]
        coverage = coverage[..., None]
        images *= 1 - coverage
        images += colour[:, None, None, :] * coverage


def generate(
    n: int,
    split: str = "train",
    seed: int = 0,
    size: int = 32,
    difficulty: Difficulty = Difficulty(),
) -> tuple[np.ndarray, np.ndarray]:
    """Generate `n` images of one split: (uint8 images (n, 3, size, size), int64 labels (n,)).

    Classes are balanced (they differ by at most one image) and shuffled. The same
    (n, split, seed, size, difficulty) always gives the same arrays.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    chunk = max(1, 2_000_000 // (size * size))  # bounds the float32 working memory to ~100 MB
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        images[start:stop] = render(labels[start:stop], rng, size, difficulty)
    return images, labels
