"""lib.fast: the fast CIFAR-10 recipe's pieces on tiny generated data, and short trainings."""

import pytest
import torch
import torch.nn.functional as F

from lib import data, fast
from lib.fast import RecipeError

TINY = {"widths": (8, 16, 16), "batch_size": 50, "epochs": 1, "whiten_images": 200}


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n_train=300, n_val=60, n_test=100)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_recipe_is_checked():
    assert fast.make_recipe(epochs=3)["epochs"] == 3
    with pytest.raises(RecipeError, match="unknown recipe setting"):
        fast.make_recipe(epoch=3)
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"tta_level": 3}, {"label_smoothing": 1.0}, {"widths": (8, 8)},
                {"lr_peak_at": 1.0}, {"momentum": 1.0}):
        with pytest.raises(RecipeError):
            fast.make_recipe(bad)


def test_every_ingredient_switches_a_setting_of_the_recipe():
    for name, (changes, text) in fast.INGREDIENTS.items():
        assert changes and set(changes) <= set(fast.RECIPE) and text
        assert all(fast.RECIPE[k] != v for k, v in changes.items()), name


def test_network_shapes_and_frozen_parts():
    net = fast.fast_net(10, 3, TINY)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert net.whiten.weight.shape == (24, 3, 2, 2)  # 2 x 3 channels x 2 x 2
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    gray = fast.fast_net(10, 1, TINY)
    assert gray.whiten.weight.shape == (8, 1, 2, 2) and gray(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_identity_init_passes_channels_through():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    fast.dirac_init(conv)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(conv(x)[:, :4], x, atol=1e-6)
    assert not torch.allclose(conv(x)[:, 4:], torch.zeros(2, 2, 8, 8))  # the other filters stay random


def test_patch_whitening_decorrelates_patches(shapes):
    images = data.Normalize(shapes.mean, shapes.std, "cpu")(shapes.train.images[:200])
    filters = fast.patch_whitening(images, patch=2, eps=1e-8)
    assert filters.shape == (24, 3, 2, 2) and torch.allclose(filters[12:], -filters[:12])
    out = F.conv2d(images, filters[:12]).permute(1, 0, 2, 3).reshape(12, -1).double()
    covariance = out @ out.T / out.shape[1]
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-3)


def test_whiten_init_freezes_the_first_layer(shapes):
    net = fast.fast_net(10, 3, TINY)
    fast.whiten_init(net, data.Normalize(shapes.mean, shapes.std, "cpu")(shapes.train.images[:100]), TINY)
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    with pytest.raises(RecipeError, match="do not fit"):
        fast.whiten_init(fast.fast_net(10, 1, TINY), torch.randn(10, 3, 8, 8), TINY)


def test_sgd_settings_are_per_1024_examples():
    s = fast.sgd_settings()
    gain = 1024 * (1 + 1 / (1 - 0.85))
    assert s["lr"] == pytest.approx(11.5 / gain)
    assert s["lr_bias"] == pytest.approx(64 * s["lr"])
    shrink = 0.0153 * 1024 / gain  # weight decay applied per step, for either group
    assert s["lr"] * s["weight_decay"] == pytest.approx(shrink)
    assert s["lr_bias"] * s["weight_decay_bias"] == pytest.approx(shrink)
    groups = fast.make_optimizer(fast.fast_net(10, 3, TINY), TINY).param_groups
    assert groups[0]["lr"] == pytest.approx(s["lr_bias"]) and len(groups[0]["params"]) == 6  # 6 BatchNorm biases


def test_triangular_schedule():
    assert fast.lr_factor(0, 100) == pytest.approx(0.2)
    assert fast.lr_factor(23, 100) == pytest.approx(1.0)
    assert fast.lr_factor(100, 100) == pytest.approx(0.07)
    factors = [fast.lr_factor(s, 100) for s in range(101)]
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 23


def test_lookahead_pulls_weights_back_to_their_average():
    net = torch.nn.Linear(3, 2)
    start = net.weight.detach().clone()
    lookahead = fast.Lookahead(net)
    with torch.no_grad():
        net.weight.add_(1.0)
    lookahead.update(net, 0.0)  # decay 0: the average follows the weights, which stay
    assert torch.allclose(net.weight, start + 1)
    with torch.no_grad():
        net.weight.add_(1.0)
    lookahead.update(net, 0.75)
    assert torch.allclose(net.weight, start + 1 + 0.25)  # a quarter of the way from the average
    lookahead.update(net, 1.0)  # decay 1: back to the average, which no longer moves
    assert torch.allclose(net.weight, start + 1.25)


def test_alternating_flips_invert_every_epoch():
    augmenter = fast.Augmenter(1000, 32, 32, translate=2, alternating=True, seed=0, device="cpu")
    first, second, third = (augmenter.flips(e) for e in range(3))
    assert torch.all(first ^ second) and torch.equal(first, third)
    assert 400 < int(first.sum()) < 600
    coins = fast.Augmenter(1000, 32, 32, translate=2, alternating=False, seed=0, device="cpu")
    assert not torch.all(coins.flips(0) ^ coins.flips(1))
    rows, cols = augmenter.choices(1)
    assert torch.equal(cols >= augmenter.span, second) and rows.max() < augmenter.span


def test_batches_flip_and_shift_images_on_the_device(shapes):
    images, labels = shapes.train.images[:100], shapes.train.labels[:100]
    augmenter = fast.Augmenter(100, 32, 32, translate=0, alternating=True, seed=1, device="cpu")
    identity = lambda x: x  # noqa: E731 - keep uint8 to compare pixels
    batches = list(fast.train_batches(images, labels, 30, 0, 1, identity, augmenter))
    assert len(batches) == 3 and all(len(x) == 30 for x, _ in batches)
    flips = augmenter.flips(0)
    order = torch.randperm(100, generator=fast.seeds.generator(1, 0, fast.Stream.SHUFFLE))[:30]
    expected = torch.where(flips[order][:, None, None, None], images[order].flip(3), images[order])
    assert torch.equal(batches[0][0], expected) and torch.equal(batches[0][1], labels[order])


def test_test_time_flips_make_predictions_mirror_invariant(shapes):
    net = fast.fast_net(10, 3, TINY)
    normalize = data.Normalize(shapes.mean, shapes.std, "cpu")
    images = shapes.test.images[:20]
    plain = fast.predict_tta(net, images, normalize, level=0)
    assert torch.allclose(plain, net(normalize(images)), atol=1e-5)
    mirrored = fast.predict_tta(net, images, normalize, level=1)
    assert torch.allclose(mirrored, fast.predict_tta(net, images.flip(3), normalize, level=1), atol=1e-5)
    assert torch.allclose(mirrored, (plain + net(normalize(images.flip(3)))) / 2, atol=1e-5)
    assert not torch.allclose(plain, fast.predict_tta(net, images.flip(3), normalize, level=0), atol=1e-4)
    shifted = fast.predict_tta(net, images, normalize, level=2)  # half mirrored, half shifted views
    assert not torch.allclose(shifted, mirrored, atol=1e-5)


def test_training_is_reproducible_and_reports_what_it_did(shapes):
    quiet = {"log": lambda *a: None, "device": "cpu"}
    a = fast.train(shapes, {**TINY, "epochs": 1.5}, seed=3, **quiet)
    b = fast.train(shapes, {**TINY, "epochs": 1.5}, seed=3, **quiet)
    assert a.test_accuracy == b.test_accuracy
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.steps == 9 and len(a.history) == 2 and a.train_size == 300  # 6 steps per epoch, 1.5 epochs
    assert "val_acc" in a.history[0] and a.report["accuracy"] == a.test_accuracy
    both = fast.train(shapes, TINY, seed=3, splits=("train", "val"), **quiet)
    assert both.train_size == 360 and "val_acc" not in both.history[0]


def test_recipe_learns_digits(digits):
    result = fast.train(digits, {"widths": (16, 32, 32), "batch_size": 50, "epochs": 3}, seed=0,
                        log=lambda *a: None, device="cpu")
    assert result.test_accuracy > 0.5  # chance is 0.1
    assert result.history[-1]["val_acc"] > result.history[0]["val_acc"]


def test_bad_inputs_fail_before_training(shapes, tmp_path):
    with pytest.raises(RecipeError, match="never trained on"):
        fast.train(shapes, TINY, splits=("train", "test"))
    with pytest.raises(RecipeError, match="larger than"):
        fast.train(shapes, {**TINY, "batch_size": 1000})
    data.write_folder(shapes, tmp_path, splits=("train", "test"))
    streamed = data.load("folder", tmp_path, in_memory=False)
    with pytest.raises(RecipeError, match="streamed"):
        fast.train(streamed, TINY)


def test_ablation_rows(shapes):
    rows = fast.ablate(shapes, TINY, ingredients=["test-time augmentation"], seeds=(0,), log=lambda *a: None,
                       device="cpu")
    assert [r["removed"] for r in rows] == ["none", "test-time augmentation"]
    assert rows[1]["test_accuracy"] == rows[1]["test_accuracy_plain"]
    assert rows[0]["test_accuracy_plain"] == rows[1]["test_accuracy_plain"]  # same training, other evaluation
    with pytest.raises(RecipeError, match="unknown ingredient"):
        fast.ablate(shapes, TINY, ingredients=["magic"])


def test_whitening_sample_is_drawn_from_every_class_not_the_first_images():
    """A training set read from class folders is sorted by class: the whitening estimate must not
    take its first images (all of one class), and the draw is fixed by the seed."""
    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as a folder dataset is
    sample = fast.whitening_sample(len(labels), 50, seed=0)
    assert len(sample) == 50 and len(set(sample.tolist())) == 50
    assert len(set(labels[sample].tolist())) >= 8
    assert torch.equal(sample, fast.whitening_sample(len(labels), 50, seed=0))
    assert not torch.equal(sample, fast.whitening_sample(len(labels), 50, seed=1))
    assert torch.equal(fast.whitening_sample(30, 50, seed=0), torch.arange(30))  # fewer: all of them
