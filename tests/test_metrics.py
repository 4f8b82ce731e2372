"""lib.metrics agrees with scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from lib import metrics


def random_case(seed, n=500, k=7, skill=0.6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    scores = rng.normal(0, 1, (n, k))
    scores[np.arange(n), labels] += rng.random(n) < skill  # make the true class likelier
    return torch.tensor(scores), torch.tensor(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_matches_sklearn(seed):
    scores, labels = random_case(seed)
    predicted = scores.argmax(1).numpy()
    y = labels.numpy()
    report = metrics.report(scores, labels, 7)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-12)
    for name, function in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for average in ("macro", "weighted"):
            expected = function(y, predicted, average=average, zero_division=0)
            assert report[f"{name}_{average}"] == pytest.approx(expected, abs=1e-12), (name, average)
    assert report["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, scores.numpy(), k=5), abs=1e-12)


def test_per_class_and_confusion_matrix_match_sklearn():
    scores, labels = random_case(5, k=4)
    predicted = scores.argmax(1)
    cm = metrics.confusion_matrix(predicted, labels, 4)
    assert np.array_equal(cm.numpy(), skm.confusion_matrix(labels.numpy(), predicted.numpy(), labels=range(4)))
    stats = metrics.per_class(cm)
    p, r, f, s = skm.precision_recall_fscore_support(labels.numpy(), predicted.numpy(), zero_division=0)
    assert np.allclose(stats["precision"].numpy(), p)
    assert np.allclose(stats["recall"].numpy(), r)
    assert np.allclose(stats["f1"].numpy(), f)
    assert np.array_equal(stats["support"].numpy(), s)


def test_class_never_predicted_and_class_absent():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 0, 1])  # class 2 never predicted
    report = metrics.report(predicted, labels, num_classes=4)  # class 3 absent from both
    for average in ("macro", "weighted"):
        assert report[f"precision_{average}"] == pytest.approx(
            skm.precision_score(labels, predicted, average=average, zero_division=0))
        assert report[f"f1_{average}"] == pytest.approx(skm.f1_score(labels, predicted, average=average, zero_division=0))


def test_weighted_recall_is_accuracy():
    scores, labels = random_case(9, k=10, skill=0.3)
    report = metrics.report(scores, labels, 10)
    assert report["recall_weighted"] == pytest.approx(report["accuracy"], abs=1e-12)


def test_topk_edges():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.05, 0.15]])
    labels = torch.tensor([2, 1])
    assert metrics.topk_accuracy(scores, labels, 1) == 0.0
    assert metrics.topk_accuracy(scores, labels, 2) == 0.5
    assert metrics.topk_accuracy(scores, labels, 3) == 1.0
    with pytest.raises(ValueError, match="k must be between"):
        metrics.topk_accuracy(scores, labels, 4)
    with pytest.raises(ValueError, match="shape"):
        metrics.topk_accuracy(scores[0], labels, 1)
