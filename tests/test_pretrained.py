"""lib.pretrained (EfficientNet-Lite0 with its ImageNet weights, offline) and lib.photos."""

import numpy as np
import pytest
import torch
from PIL import Image

from lib import data, photos, pretrained


@pytest.fixture(scope="module")
def net():
    return pretrained.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def sample_photos():
    return photos.samples()


def test_same_logits_as_the_reference_implementation(net):
    """The architecture written from torchvision's blocks gives the companion package's logits."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(pretrained.lite0_weights_file())).eval()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
    assert torch.allclose(net.logits(x), expected, atol=1e-4, rtol=1e-4)
    assert sum(p.numel() for p in net.model.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # TensorFlow puts the odd pixel after (bottom/right)
    (225, 3, 2, (1, 1)),
    (56, 5, 2, (1, 2)),
    (57, 5, 2, (2, 2)),
    (7, 3, 1, (1, 1)),
])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    assert pretrained._same_padding(size, kernel, stride) == expected
    out = (size + sum(expected) - kernel) // stride + 1
    assert out == -(-size // stride)  # 'SAME': output = ceil(input / stride)


def test_other_input_sizes_and_the_feature_map(net):
    x = torch.randn(2, 3, 257, 311)
    assert net.logits(x).shape == (2, 1000)
    seen = []
    hook = net.feature_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net.logits(torch.randn(1, 3, 224, 224))
    hook.remove()
    assert seen == [torch.Size([1, 1280, 7, 7])]


def test_embeddings_are_what_the_classifier_reads(net):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    features = net.embed(x)
    assert features.shape == (2, 1280)
    with torch.no_grad():
        assert torch.allclose(net.classifier(features), net.logits(x), atol=1e-5)


def test_class_names_are_torchvisions(net):
    from torchvision.models import ResNet18_Weights

    assert net.classes == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"]) == data.imagenet_class_names()


def test_wnids_are_the_ilsvrc_order(net):
    wnids = net.wnids
    assert len(wnids) == 1000 and len(set(wnids)) == 1000 and wnids == sorted(wnids)
    known = {0: ("n01440764", "tench"), 281: ("n02123045", "tabby"), 282: ("n02123159", "tiger cat"),
             285: ("n02124075", "Egyptian cat"), 967: ("n07920052", "espresso"), 999: ("n15075141", "toilet tissue")}
    for index, (wnid, name) in known.items():
        assert (wnids[index], net.classes[index]) == (wnid, name)
    from torchvision.datasets.imagenette import Imagenette

    for wnid, names in Imagenette._WNID_TO_CLASS.items():  # an independent wnid -> name table
        assert net.classes[wnids.index(wnid)] == names[0]


def test_preprocessing_is_the_reference_one(net):
    assert (net.resize, net.crop, net.interpolation) == (256, 224, "bicubic")
    # (255 x - 127) / 128 on pixels x in [0, 1]: a flat image of value v becomes (v - 127) / 128
    flat = Image.new("RGB", (300, 500), (200, 127, 0))
    x = net.transform(flat)
    assert x.shape == (3, 224, 224)
    expected = torch.tensor([(200 - 127) / 128, 0.0, -127 / 128])
    assert torch.allclose(x.mean(dim=(1, 2)), expected, atol=1e-5) and x.std(dim=(1, 2)).max() < 1e-5
    ones = torch.ones(3, 2, 2)
    assert torch.allclose(net.normalize(ones), torch.full((3, 2, 2), 128 / 128))


@pytest.mark.parametrize("mode, size", [("L", (90, 60)), ("CMYK", (640, 480)), ("RGBA", (224, 224)),
                                        ("P", (300, 301)), ("RGB", (12, 40))])
def test_any_mode_and_size_becomes_one_input(net, mode, size):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    assert net.transform(image.convert(mode)).shape == (3, 224, 224)


def test_the_cat_and_the_espresso(net, sample_photos):
    catalogue = photos.catalogue()
    top = net.predict([sample_photos["chelsea"], sample_photos["coffee"]], k=5)
    assert top[0][0][0] in catalogue["chelsea"].accept
    assert top[1][0][:2] == ("n07920052", "espresso") and top[1][0][2] > 0.5
    for ranking in top:
        probabilities = [p for _, _, p in ranking]
        assert len(ranking) == 5 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1


def test_bad_input_is_refused(net, sample_photos):
    with pytest.raises(pretrained.PretrainedError, match="list of images"):
        net.predict(sample_photos["coffee"])
    with pytest.raises(pretrained.PretrainedError, match=r"\(N, 3, H, W\)"):
        net.logits(torch.zeros(3, 224, 224))
    with pytest.raises(pretrained.PretrainedError, match="k must be between 1 and 1000"):
        net.predict([sample_photos["coffee"]], k=0)


def test_unknown_name_lists_the_choices():
    with pytest.raises(pretrained.PretrainedError, match="unknown network 'resnet5'; choose efficientnet_lite0"):
        pretrained.load("resnet5")


def test_torchvision_weights_offline_fail_at_once(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    monkeypatch.setattr(pretrained, "_reachable", lambda host, timeout=5.0: False)  # no internet
    with pytest.raises(pretrained.PretrainedError, match="not on this machine .* cannot be reached"):
        pretrained.load("resnet50")
    assert not any(tmp_path.iterdir())


def test_damaged_weights_are_refused(monkeypatch, tmp_path):
    bad = tmp_path / "efficientnet-lite0.pth"
    bad.write_bytes(b"not weights")
    pretrained._lite0_state_dict.cache_clear()
    monkeypatch.setattr(pretrained, "lite0_weights_file", lambda: bad)
    try:
        with pytest.raises(pretrained.PretrainedError, match="damaged"):
            pretrained.load("efficientnet_lite0")
    finally:
        pretrained._lite0_state_dict.cache_clear()


def test_photos_ship_offline(sample_photos):
    assert list(sample_photos) == list(photos.catalogue())
    assert photos.labelled() == ["chelsea", "coffee"]
    assert sample_photos["camera"].mode == "L" and sample_photos["chelsea"].size == (451, 300)
    with pytest.raises(photos.PhotoError, match="unknown photo"):
        photos.samples(["lena"])


def test_imagenet_folder_of_photos(tmp_path):
    written = photos.write_imagenet_folder(tmp_path, modes=("RGB", "L", "CMYK"))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "val/n02123045/chelsea.JPEG", "val/n02123045/chelsea_cmyk.JPEG", "val/n02123045/chelsea_l.JPEG",
        "val/n07920052/coffee.JPEG", "val/n07920052/coffee_cmyk.JPEG", "val/n07920052/coffee_l.JPEG"]
    assert Image.open(tmp_path / "val/n07920052/coffee_cmyk.JPEG").mode == "CMYK"
    before = (tmp_path / "val/n02123045/chelsea.JPEG").read_bytes()
    with pytest.raises(photos.PhotoError, match="exists already"):
        photos.write_imagenet_folder(tmp_path)
    assert (tmp_path / "val/n02123045/chelsea.JPEG").read_bytes() == before
    with pytest.raises(photos.PhotoError, match="no certain ImageNet class"):
        photos.write_imagenet_folder(tmp_path / "other", names=["astronaut"])


def test_a_folder_of_your_own(tmp_path):
    photos.write_imagenet_folder(tmp_path, modes=("RGB", "L"))
    (tmp_path / "notes.txt").write_text("not an image")
    found = photos.from_folder(tmp_path)
    assert sorted(found) == ["val/n02123045/chelsea.JPEG", "val/n02123045/chelsea_l.JPEG",
                             "val/n07920052/coffee.JPEG", "val/n07920052/coffee_l.JPEG"]
    assert found["val/n02123045/chelsea_l.JPEG"].mode == "L"
    spread = photos.from_folder(tmp_path, limit=2)
    assert list(spread) == ["val/n02123045/chelsea.JPEG", "val/n07920052/coffee_l.JPEG"]  # first, last
    (tmp_path / "val" / "n07920052" / "broken.jpg").write_bytes(b"not a JPEG")
    with pytest.raises(data.DatasetError, match="cannot read image .*broken.jpg"):
        photos.from_folder(tmp_path)
    with pytest.raises(data.DatasetError, match="does not exist"):
        photos.from_folder(tmp_path / "nowhere")
