"""lib.calibration: ECE and reliability bins against scikit-learn and torchmetrics, temperature scaling,
accuracy against coverage (chapter 6.6)."""

import numpy as np
import pytest
import torch

from lib import calibration


def test_probabilities_softmax_and_temperature():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    probs = calibration.probabilities(logits)
    assert probs.dtype == torch.float64
    assert torch.allclose(probs, torch.softmax(logits.double(), 1))
    hot = calibration.probabilities(logits, temperature=4.0)
    assert hot[0].max() < probs[0].max()  # a higher temperature softens
    assert torch.equal(hot.argmax(1), probs.argmax(1))
    with pytest.raises(calibration.CalibrationError, match="temperature must be positive"):
        calibration.probabilities(logits, 0.0)
    with pytest.raises(calibration.CalibrationError, match="shape"):
        calibration.probabilities(torch.zeros(3))


def test_ece_by_hand():
    confidence = torch.tensor([0.9, 0.9, 0.1, 0.1])
    outcome = torch.tensor([1, 0, 0, 0])
    # bin (0.8, 0.9]: confidence 0.9, frequency 0.5 -> 0.4 x 1/2; bin [0, 0.1]: 0.1 vs 0 -> 0.1 x 1/2
    assert calibration.expected_calibration_error(confidence, outcome, n_bins=10) == pytest.approx(0.25)
    perfect = torch.tensor([0.25] * 4)
    assert calibration.expected_calibration_error(perfect, torch.tensor([1, 0, 0, 0]), 10) == pytest.approx(0)


def test_reliability_matches_scikit_learn_and_ece_matches_torchmetrics():
    from sklearn.calibration import calibration_curve
    from torchmetrics.functional.classification import binary_calibration_error

    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.uniform(0, 1, 2000))
    y = torch.from_numpy((rng.uniform(0, 1, 2000) < p.numpy() ** 1.5).astype(np.int64))
    for n_bins in (5, 10, 15):
        table = calibration.reliability(p, y, n_bins)
        freq, conf = calibration_curve(y.numpy(), p.numpy(), n_bins=n_bins)
        filled = table.count > 0
        assert np.allclose(table.frequency[filled], freq) and np.allclose(table.confidence[filled], conf)
        assert table.count.sum() == len(p)
        ours = calibration.expected_calibration_error(p, y, n_bins)
        assert ours == pytest.approx(binary_calibration_error(p, y, n_bins=n_bins).item(), abs=1e-9)
        assert ours > 0.02  # p ** 1.5 is not p: the test data are miscalibrated on purpose


def test_top_label():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    confidence, correct = calibration.top_label(probs, torch.tensor([0, 0, 1]))
    assert confidence.tolist() == [0.7, 0.8, 0.6]
    assert correct.tolist() == [1.0, 0.0, 0.0]


def test_fit_temperature_recovers_the_true_temperature():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 5, generator=generator) * 3
    true_t = 2.0
    labels = torch.multinomial(torch.softmax(logits / true_t, 1), 1, generator=generator).flatten()
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    best = calibration.negative_log_likelihood(logits, labels, fitted)
    for t in (0.5, 1.0, 1.5, 2.5, 4.0):  # no grid point does better
        assert best <= calibration.negative_log_likelihood(logits, labels, t) + 1e-9


def test_fit_temperature_rejects_bad_input():
    with pytest.raises(calibration.CalibrationError, match="logits"):
        calibration.fit_temperature(torch.zeros(4), torch.zeros(4))
    with pytest.raises(calibration.CalibrationError, match="low < high"):
        calibration.fit_temperature(torch.zeros(4, 2), torch.zeros(4), low=2.0, high=1.0)


def test_bad_confidence_values_are_refused():
    with pytest.raises(calibration.CalibrationError, match="probabilities"):
        calibration.expected_calibration_error(torch.tensor([1.5, 0.2]), torch.tensor([1, 0]))
    with pytest.raises(calibration.CalibrationError, match="0 or 1"):
        calibration.expected_calibration_error(torch.tensor([0.5, 0.2]), torch.tensor([2, 0]))
    with pytest.raises(calibration.CalibrationError, match="same length"):
        calibration.reliability(torch.tensor([0.5, 0.2]), torch.tensor([1]))
    with pytest.raises(calibration.CalibrationError, match="n_bins"):
        calibration.reliability(torch.tensor([0.5]), torch.tensor([1]), n_bins=0)
    with pytest.raises(calibration.CalibrationError, match="at least one"):
        calibration.reliability(torch.tensor([]), torch.tensor([]))


def test_accuracy_coverage_by_hand():
    confidence = torch.tensor([0.9, 0.6, 0.8, 0.7])
    correct = torch.tensor([1, 0, 1, 0])
    covered, accuracy = calibration.accuracy_coverage(confidence, correct)
    # most confident first: 0.9 (right), 0.8 (right), 0.7 (wrong), 0.6 (wrong)
    assert covered.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert accuracy.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 0.5])
    assert calibration.accuracy_at_coverage(confidence, correct, 0.5) == 1.0
    assert calibration.accuracy_at_coverage(confidence, correct, 1.0) == 0.5
    assert calibration.coverage_at_accuracy(confidence, correct, 0.6) == 0.75
    assert calibration.coverage_at_accuracy(torch.tensor([0.9]), torch.tensor([0]), 0.5) == 0.0
    with pytest.raises(calibration.CalibrationError, match="coverage"):
        calibration.accuracy_at_coverage(confidence, correct, 0.0)
