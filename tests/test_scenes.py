"""The generated detection scenes of chapter 6.4: determinism, boxes that fit the drawn objects, errors."""

import numpy as np
import pytest
import torch

from lib import scenes, shapes


@pytest.fixture(scope="module")
def few():
    return scenes.generate(40, "train", seed=5, size=96)


def test_deterministic_and_independent_of_n(few):
    again = scenes.generate(40, "train", seed=5, size=96)
    assert np.array_equal(few.images, again.images)
    assert all(np.array_equal(a, b) for a, b in zip(few.boxes, again.boxes))
    assert all(np.array_equal(a, b) for a, b in zip(few.labels, again.labels))
    prefix = scenes.generate(3, "train", seed=5, size=96)  # scene i does not depend on n
    assert np.array_equal(prefix.images, few.images[:3])
    other = scenes.generate(40, "train", seed=6, size=96)
    assert not np.array_equal(other.images, few.images)
    test = scenes.generate(40, "test", seed=5, size=96)
    assert not np.array_equal(test.images, few.images)


def test_shapes_and_types(few):
    assert few.images.shape == (40, 3, 96, 96) and few.images.dtype == np.uint8
    assert few.classes == shapes.CLASSES and few.image_size == 96
    low, high = scenes.Layout().objects
    for boxes, labels in zip(few.boxes, few.labels):
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert low <= len(labels) <= high
        assert labels.dtype == np.int64 and ((0 <= labels) & (labels < len(shapes.CLASSES))).all()
    assert few.num_objects == sum(len(lab) for lab in few.labels)
    assert few.class_counts().sum() == few.num_objects


def test_boxes_are_inside_and_do_not_overlap(few):
    from torchvision.ops import box_iou

    for boxes in few.boxes:
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 96).all()
        assert (boxes[:, 2] - boxes[:, 0] >= 4).all() and (boxes[:, 3] - boxes[:, 1] >= 4).all()
        iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)) - torch.eye(len(boxes))
        assert iou.max() < 0.3


def test_box_is_the_drawn_object():
    """Without noise or clutter, the pixels that differ from the bare background are the objects: each
    box is their extent (within the one-pixel anti-aliased edge), and nothing changed outside the boxes."""
    layout = scenes.Layout(noise=0.0, clutter=0)
    drawn = scenes.generate(8, "val", seed=1, size=64, layout=layout)
    # the bare backgrounds: the first stream of the first chunk (see scenes.generate)
    rng = np.random.default_rng([1, scenes.SPLITS.index("val"), 0, 0])
    bare = np.clip(shapes.backgrounds(rng, scenes._CHUNK, 64)[:8] * 255 + 0.5, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    for image, background, boxes in zip(drawn.images, bare, drawn.boxes):
        changed = (np.abs(image.astype(int) - background).max(axis=0) > 3)
        near = np.zeros_like(changed)
        for x0, y0, x1, y1 in boxes.astype(int):
            near[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
            rows, cols = np.nonzero(changed[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1])
            top, left = rows.min() + max(y0 - 1, 0), cols.min() + max(x0 - 1, 0)
            bottom, right = rows.max() + max(y0 - 1, 0) + 1, cols.max() + max(x0 - 1, 0) + 1
            assert abs(top - y0) <= 1 and abs(left - x0) <= 1 and abs(bottom - y1) <= 1 and abs(right - x1) <= 1
        assert not (changed & ~near).any()


def test_targets_for_torchvision(few):
    targets = few.targets()
    assert len(targets) == 40 and set(targets[0]) == {"boxes", "labels"}
    assert targets[0]["boxes"].dtype == torch.float32 and targets[0]["labels"].dtype == torch.int64
    assert torch.equal(targets[3]["boxes"], torch.from_numpy(few.boxes[3]))
    part = few.subset([4, 1])
    assert len(part) == 2 and np.array_equal(part.images[0], few.images[4])
    assert np.array_equal(part.boxes[1], few.boxes[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be at least 1"),
    (dict(split="dev"), "unknown split 'dev'"),
    (dict(size=16), "size must be at least 32"),
    (dict(layout=scenes.Layout(objects=(3, 2))), "objects must be"),
    (dict(layout=scenes.Layout(radius=(0.1, 0.5))), "radius must be"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenes.generate(**{"n": 2, **kwargs})


def test_scenes_checks_its_arrays():
    with pytest.raises(ValueError, match="2 images but 1 box arrays"):
        scenes.Scenes(np.zeros((2, 3, 8, 8), np.uint8), [np.zeros((0, 4))], [np.zeros(0)] * 2, ["a"])
