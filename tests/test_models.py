"""Models by name: the article's CNN, the small ResNet, torchvision's architectures."""

import pytest
import torch

from lib import data, models


def test_seed_cnn_shapes_and_parameters():
    net = models.build("seed_cnn", num_classes=10, in_channels=3, image_size=32)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    # conv 3->32, 32->64, 64->64 (3x3 with bias), dense 64*4*4 -> 64, 64 -> 10
    expected = (27 * 32 + 32) + (288 * 64 + 64) + (576 * 64 + 64) + (1024 * 64 + 64) + (64 * 10 + 10)
    assert models.count_parameters(net) == expected
    # the article's own input size, 150x150, gives a 34x34x64 feature map before the dense layer
    big = models.seed_cnn(3, 10, 150)
    assert big[9].in_features == 34 * 34 * 64


def test_seed_cnn_keras_initialisation():
    net = models.seed_cnn()
    assert all(torch.count_nonzero(m.bias) == 0 for m in net if hasattr(m, "bias") and m.bias is not None)


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = models.build("small_resnet", seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    b = models.build("small_resnet", seed=4)
    c = models.build("small_resnet", seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_small_resnet_and_grayscale():
    net = models.build("small_resnet", num_classes=7, in_channels=1, image_size=32)
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 7)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "alexnet"])
def test_torchvision_models_by_name(name):
    net = models.build(name, num_classes=10, image_size=64 if name != "alexnet" else 128)
    net.eval()
    size = 64 if name != "alexnet" else 128
    assert net(torch.zeros(1, 3, size, size)).shape == (1, 10)


def test_torchvision_model_on_grayscale():
    net = models.build("resnet18", num_classes=10, in_channels=1, image_size=32)
    net.eval()
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_errors_are_clear():
    with pytest.raises(models.ModelError, match="unknown model 'resnet9000'"):
        models.build("resnet9000")
    with pytest.raises(models.ModelError, match="alexnet cannot take 32x32 images"):
        models.build("alexnet", image_size=32)
    with pytest.raises(models.ModelError, match="at least 18x18"):
        models.build("seed_cnn", image_size=16)
    with pytest.raises(models.ModelError, match="no pretrained weights"):
        models.build("seed_cnn", pretrained=True)


def test_replace_classifier():
    net = models.build("vgg11", num_classes=1000, image_size=32)
    models.replace_classifier(net, 5)
    net.eval()
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_small_resnet_widths_through_build():
    """Chapter 5 and its benchmark build a narrower small_resnet, seeded, through for_dataset."""
    ds = data.load("shapes", n_train=20, n_val=0, n_test=10)
    net = models.for_dataset("small_resnet", ds, seed=3, widths=[8, 16, 32])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        by_hand = models.small_resnet(ds.channels, ds.num_classes, widths=(8, 16, 32))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), by_hand.state_dict().values()))
    with pytest.raises(models.ModelError, match="widths applies to small_resnet only"):
        models.for_dataset("seed_cnn", ds, widths=(8, 16, 32))
