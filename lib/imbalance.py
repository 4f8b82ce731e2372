"""Rare positives: a rare-class task made from any dataset, oversampling, and decisions that weigh
what each kind of error costs.

Explained in chapter 6.6 ("Trust, for medical imaging"), where a missed positive (a disease not
found) costs far more than a false alarm (a healthy case sent for a second look).
"""

from __future__ import annotations

import torch

from lib import data as data_lib


def _positions(labels: torch.Tensor, wanted: bool, positive: int) -> torch.Tensor:
    return torch.nonzero((labels == positive) == wanted).flatten()


def rare_positive(data: data_lib.Dataset, positive: str, prevalence: float | None = None,
                  seed: int = 0) -> data_lib.Dataset:
    """A two-class task from `data`: class 1 is `positive` (one of `data.classes`), class 0 every
    other class. With `prevalence`, images of one kind are dropped at random (fixed by `seed`) until
    positives are that fraction of every split; None keeps the dataset's own mix. Chapter 6.6."""
    if positive not in data.classes:
        raise data_lib.DatasetError(f"unknown positive class {positive!r}; choose one of: "
                                    f"{', '.join(data.classes)}")
    if prevalence is not None and not 0 < prevalence < 1:
        raise data_lib.DatasetError(f"prevalence must be a fraction between 0 and 1, got {prevalence!r}")
    if not data.in_memory:
        raise data_lib.DatasetError(f"{data.name} is streamed from disk; rare_positive needs a dataset held "
                                    "in memory (load it with a smaller image size)")
    index = data.classes.index(positive)
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        pos, neg = _positions(split.labels, True, index), _positions(split.labels, False, index)
        if prevalence is not None:
            wanted_pos = round(prevalence / (1 - prevalence) * len(neg))
            if wanted_pos <= len(pos):
                pos = pos[torch.randperm(len(pos), generator=generator)[:wanted_pos]]
            else:  # too few positives for that mix: drop negatives instead
                wanted_neg = round((1 - prevalence) / prevalence * len(pos))
                neg = neg[torch.randperm(len(neg), generator=generator)[:wanted_neg]]
        if len(pos) == 0 or len(neg) == 0:
            raise data_lib.DatasetError(f"the {name} split would have {len(pos)} positive and {len(neg)} "
                                        "negative images; use more images or a larger prevalence")
        keep = torch.cat([pos, neg]).sort().values
        splits[name] = data_lib.TensorSplit(split.images[keep].contiguous(),
                                            (split.labels[keep] == index).long())
    mean, std = data_lib.channel_stats(splits["train"].images)
    info = {**data.info, "positive": positive, "prevalence": prevalence, "from": data.name}
    return data_lib.Dataset(f"{data.name}:{positive}", [f"not {positive}", positive], splits["train"],
                            splits["val"], splits["test"], mean, std, info=info)


def prevalence_of(labels: torch.Tensor) -> float:
    """The fraction of labels equal to 1 (the positives)."""
    labels = torch.as_tensor(labels)
    return (labels == 1).double().mean().item()


def oversample(data: data_lib.Dataset, seed: int = 0) -> data_lib.Dataset:
    """The same dataset with a balanced training split: images of every smaller class are drawn again,
    at random with replacement (fixed by `seed`), until each class has as many as the largest.
    Validation and test splits, and the normalisation statistics, are unchanged. Chapter 6.6."""
    if not data.in_memory:
        raise data_lib.DatasetError(f"{data.name} is streamed from disk; oversample needs a dataset held in memory")
    train = data.train
    counts = torch.bincount(train.labels, minlength=data.num_classes)
    generator = torch.Generator().manual_seed(seed)
    parts = [torch.arange(len(train))]
    for c in range(data.num_classes):
        own = torch.nonzero(train.labels == c).flatten()
        missing = int(counts.max() - counts[c])
        if missing and len(own):
            parts.append(own[torch.randint(len(own), (missing,), generator=generator)])
    index = torch.cat(parts)
    balanced = data_lib.TensorSplit(train.images[index].contiguous(), train.labels[index].contiguous())
    return data_lib.Dataset(data.name, list(data.classes), balanced, data.val, data.test, data.mean, data.std,
                            hierarchy=data.hierarchy, info={**data.info, "train": "oversampled to balance"})


def _check_costs(cost_miss: float, cost_false_alarm: float) -> None:
    if not (cost_miss >= 0 and cost_false_alarm >= 0 and cost_miss + cost_false_alarm > 0):
        raise ValueError(f"costs must be non-negative and not both 0, got miss={cost_miss!r}, "
                         f"false alarm={cost_false_alarm!r}")


def mean_cost(predicted: torch.Tensor, labels: torch.Tensor, cost_miss: float, cost_false_alarm: float) -> float:
    """Mean cost per case of 0/1 decisions: `cost_miss` for each positive called negative (a false
    negative), `cost_false_alarm` for each negative called positive; right answers cost 0. Chapter 6.6."""
    _check_costs(cost_miss, cost_false_alarm)
    predicted, labels = torch.as_tensor(predicted).long(), torch.as_tensor(labels).long()
    misses = ((predicted == 0) & (labels == 1)).sum().item()
    false_alarms = ((predicted == 1) & (labels == 0)).sum().item()
    return (cost_miss * misses + cost_false_alarm * false_alarms) / len(labels)


def bayes_threshold(cost_miss: float, cost_false_alarm: float) -> float:
    """The probability of being positive above which calling a case positive costs less on average:
    cost_false_alarm / (cost_false_alarm + cost_miss) (Elkan, 2001). It is right only for
    calibrated probabilities. Chapter 6.6."""
    _check_costs(cost_miss, cost_false_alarm)
    return cost_false_alarm / (cost_false_alarm + cost_miss)


def best_threshold(p_positive: torch.Tensor, labels: torch.Tensor, cost_miss: float,
                   cost_false_alarm: float) -> float:
    """The threshold on P(positive) with the lowest mean cost on these (validation) cases: each
    observed probability is tried, and the midpoint to the next one returned. Chapter 6.6."""
    _check_costs(cost_miss, cost_false_alarm)
    p, labels = torch.as_tensor(p_positive).double(), torch.as_tensor(labels).long()
    if p.ndim != 1 or p.shape != labels.shape or len(p) == 0:
        raise ValueError(f"need two vectors of the same length, got {tuple(p.shape)} and {tuple(labels.shape)}")
    values, inverse = torch.unique(p, return_inverse=True)  # sorted
    positives = torch.bincount(inverse, weights=(labels == 1).double(), minlength=len(values))
    negatives = torch.bincount(inverse, weights=(labels != 1).double(), minlength=len(values))
    zero = torch.zeros(1, dtype=torch.float64)
    # Candidate j calls positive everything above the j-th smallest distinct value (j = 0: everything).
    misses = torch.cat([zero, positives.cumsum(0)])
    false_alarms = negatives.sum() - torch.cat([zero, negatives.cumsum(0)])
    costs = cost_miss * misses + cost_false_alarm * false_alarms
    candidates = torch.cat([values[:1] - 1e-12, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-12])
    return float(candidates[int(costs.argmin())])


def adjust_prevalence(p_positive: torch.Tensor, trained_prevalence: float, true_prevalence: float) -> torch.Tensor:
    """Probabilities from a model trained at one prevalence of positives, corrected to another by
    Bayes' rule: each class's probability is multiplied by (true prior / training prior), then the
    two are renormalised (Elkan, 2001, section 3). Chapter 6.6 uses it after oversampling."""
    for name, value in (("trained_prevalence", trained_prevalence), ("true_prevalence", true_prevalence)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    p = torch.as_tensor(p_positive).double()
    up = p * (true_prevalence / trained_prevalence)
    down = (1 - p) * ((1 - true_prevalence) / (1 - trained_prevalence))
    return up / (up + down)


def decision_report(p_positive: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5,
                    cost_miss: float = 1.0, cost_false_alarm: float = 1.0) -> dict[str, float]:
    """What the decisions 'positive where P(positive) > threshold' get right and wrong: accuracy,
    sensitivity (recall of the positives), specificity (recall of the negatives), precision, the counts
    of misses and false alarms, and the mean cost per case. Chapter 6.6."""
    from lib import metrics

    p, labels = torch.as_tensor(p_positive).double(), torch.as_tensor(labels).long()
    if p.ndim != 1 or p.shape != labels.shape or len(p) == 0:
        raise ValueError(f"need two vectors of the same length, got {tuple(p.shape)} and {tuple(labels.shape)}")
    decided = (p > threshold).long()
    stats = metrics.per_class(metrics.confusion_matrix(decided, labels, 2))
    misses = int(((decided == 0) & (labels == 1)).sum())
    false_alarms = int(((decided == 1) & (labels == 0)).sum())
    return {"threshold": float(threshold), "accuracy": metrics.accuracy(decided, labels),
            "sensitivity": stats["recall"][1].item(), "specificity": stats["recall"][0].item(),
            "precision": stats["precision"][1].item(), "misses": misses, "false_alarms": false_alarms,
            "positives": int((labels == 1).sum()), "negatives": int((labels == 0).sum()),
            "mean_cost": mean_cost(decided, labels, cost_miss, cost_false_alarm)}
