"""lib.attacks: the fast gradient sign method (chapter 8)."""

import math

import pytest
import torch
from torch import nn

from lib import attacks


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5)).eval()


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 8, 8, generator=generator)
    images[0] = 0.0  # pixels on both edges of the range
    images[1] = 1.0
    labels = torch.randint(0, 5, (6,), generator=generator)
    return images, labels


def test_fgsm_raises_the_loss_of_every_image(model, batch):
    images, labels = batch
    before = attacks.loss(model, images, labels)
    after = attacks.loss(model, attacks.fgsm(model, images, labels, 0.03), labels)
    assert (after > before).all(), (before, after)


def test_a_larger_epsilon_raises_the_mean_loss_more(model, batch):
    images, labels = batch
    losses = [float(attacks.loss(model, attacks.fgsm(model, images, labels, e), labels).mean())
              for e in (0.0, 0.01, 0.05)]
    assert losses[0] < losses[1] < losses[2]


def test_epsilon_zero_is_the_identity(model, batch):
    images, labels = batch
    out = attacks.fgsm(model, images, labels, 0)
    assert torch.equal(out, images) and out is not images


def test_pixels_stay_in_range_and_move_at_most_epsilon(model, batch):
    images, labels = batch
    out = attacks.fgsm(model, images, labels, 0.2)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - images).abs().max()) <= 0.2 + 1e-6
    moved = (out - images).abs()
    inside = (images > 0.2) & (images < 0.8)  # where clipping cannot act, every pixel moves
    assert torch.allclose(moved[inside], torch.full_like(moved[inside], 0.2), atol=1e-6)


def test_normalisation_is_applied_inside_the_attack(model, batch):
    images, labels = batch
    normalize = lambda x: (x - 0.5) / 0.25  # noqa: E731
    plain = attacks.fgsm(model, images, labels, 0.05)
    normalised = attacks.fgsm(model, images, labels, 0.05, normalize=normalize)
    assert float(normalised.min()) >= 0 and not torch.equal(plain, normalised)
    before = attacks.loss(model, images, labels, normalize)
    assert (attacks.loss(model, normalised, labels, normalize) > before).all()


def test_the_model_and_its_gradients_are_untouched(model, batch):
    images, labels = batch
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attacks.fgsm(model, images, labels, 0.1)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not images.requires_grad


@pytest.mark.parametrize("epsilon", [-0.01, 1.5, math.nan, math.inf, "0.1", True, None])
def test_bad_epsilon_is_a_one_line_error(model, batch, epsilon):
    images, labels = batch
    with pytest.raises(attacks.AttackError, match="epsilon") as error:
        attacks.fgsm(model, images, labels, epsilon)
    assert "\n" not in str(error.value)


def test_bad_images_and_labels_are_one_line_errors(model, batch):
    images, labels = batch
    with pytest.raises(attacks.AttackError, match=r"\[0, 1\]"):
        attacks.fgsm(model, images * 2 - 0.5, labels, 0.1)  # a normalised batch, not pixels
    with pytest.raises(attacks.AttackError, match=r"\(N, C, H, W\)"):
        attacks.fgsm(model, images[0], labels, 0.1)
    with pytest.raises(attacks.AttackError, match="one class index per image"):
        attacks.fgsm(model, images, labels[:3], 0.1)
    with pytest.raises(attacks.AttackError, match="int64"):
        attacks.fgsm(model, images, labels.float(), 0.1)


def test_fgsm_changes_the_real_networks_answer():
    """On the real ImageNet network and a real photo, a small FGSM step lowers the probability
    of the clean top-1 class and raises its loss."""
    from torchvision.transforms.functional import center_crop, resize, to_tensor

    from lib import photos, pretrained

    net = pretrained.load("efficientnet_lite0")
    photo = photos.samples(["coffee"])["coffee"]
    pixels = to_tensor(center_crop(resize(photo, net.resize), net.crop))[None]
    clean = net.logits(net.normalize(pixels))
    label = clean.argmax(1)
    attacked = attacks.fgsm(net.model, pixels, label, 2 / 255, normalize=net.normalize)
    assert float((attacked - pixels).abs().max()) <= 2 / 255 + 1e-6
    after = net.logits(net.normalize(attacked))
    assert float(after.softmax(1)[0, label]) < float(clean.softmax(1)[0, label])
    before_loss = attacks.loss(net.model, pixels, label, net.normalize)
    assert float(attacks.loss(net.model, attacked, label, net.normalize)) > float(before_loss)
