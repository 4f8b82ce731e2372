"""Classification metrics on tensors: accuracy, top-k, confusion matrix, precision, recall and F1.

Defined in chapter 4 (the math); used to evaluate every model from chapter 0 on. Each agrees with
scikit-learn (tests/test_metrics.py checks it), including its convention that a class never
predicted has precision 0.
"""

from __future__ import annotations

import torch


def _as_predictions(outputs: torch.Tensor) -> torch.Tensor:
    """Class indices from either indices (N,) or scores (N, C)."""
    outputs = torch.as_tensor(outputs)
    return outputs.argmax(dim=1) if outputs.ndim == 2 else outputs.long()


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of examples whose predicted class (argmax of scores, or given indices) is the label."""
    predictions, labels = _as_predictions(outputs), torch.as_tensor(labels)
    return (predictions == labels).double().mean().item()


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Fraction of examples whose label is among the k highest scores (ILSVRC's top-5 when k=5)."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    if scores.ndim != 2:
        raise ValueError(f"topk_accuracy needs scores of shape (N, classes), got {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be between 1 and the number of classes ({scores.shape[1]}), got {k}")
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).double().mean().item()


def confusion_matrix(outputs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    predictions, labels = _as_predictions(outputs).cpu(), torch.as_tensor(labels).long().cpu()
    if num_classes is None:
        num_classes = int(max(predictions.max().item(), labels.max().item())) + 1
    index = labels * num_classes + predictions
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def per_class(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision, recall, F1 and support of every class, from a confusion matrix."""
    cm = cm.double()
    true_positive = cm.diag()
    predicted = cm.sum(dim=0)  # column sums: how often each class was predicted
    support = cm.sum(dim=1)  # row sums: how often each class occurs
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0  # classes that occur in the labels or the predictions
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "present": present}


def report(outputs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy with macro- and weighted-averaged precision, recall and F1 (plus top-5 when scores
    with at least 5 classes are given). Macro averages every class equally; weighted averages them
    by support, which makes weighted recall equal to accuracy. As in scikit-learn, the macro average
    runs over the classes that occur in the labels or the predictions."""
    outputs = torch.as_tensor(outputs)
    cm = confusion_matrix(outputs, labels, num_classes)
    stats = per_class(cm)
    weights = stats["support"] / stats["support"].sum()
    result = {"accuracy": accuracy(outputs, labels)}
    if outputs.ndim == 2 and outputs.shape[1] >= 5:
        result["top5_accuracy"] = topk_accuracy(outputs, labels, 5)
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = stats[name][stats["present"]].mean().item()
        result[f"{name}_weighted"] = (stats[name] * weights).sum().item()
    return result
