"""Generated detection scenes: several objects of the course's classes per image, with boxes.

Chapter 6.4 ("Object detection") explains it. Each image shows a few objects drawn exactly as in
`lib.shapes` (the same ten classes, outlines and textured backgrounds), at different places, sizes
and rotations, none overlapping another and none cut by the border, plus small distracting blobs
and pixel noise. Each object comes with its class and its box: the smallest axis-aligned rectangle
holding every pixel the object covers at least half. Boxes are in pixels, (x0, y0, x1, y1), with
(x1, y1) one past the last covered pixel, as in COCO (`lib.coco` reads and writes that format).

The same seed always gives the same scenes, on any machine; each split draws from its own random
stream (seed, split), so the test scenes do not change when more training scenes are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lib import shapes

CLASSES: list[str] = list(shapes.CLASSES)
SPLITS = ("train", "val", "test")
_CHUNK = 64  # scenes whose backgrounds and noise are drawn together
_PLACEMENT_TRIES = 100  # random positions tried for each object before the scene gets one object fewer


@dataclass(frozen=True)
class Layout:
    """What a scene holds. The defaults keep detection learnable by a small detector in under a
    minute of CPU training at 128x128 pixels (measured in chapter 6.4)."""

    objects: tuple[int, int] = (2, 5)  # objects per scene, smallest and largest number
    radius: tuple[float, float] = (0.07, 0.16)  # object radius, as a fraction of the image side
    noise: float = 0.04  # standard deviation of the Gaussian pixel noise (pixels in [0, 1])
    contrast: tuple[float, float] = (0.45, 0.9)  # colour distance between object and background
    clutter: int = 4  # small distracting blobs per scene, at most
    clutter_radius: tuple[float, float] = (0.012, 0.03)  # blob radius, as a fraction of the side

    def check(self) -> None:
        """Raise ValueError (one line) if a setting is impossible."""
        low, high = self.objects
        if not 1 <= low <= high:
            raise ValueError(f"objects must be (smallest, largest) with 1 <= smallest <= largest, got {self.objects}")
        r_low, r_high = self.radius
        if not 0 < r_low <= r_high <= 0.3:
            raise ValueError(f"radius must be (smallest, largest) fractions with 0 < smallest <= largest <= 0.3, "
                             f"got {self.radius}")
        if self.noise < 0 or self.clutter < 0:
            raise ValueError(f"noise and clutter must not be negative, got {self.noise} and {self.clutter}")


@dataclass
class Scenes:
    """Images with their objects: uint8 images (N, 3, H, W); per image, boxes (K, 4) as float32
    (x0, y0, x1, y1) in pixels and labels (K,) as int64 indices into `classes`."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    classes: list[str]
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 of shape (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if not len(self.images) == len(self.boxes) == len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.boxes)} box arrays and "
                             f"{len(self.labels)} label arrays; give one of each per image")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        """The side of the (square) images in pixels."""
        return self.images.shape[-1]

    @property
    def num_objects(self) -> int:
        return sum(len(labels) for labels in self.labels)

    def subset(self, indices) -> Scenes:
        """The scenes at `indices`, in that order."""
        indices = [int(i) for i in indices]
        return Scenes(self.images[indices], [self.boxes[i] for i in indices], [self.labels[i] for i in indices],
                      self.classes, dict(self.info))

    def targets(self, device="cpu") -> list[dict[str, torch.Tensor]]:
        """The boxes and labels in torchvision's detection format: one dict per image with
        "boxes" (K, 4) float32 and "labels" (K,) int64."""
        return [{"boxes": torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1, 4),
                 "labels": torch.as_tensor(lab, dtype=torch.int64, device=device)}
                for b, lab in zip(self.boxes, self.labels)]

    def class_counts(self) -> np.ndarray:
        """Objects per class over all scenes."""
        flat = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        return np.bincount(flat.astype(np.int64), minlength=len(self.classes))


def _place(rng: np.random.Generator, count: int, size: int, layout: Layout) -> list[tuple[float, float, float]]:
    """Centres and radii (pixels) of up to `count` objects that overlap neither each other nor the border."""
    placed: list[tuple[float, float, float]] = []
    reach = 1.25  # a rotated, stretched object stays within 1.25 radii of its centre
    for _ in range(count):
        for _ in range(_PLACEMENT_TRIES):
            r = rng.uniform(*layout.radius) * size
            margin = reach * r + 1
            if 2 * margin >= size:
                continue
            cx, cy = rng.uniform(margin, size - margin, 2)
            if all(np.hypot(cx - x, cy - y) > reach * (r + s) + 2 for x, y, s in placed):
                placed.append((cx, cy, r))
                break
    return placed


def _contrasting_colour(rng: np.random.Generator, around: np.ndarray, contrast: float) -> np.ndarray:
    """A colour at distance about `contrast * sqrt(3)` from the mean colour `around`, inside [0, 1]."""
    direction = rng.normal(0, 1, 3)
    direction /= np.linalg.norm(direction)
    colour = np.clip(around + contrast * direction * np.sqrt(3), 0, 1)
    if np.linalg.norm(colour - around) < 0.5 * contrast:  # clipping ate the contrast: go the other way
        colour = np.clip(around - contrast * direction * np.sqrt(3), 0, 1)
    return colour.astype(np.float32)


def _draw(canvas: np.ndarray, rng: np.random.Generator, class_index: int, cx: float, cy: float, r: float,
          layout: Layout) -> np.ndarray:
    """Draw one object onto `canvas` (H, W, 3 float) in place; return its box (x0, y0, x1, y1)."""
    size = canvas.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    squash = rng.uniform(0.8, 1.2)  # mild anisotropic stretch, as in lib.shapes
    contrast = rng.uniform(*layout.contrast)
    light = rng.uniform(-1, 1)
    x0, x1 = max(0, int(cx - 1.3 * r) - 1), min(size, int(cx + 1.3 * r) + 2)
    y0, y1 = max(0, int(cy - 1.3 * r) - 1), min(size, int(cy + 1.3 * r) + 2)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5  # pixel centres
    dx, dy = xs - cx, ys - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / (r * squash)
    v = (-sin * dx + cos * dy) / r
    distance = shapes.signed_distance(CLASSES[class_index], u, v) * r  # back to pixels
    coverage = np.clip(0.5 - distance, 0, 1)[..., None]  # anti-aliased edge, one pixel wide
    window = canvas[y0:y1, x0:x1]
    colour = _contrasting_colour(rng, window.reshape(-1, 3).mean(axis=0), contrast)
    fill = colour * (1 + 0.25 * light * np.clip(v, -1, 1))[..., None]  # a little lighting
    canvas[y0:y1, x0:x1] = window * (1 - coverage) + fill * coverage
    rows, cols = np.nonzero(coverage[..., 0] >= 0.5)
    return np.array([x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1], np.float32)


def _clutter(canvas: np.ndarray, rng: np.random.Generator, layout: Layout) -> None:
    """Small blobs in random colours, so that 'a spot of colour' alone does not make an object."""
    size = canvas.shape[0]
    for _ in range(rng.integers(0, layout.clutter + 1)):
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(*layout.clutter_radius) * size
        x0, x1 = max(0, int(cx - radius) - 2), min(size, int(cx + radius) + 3)
        y0, y1 = max(0, int(cy - radius) - 2), min(size, int(cy + radius) + 3)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        coverage = np.clip(0.5 - (np.hypot(xs - cx, ys - cy) - radius), 0, 1)[..., None]
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - coverage) + colour * coverage


def generate(n: int, split: str = "train", seed: int = 0, size: int = 128, layout: Layout = Layout()) -> Scenes:
    """Generate `n` scenes of one split (chapter 6.4). The same (n, split, seed, size, layout)
    always gives the same scenes, and the first scenes do not depend on `n`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels for scenes of several objects, got {size}")
    layout.check()
    images = np.empty((n, 3, size, size), np.uint8)
    all_boxes, all_labels = [], []
    stream = [seed, SPLITS.index(split)]
    for start in range(0, n, _CHUNK):
        # Backgrounds and noise are drawn for whole chunks of _CHUNK scenes, objects scene by scene,
        # each from its own stream: scene i is the same whatever n is.
        chunk_rng = np.random.default_rng([*stream, 0, start // _CHUNK])
        canvases = shapes.backgrounds(chunk_rng, _CHUNK, size)
        noise = chunk_rng.normal(0, layout.noise, canvases.shape).astype(np.float32)
        stop = min(n, start + _CHUNK)
        for i in range(start, stop):
            rng = np.random.default_rng([*stream, 1, i])
            canvas = canvases[i - start]
            _clutter(canvas, rng, layout)  # first, so that no blob hides part of an object
            count = int(rng.integers(layout.objects[0], layout.objects[1] + 1))
            boxes, labels = [], []
            for cx, cy, r in _place(rng, count, size, layout):
                label = int(rng.integers(len(CLASSES)))
                boxes.append(_draw(canvas, rng, label, cx, cy, r, layout))
                labels.append(label)
            all_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
            all_labels.append(np.array(labels, np.int64))
        pixels = np.clip((canvases[: stop - start] + noise[: stop - start]) * 255 + 0.5, 0, 255)
        images[start:stop] = pixels.astype(np.uint8).transpose(0, 3, 1, 2)
    info = {"source": "lib.scenes", "split": split, "seed": seed, "size": size, "layout": layout}
    return Scenes(images, all_boxes, all_labels, CLASSES, info)
