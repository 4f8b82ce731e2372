"""lib.transfer: cached embeddings, per-class draws, the linear probe, fine-tuning (chapter 6.2)."""

import numpy as np
import pytest
import torch

from lib import data, pretrained, transfer


@pytest.fixture(scope="module")
def net():
    return pretrained.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n_train=40, n_val=20, n_test=20, seed=0)


def test_embeddings_match_the_network_and_are_cached(net, shapes, tmp_path, monkeypatch):
    features, labels = transfer.embed(net, shapes, "val", size=32, batch_size=7, cache_dir=tmp_path,
                                      log=lambda *a: None)
    assert features.shape == (20, 1280) and np.array_equal(labels, shapes.val.labels.numpy())
    x = torch.nn.functional.interpolate(shapes.val.images[:3].float() / 255, size=(32, 32),
                                        mode="bilinear", align_corners=False)
    assert np.allclose(features[:3], net.embed(net.normalize(x)).numpy(), atol=1e-4)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and "32px" in files[0].name
    monkeypatch.setattr(net, "embed", lambda batch: pytest.fail("the cache was not used"))
    again, _ = transfer.embed(net, shapes, "val", size=32, cache_dir=tmp_path, log=lambda *a: None)
    assert np.array_equal(again, features)


def test_the_cache_key_follows_the_content(shapes):
    other = data.load("shapes", n_train=40, n_val=20, n_test=20, seed=1)
    assert transfer.fingerprint(shapes.val) != transfer.fingerprint(other.val)
    assert transfer.fingerprint(shapes.val) == transfer.fingerprint(shapes.val)


def test_the_cache_key_follows_the_weights(net, shapes, tmp_path):
    """A randomly initialised copy of the network has the same name: it must not read the cached
    embeddings of the ImageNet-trained one."""
    import dataclasses

    transfer.embed(net, shapes, "val", size=32, cache_dir=tmp_path, log=lambda *a: None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = pretrained.efficientnet_lite0(pretrained=False)
    random_net = dataclasses.replace(net, model=model, classifier=model.classifier[-1])
    assert random_net.name == net.name
    assert transfer.weights_fingerprint(model) != transfer.weights_fingerprint(net.model)
    features, _ = transfer.embed(random_net, shapes, "val", size=32, cache_dir=tmp_path, log=lambda *a: None)
    reference, _ = transfer.embed(random_net, shapes, "val", size=32, cache_dir=None, log=lambda *a: None)
    assert np.allclose(features, reference) and len(list(tmp_path.glob("*.npz"))) == 2


def test_per_class_draws_are_balanced_and_nested():
    labels = np.repeat(np.arange(4), 10)
    five = transfer.per_class(labels, 5, seed=3)
    two = transfer.per_class(labels, 2, seed=3)
    assert np.bincount(labels[five]).tolist() == [5] * 4
    assert set(two) <= set(five)
    assert len(transfer.per_class(labels, None)) == 40
    with pytest.raises(transfer.TransferError, match="fewer than the 11"):
        transfer.per_class(labels, 11)
    with pytest.raises(transfer.TransferError, match="at least 1"):
        transfer.per_class(labels, 0)


def test_linear_probe_chooses_c_on_validation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 3
    y = np.repeat(np.arange(3), 30)
    x = centres[y] + rng.normal(size=(90, 20))
    probe = transfer.linear_probe(x[::2], y[::2], x[1::2], y[1::2])
    assert probe.C in transfer.PROBE_CS and probe.val_acc > 0.9
    noise = transfer.linear_probe(rng.normal(size=(45, 20)), y[::2], x[1::2], y[1::2])
    assert noise.val_acc < 0.7
    with pytest.raises(transfer.TransferError, match="validation split"):
        transfer.linear_probe(x, y, x[:0], y[:0])


def test_adapter_renormalises_for_the_network():
    adapter = transfer.ImageNetInput((0.5,), (0.25,), pretrained.LITE0_MEAN, pretrained.LITE0_STD, 40)
    pixels = torch.rand(2, 1, 20, 20)
    out = adapter((pixels - 0.5) / 0.25)
    assert out.shape == (2, 3, 40, 40)
    expected = torch.nn.functional.interpolate(pixels.expand(-1, 3, -1, -1), size=(40, 40), mode="bilinear",
                                               align_corners=False)
    assert torch.allclose(out, (expected - 127 / 255) / (128 / 255), atol=1e-5)


def test_fine_tuning_keeps_imagenet_batch_norm_and_learns(shapes):
    model, result = transfer.train_network(shapes, pretrained_weights=True, size=32, steps=4, batch_size=20,
                                           log=lambda *a: None)
    body = model[1]
    reference = pretrained.efficientnet_lite0()
    assert torch.equal(body.features[0][1].running_mean, reference.features[0][1].running_mean)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.equal(body.features[0][0].weight, reference.features[0][0].weight)  # it trained
    assert len(result.history) == transfer.steps_to_epochs(40, 20, 4) == 2
    assert all(row["val_acc"] is None for row in result.history)  # no wasted validation
    scratch = transfer.network_for(shapes, size=32, pretrained_weights=False)
    assert not torch.equal(scratch[1].features[0][0].weight, reference.features[0][0].weight)


def test_bad_requests_are_refused_before_work(net, shapes):
    with pytest.raises(transfer.TransferError, match="size must be"):
        transfer.embed(net, shapes, "val", size=16)
    with pytest.raises(transfer.TransferError, match="split must be"):
        transfer.embed(net, shapes, "validation", size=32)
    with pytest.raises(transfer.TransferError, match="unknown method"):
        transfer.learning_curves(shapes, [1], methods=("probe", "knn"))
    with pytest.raises(transfer.TransferError, match="fewer than"):
        transfer.learning_curves(shapes, [1000], methods=("probe",))


def test_benchmark_refuses_a_missing_archive(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "benchmarks/transfer_cifar10.py", "--archive", str(tmp_path / "x.tgz")],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 2 and "not found" in out.stderr
