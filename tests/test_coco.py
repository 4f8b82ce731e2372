"""The COCO-format reader and writer of chapter 6.4, on tiny generated COCO folders."""

import json

import numpy as np
import pytest
from PIL import Image

from lib import coco, scenes


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    made = scenes.generate(5, "test", seed=2, size=64)
    path = coco.write(root, "val2017", made)
    return root, made, path


def test_round_trip(written):
    root, made, path = written
    assert path == root / "annotations" / "instances_val2017.json"
    back = coco.read(root, "val2017", size=64)
    assert back.classes == made.classes and len(back) == len(made)
    assert np.array_equal(back.images, made.images)  # PNG is lossless and the size is unchanged
    for a, b, la, lb in zip(back.boxes, made.boxes, back.labels, made.labels):
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert np.array_equal(la, lb)
    assert back.info["crowd_skipped"] == 0 and back.info["small_boxes_skipped"] == 0


def test_written_file_is_coco(written):
    """The file loads in an independent COCO implementation, and the ground truth scores mAP 1 against itself."""
    from faster_coco_eval import COCO, COCOeval_faster

    root, made, path = written
    truth = COCO(str(path))
    assert len(truth.getImgIds()) == 5 and len(truth.getCatIds()) == len(made.classes)
    assert len(truth.getAnnIds()) == made.num_objects
    detections = [{**a, "score": 1.0} for a in json.loads(path.read_text())["annotations"]]
    evaluation = COCOeval_faster(truth, truth.loadRes(detections), "bbox", print_function=lambda *a: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_limit_and_letterbox(written):
    root, made, _ = written
    small = coco.read(root, "val2017", size=32, limit=2)
    assert small.images.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(small.boxes[1], made.boxes[1] / 2, atol=1e-4)


def test_foreign_file(tmp_path):
    """A hand-written file as COCO has them: ids from 1 with gaps, a wide image, a crowd box, an image
    without objects, a box too small to keep."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (200, 100), (255, 0, 0)).save(tmp_path / "imgs" / "wide.jpg")
    Image.new("RGB", (50, 50), (0, 0, 255)).save(tmp_path / "imgs" / "empty.png")
    payload = {
        "images": [{"id": 7, "file_name": "wide.jpg", "width": 200, "height": 100},
                   {"id": 9, "file_name": "empty.png", "width": 50, "height": 50}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 40, 30], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [100, 0, 100, 100], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},
            {"id": 4, "image_id": 7, "category_id": 3, "bbox": [5, 5, 1, 1], "iscrowd": 0},
        ],
    }
    (tmp_path / "annotations" / "instances_imgs.json").write_text(json.dumps(payload))
    read = coco.read(tmp_path, "imgs", size=100)
    assert read.classes == ["car", "dog"]  # in the order of the category ids
    # the wide image is halved and sits at the top: rows 50 and below are padding
    assert read.images.shape == (2, 3, 100, 100)
    assert (np.abs(read.images[0, :, :50].astype(int) - np.array([255, 0, 0])[:, None, None]) <= 3).all()  # JPEG
    assert (read.images[0, :, 50:] == 0).all()
    np.testing.assert_allclose(read.boxes[0], [[5, 10, 25, 25], [50, 0, 100, 50]])
    assert read.labels[0].tolist() == [1, 0]
    assert read.boxes[1].shape == (0, 4) and read.labels[1].shape == (0,)
    assert read.info["crowd_skipped"] == 1 and read.info["small_boxes_skipped"] == 1


def _folder(tmp_path, payload):
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "annotations" / "instances_s.json").write_text(payload if isinstance(payload, str)
                                                                else json.dumps(payload))
    return tmp_path


GOOD = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": []}


@pytest.mark.parametrize("payload, message", [
    ("{not json", "is not valid JSON"),
    ({"images": [], "categories": []}, "has no list 'annotations'"),
    ({**GOOD, "categories": []}, "lists no categories"),
    ({**GOOD, "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]},
     "refers to image id 2"),
    ({**GOOD, "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}]},
     "category_id 5"),
    ({**GOOD, "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]},
     r"is not \[x, y, width, height\]"),
    ({**GOOD, "images": [{"id": 1}]}, "has no 'file_name'"),
    (GOOD, "a.png is listed in the annotations but missing"),
])
def test_bad_files(tmp_path, payload, message):
    with pytest.raises(coco.CocoError, match=message):
        coco.read(_folder(tmp_path, payload), "s")


def test_bad_folder_and_split(tmp_path):
    with pytest.raises(coco.CocoError, match="does not exist"):
        coco.read(tmp_path / "nowhere", "train2017")
    _folder(tmp_path, GOOD)
    with pytest.raises(coco.CocoError, match=r"no annotations for split 'train2017'.*found: instances_s.json"):
        coco.read(tmp_path, "train2017")
    with pytest.raises(coco.CocoError, match="limit must be at least 1"):
        coco.read(tmp_path, "s", limit=0)
    with pytest.raises(coco.CocoError, match="no COCO folder given"):
        coco.check_folder(None, ["s"])
    coco.check_folder(tmp_path, ["s"])  # all there: no error
    with pytest.raises(coco.CocoError, match="split 'val2017'"):
        coco.check_folder(tmp_path, ["s", "val2017"])


def test_write_never_replaces(written):
    root, made, path = written
    before = path.read_bytes()
    with pytest.raises(coco.CocoError, match="already exists"):
        coco.write(root, "val2017", made.subset([0]))
    assert path.read_bytes() == before
