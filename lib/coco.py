"""Object-detection data in the COCO format: read any COCO-format folder, write scenes as one.

Chapter 6.4 ("Object detection") uses it as its real-data path. A COCO-format folder holds, per split
(COCO 2017 calls them `train2017` and `val2017`):

    ROOT/annotations/instances_SPLIT.json   images, annotations and categories (Lin et al., 2014)
    ROOT/SPLIT/FILE_NAME                     each image named in the JSON's "images"

Each annotation's "bbox" is [x, y, width, height] in pixels of the original image, and its
"category_id" one of the "categories". `read` turns a split into `lib.scenes.Scenes`: each image is
scaled so that its longer side is `size` pixels, put in the top-left corner of a black `size` x
`size` square (so no image is distorted), and its boxes are scaled with it to (x0, y0, x1, y1).
Categories become class indices 0, 1, ... in the order of their ids. Crowd annotations
("iscrowd": 1, one box around a group) are left out, and so are boxes that end up smaller than
`min_box` pixels; `Scenes.info` counts both. Anything else unexpected stops with a one-line error.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lib import files
from lib.scenes import Scenes

LAYOUT = "ROOT/annotations/instances_SPLIT.json with the images in ROOT/SPLIT/ (COCO 2017: train2017, val2017)"


class CocoError(ValueError):
    """A COCO-format folder is missing, incomplete or malformed. The message says what to do."""


def annotation_file(root: str | os.PathLike, split: str) -> Path:
    """Where the annotations of `split` live in a COCO-format folder."""
    return Path(root).expanduser() / "annotations" / f"instances_{split}.json"


def check_folder(root: str | os.PathLike | None, splits) -> None:
    """Raise CocoError unless `root` is a folder holding the annotation file of every split in
    `splits`; cheap, so that a wrong path stops a run before any work (chapter 6.4)."""
    if root is None:
        raise CocoError(f"no COCO folder given; expected {LAYOUT}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CocoError(f"COCO folder {root} does not exist; expected {LAYOUT}")
    for split in splits:
        path = annotation_file(root, split)
        if not path.is_file():
            found = sorted(p.name for p in (root / "annotations").glob("instances_*.json"))
            raise CocoError(f"no annotations for split {split!r}: {path} is missing (found: "
                            f"{', '.join(found) or 'none'}); expected {LAYOUT}")


def _load_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CocoError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); "
                        "download or write it again") from None
    if not isinstance(payload, dict):
        raise CocoError(f"{path} holds a {type(payload).__name__}, not a COCO object with images, "
                        "annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(payload.get(key), list):
            raise CocoError(f"{path} has no list {key!r}: it is not a COCO instances file ({LAYOUT})")
    return payload


def _field(record: dict, key: str, path: Path, kind: str):
    if key not in record:
        raise CocoError(f"{path}: an entry of {kind!r} has no {key!r} ({record!r:.80}); fix or regenerate the file")
    return record[key]


def _letterbox(path: Path, size: int) -> tuple[np.ndarray, float]:
    """Read an image, scale its longer side to `size`, pad to a square; (uint8 (3, size, size), scale)."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise CocoError(f"image {path} is listed in the annotations but missing: copy it there or "
                        "remove it from the JSON") from None
    except Exception as error:  # PIL raises several types for damaged files
        raise CocoError(f"cannot read image {path} ({type(error).__name__}): the file is damaged; replace it") from None
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: new_size[1], : new_size[0]] = np.asarray(image)
    return canvas.transpose(2, 0, 1), scale


def read(root: str | os.PathLike, split: str, size: int = 128, limit: int | None = None,
         min_box: float = 1.0, threads: int = 8) -> Scenes:
    """Read one split of a COCO-format folder as `Scenes` of `size` x `size` images (chapter 6.4).

    `limit` keeps the first images in the JSON's order (all when None). Images without
    annotations are kept: a detector must also learn to find nothing.
    """
    check_folder(root, [split])
    root = Path(root).expanduser()
    if size < 16:
        raise CocoError(f"size must be at least 16 pixels, got {size}")
    if limit is not None and limit < 1:
        raise CocoError(f"limit must be at least 1 image (or None for all), got {limit}")
    path = annotation_file(root, split)
    payload = _load_json(path)

    categories = sorted(payload["categories"], key=lambda c: _field(c, "id", path, "categories"))
    index_of = {c["id"]: k for k, c in enumerate(categories)}
    classes = [str(_field(c, "name", path, "categories")) for c in categories]
    if not classes:
        raise CocoError(f"{path} lists no categories: nothing to detect")
    if len(index_of) != len(categories):
        raise CocoError(f"{path} gives two categories the same id; every category id must be unique")

    images = payload["images"][:limit] if limit is not None else payload["images"]
    if not images:
        raise CocoError(f"{path} lists no images")
    position = {}
    for k, image in enumerate(images):
        position[_field(image, "id", path, "images")] = k
        _field(image, "file_name", path, "images")
    known_ids = {_field(image, "id", path, "images") for image in payload["images"]}
    raw_boxes: list[list[list[float]]] = [[] for _ in images]
    raw_labels: list[list[int]] = [[] for _ in images]
    crowd = 0
    for annotation in payload["annotations"]:
        image_id = _field(annotation, "image_id", path, "annotations")
        if image_id not in known_ids:
            raise CocoError(f"{path}: an annotation refers to image id {image_id!r}, which is not in 'images'")
        category = _field(annotation, "category_id", path, "annotations")
        if category not in index_of:
            raise CocoError(f"{path}: an annotation has category_id {category!r}, which is not in 'categories'")
        bbox = _field(annotation, "bbox", path, "annotations")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise CocoError(f"{path}: bbox {bbox!r} of annotation {annotation.get('id')!r} is not "
                            "[x, y, width, height]")
        if image_id not in position:  # beyond `limit`
            continue
        if annotation.get("iscrowd", 0):
            crowd += 1
            continue
        raw_boxes[position[image_id]].append([float(v) for v in bbox])
        raw_labels[position[image_id]].append(index_of[category])

    with ThreadPoolExecutor(max(1, threads)) as pool:
        loaded = list(pool.map(lambda image: _letterbox(root / split / image["file_name"], size), images))
    pixels = np.empty((len(images), 3, size, size), np.uint8)
    boxes, labels, small = [], [], 0
    for k, ((picture, scale), xywh, classes_here) in enumerate(zip(loaded, raw_boxes, raw_labels)):
        pixels[k] = picture
        xywh = np.array(xywh, np.float32).reshape(-1, 4) * scale
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        keep = (xywh[:, 2] >= min_box) & (xywh[:, 3] >= min_box)
        small += int((~keep).sum())
        boxes.append(xyxy[keep])
        labels.append(np.array(classes_here, np.int64)[keep])
    info = {"source": str(root), "split": split, "size": size, "images": len(images),
            "images_in_file": len(payload["images"]), "crowd_skipped": crowd, "small_boxes_skipped": small}
    return Scenes(pixels, boxes, labels, classes, info)


def write(root: str | os.PathLike, split: str, scenes: Scenes, supercategories: dict[str, str] | None = None,
          overwrite: bool = False) -> Path:
    """Write `scenes` as split `split` of a COCO-format folder: PNG images in ROOT/SPLIT/ and
    ROOT/annotations/instances_SPLIT.json. Returns the JSON's path. Chapter 6.4.

    Category ids are the class indices plus one (COCO ids start at 1). An existing annotation file
    is never replaced unless `overwrite` is true.
    """
    from PIL import Image

    path = annotation_file(root, split)
    if path.exists() and not overwrite:
        raise CocoError(f"{path} already exists; choose another folder or split, or pass overwrite=True")
    image_dir = Path(root).expanduser() / split
    image_dir.mkdir(parents=True, exist_ok=True)
    supercategories = supercategories or {}
    images, annotations = [], []
    for k, (picture, boxes, labels) in enumerate(zip(scenes.images, scenes.boxes, scenes.labels)):
        name = f"{k:06d}.png"
        Image.fromarray(np.ascontiguousarray(picture.transpose(1, 2, 0))).save(image_dir / name)
        images.append({"id": k + 1, "file_name": name, "height": int(picture.shape[1]),
                       "width": int(picture.shape[2])})
        for (x0, y0, x1, y1), label in zip(np.asarray(boxes, float).reshape(-1, 4), labels):
            width, height = x1 - x0, y1 - y0
            annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": int(label) + 1,
                                "bbox": [x0, y0, width, height], "area": width * height, "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": supercategories.get(name, "object")}
                  for k, name in enumerate(scenes.classes)]
    files.write_json(path, {"info": {"description": f"written by lib.coco from {scenes.info.get('source', 'scenes')}"},
                            "images": images, "annotations": annotations, "categories": categories})
    return path
