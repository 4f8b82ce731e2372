"""lib.imbalance: the rare-positive task, oversampling, costs and thresholds (chapter 6.6)."""

import itertools

import pytest
import torch

from lib import data, imbalance


def test_rare_positive_keeps_every_negative_and_thins_positives(tiny_shapes):
    task = imbalance.rare_positive(tiny_shapes, "star", 0.05, seed=1)
    assert task.classes == ["not star", "star"] and task.num_classes == 2
    star = tiny_shapes.classes.index("star")
    for name in ("train", "val", "test"):
        before, after = getattr(tiny_shapes, name), getattr(task, name)
        negatives = int((before.labels != star).sum())
        assert int((after.labels == 0).sum()) == negatives
        assert int(after.labels.sum()) == round(0.05 / 0.95 * negatives)
        assert set(after.labels.unique().tolist()) == {0, 1}
    again = imbalance.rare_positive(tiny_shapes, "star", 0.05, seed=1)
    assert torch.equal(again.train.images, task.train.images)
    other = imbalance.rare_positive(tiny_shapes, "star", 0.05, seed=2)
    assert not torch.equal(other.train.images, task.train.images)


def test_rare_positive_without_prevalence_keeps_the_mix(tiny_shapes):
    task = imbalance.rare_positive(tiny_shapes, "ring")
    ring = tiny_shapes.classes.index("ring")
    assert len(task.train) == len(tiny_shapes.train)
    assert torch.equal(task.train.labels, (tiny_shapes.train.labels == ring).long())


def test_rare_positive_drops_negatives_when_positives_are_too_few(tiny_shapes):
    task = imbalance.rare_positive(tiny_shapes, "disc", 0.5, seed=0)
    for name in ("train", "val", "test"):
        labels = getattr(task, name).labels
        assert abs(int(labels.sum()) - int((labels == 0).sum())) <= 1


def test_rare_positive_errors(tiny_shapes):
    with pytest.raises(data.DatasetError, match="unknown positive class 'dog'"):
        imbalance.rare_positive(tiny_shapes, "dog")
    with pytest.raises(data.DatasetError, match="prevalence"):
        imbalance.rare_positive(tiny_shapes, "star", 1.5)
    with pytest.raises(data.DatasetError, match="use more images"):
        imbalance.rare_positive(tiny_shapes, "star", 0.001)


def test_oversample_balances_training_only(tiny_shapes):
    task = imbalance.rare_positive(tiny_shapes, "star", 0.1, seed=0)
    balanced = imbalance.oversample(task, seed=0)
    counts = torch.bincount(balanced.train.labels, minlength=2)
    assert counts[0] == counts[1] == int((task.train.labels == 0).sum())
    assert balanced.val is task.val and balanced.test is task.test
    assert balanced.mean == task.mean
    originals = {bytes(image.numpy()) for image in task.train.images[task.train.labels == 1]}
    assert all(bytes(image.numpy()) in originals for image in balanced.train.images[balanced.train.labels == 1])


def test_costs_and_thresholds():
    labels = torch.tensor([1, 1, 0, 0, 0])
    predicted = torch.tensor([0, 1, 1, 0, 0])
    assert imbalance.mean_cost(predicted, labels, cost_miss=10, cost_false_alarm=1) == pytest.approx(11 / 5)
    assert imbalance.bayes_threshold(20, 1) == pytest.approx(1 / 21)
    with pytest.raises(ValueError, match="costs"):
        imbalance.bayes_threshold(-1, 1)


def test_best_threshold_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(60, generator=generator).round(decimals=2)  # ties included
    labels = (torch.rand(60, generator=generator) < p).long()
    for cost_miss, cost_false_alarm in itertools.product((1.0, 5.0, 20.0), (1.0, 3.0)):
        found = imbalance.best_threshold(p, labels, cost_miss, cost_false_alarm)
        grid = torch.linspace(-0.01, 1.01, 2001)
        brute = min(imbalance.mean_cost(p > t, labels, cost_miss, cost_false_alarm) for t in grid.tolist())
        assert imbalance.mean_cost(p > found, labels, cost_miss, cost_false_alarm) == pytest.approx(brute)


def test_adjust_prevalence():
    p = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(imbalance.adjust_prevalence(p, 0.3, 0.3), p.double())
    assert imbalance.adjust_prevalence(torch.tensor([0.5]), 0.5, 0.05).item() == pytest.approx(0.05)
    lowered = imbalance.adjust_prevalence(p, 0.5, 0.1)
    assert (lowered < p).all() and torch.equal(lowered.argsort(), p.argsort())
    with pytest.raises(ValueError, match="true_prevalence"):
        imbalance.adjust_prevalence(p, 0.5, 1.0)


def test_decision_report_agrees_with_scikit_learn():
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    generator = torch.Generator().manual_seed(1)
    p = torch.rand(200, generator=generator)
    labels = (torch.rand(200, generator=generator) < 0.2).long()
    report = imbalance.decision_report(p, labels, 0.3, cost_miss=20, cost_false_alarm=1)
    decided = (p > 0.3).long().numpy()
    assert report["sensitivity"] == pytest.approx(recall_score(labels.numpy(), decided))
    assert report["specificity"] == pytest.approx(recall_score(labels.numpy(), decided, pos_label=0))
    assert report["precision"] == pytest.approx(precision_score(labels.numpy(), decided))
    assert report["accuracy"] == pytest.approx(accuracy_score(labels.numpy(), decided))
    assert report["positives"] + report["negatives"] == 200
    assert report["mean_cost"] == pytest.approx((20 * report["misses"] + report["false_alarms"]) / 200)
