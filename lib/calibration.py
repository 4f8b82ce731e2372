"""Probabilities a decision can rest on: calibration error, reliability diagrams, temperature scaling,
and abstaining when unsure (accuracy against coverage).

Explained in chapter 6.6 ("Trust, for medical imaging"). A classifier is calibrated when, of all the
cases it gives probability p, a fraction p really are positive (or correctly classified). Everything
here works on plain tensors of scores and labels, so it serves any model of the course.

Conventions: bins are the `n_bins` equal intervals of [0, 1], each closed on the right, (lo, hi], with
0 counted in the first; scikit-learn's `calibration_curve` bins the same way. Probabilities are computed
in float64, so that confident predictions do not round to exactly 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class CalibrationError(ValueError):
    """Inputs that calibration cannot use (wrong shapes, values outside [0, 1], no data)."""


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of `logits / temperature` (N, C), in float64. Chapter 6.6."""
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise CalibrationError(f"logits must have shape (N, classes), got {tuple(logits.shape)}")
    if not temperature > 0:
        raise CalibrationError(f"temperature must be positive, got {temperature!r}")
    return torch.softmax(logits.double() / temperature, dim=1)


def top_label(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, correct): the largest probability of each row, and whether its class is the
    label (as 0.0 / 1.0). These are the inputs of Guo et al.'s top-label calibration. Chapter 6.6."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise CalibrationError(f"need probabilities (N, classes) and N labels, got {tuple(probs.shape)} "
                               f"and {tuple(labels.shape)}")
    confidence, predicted = probs.max(dim=1)
    return confidence, (predicted == labels).double()


def _check_pairs(confidence, outcome) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(torch.as_tensor(confidence).detach().cpu().double())
    outcome = np.asarray(torch.as_tensor(outcome).detach().cpu().double())
    if confidence.ndim != 1 or confidence.shape != outcome.shape:
        raise CalibrationError(f"confidence and outcome must be two vectors of the same length, got "
                               f"{confidence.shape} and {outcome.shape}")
    if len(confidence) == 0:
        raise CalibrationError("no predictions given: calibration needs at least one")
    if np.isnan(confidence).any() or confidence.min() < 0 or confidence.max() > 1:
        raise CalibrationError("confidence values must be probabilities in [0, 1]; pass probabilities, not logits")
    if not np.isin(outcome, (0.0, 1.0)).all():
        raise CalibrationError("outcome values must be 0 or 1 (wrong/right, or negative/positive)")
    return confidence, outcome


@dataclass
class Reliability:
    """A reliability diagram's data: per bin, its edges, the number of predictions, their mean
    confidence and the observed frequency of the outcome (NaN for empty bins)."""

    edges: np.ndarray  # n_bins + 1 bin edges from 0 to 1
    count: np.ndarray  # predictions per bin
    confidence: np.ndarray  # mean predicted probability per bin
    frequency: np.ndarray  # fraction of outcomes equal to 1 per bin (accuracy, or positive rate)

    @property
    def gap(self) -> np.ndarray:
        """frequency - confidence per bin: negative where the model is overconfident."""
        return self.frequency - self.confidence


def reliability(confidence, outcome, n_bins: int = 15) -> Reliability:
    """Bin predictions by their probability and compare each bin's mean probability with how often
    the outcome happened. `confidence`: probabilities (the top label's, or the positive class's);
    `outcome`: 1 where the label was right (or positive), else 0. Chapter 6.6."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise CalibrationError(f"n_bins must be a whole number of at least 1, got {n_bins!r}")
    confidence, outcome = _check_pairs(confidence, outcome)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="left")  # (lo, hi], 0 in the first bin
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        frequency = np.bincount(index, weights=outcome, minlength=n_bins) / count
    return Reliability(edges, count, mean_confidence, frequency)


def expected_calibration_error(confidence, outcome, n_bins: int = 15) -> float:
    """ECE: the mean over bins of |frequency - confidence|, weighted by each bin's share of the
    predictions (Naeini et al., 2015; Guo et al., 2017 use 15 bins). 0 is perfect. Chapter 6.6."""
    table = reliability(confidence, outcome, n_bins)
    filled = table.count > 0
    weights = table.count[filled] / table.count.sum()
    return float(np.sum(weights * np.abs(table.gap[filled])))


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy of the labels under softmax(logits / temperature), in float64."""
    logits, labels = torch.as_tensor(logits).double(), torch.as_tensor(labels).long()
    return torch.nn.functional.cross_entropy(logits / temperature, labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T) on held-out
    (validation) logits: temperature scaling (Guo et al., 2017). Dividing by one T > 0 never changes
    which class is largest, so accuracy is untouched; only the confidence moves. The NLL is convex in
    1/T, so a bounded one-dimensional search finds the optimum. Chapter 6.6."""
    from scipy.optimize import minimize_scalar

    logits, labels = torch.as_tensor(logits).double(), torch.as_tensor(labels).long()
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise CalibrationError(f"need logits (N, classes) and N labels, got {tuple(logits.shape)} and "
                               f"{tuple(labels.shape)}")
    if not 0 < low < high:
        raise CalibrationError(f"need 0 < low < high, got low={low!r}, high={high!r}")

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, float(np.exp(log_t)))

    found = minimize_scalar(loss, bounds=(np.log(low), np.log(high)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def accuracy_coverage(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """Abstaining when unsure: keep the k most confident predictions, for every k, and refer the rest.
    Returns (coverage k/N, accuracy of the k kept) for k = 1..N, most confident first (ties keep
    their input order). Chapter 6.6."""
    confidence, correct = _check_pairs(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, len(order) + 1)
    return kept / len(order), np.cumsum(correct[order]) / kept


def accuracy_at_coverage(confidence, correct, coverage: float) -> float:
    """Accuracy on the most confident `coverage` fraction of the predictions (at least one kept)."""
    if not 0 < coverage <= 1:
        raise CalibrationError(f"coverage must be in (0, 1], got {coverage!r}")
    covered, accuracy = accuracy_coverage(confidence, correct)
    k = max(1, int(np.floor(coverage * len(covered) + 1e-9)))
    return float(accuracy[k - 1])


def coverage_at_accuracy(confidence, correct, target: float) -> float:
    """The largest coverage whose kept predictions reach accuracy `target` (0.0 when none does)."""
    if not 0 < target <= 1:
        raise CalibrationError(f"target accuracy must be in (0, 1], got {target!r}")
    covered, accuracy = accuracy_coverage(confidence, correct)
    reached = np.flatnonzero(accuracy >= target - 1e-12)
    return float(covered[reached[-1]]) if len(reached) else 0.0
