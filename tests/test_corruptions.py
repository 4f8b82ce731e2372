"""lib.corruptions: ImageNet-C-style corruptions at five severities, the corruption error and the
mean corruption error (chapter 6.5)."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lib import corruptions as C
from lib import data, photos


@pytest.fixture(scope="module")
def photo():
    """The photo of Chelsea the cat as a uint8 (3, 96, 96) tensor: a real image, small for speed."""
    image = photos.samples(["chelsea"])["chelsea"].resize((96, 96))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_severity_zero_is_the_identity_and_shape_and_dtype_are_kept(photo, name):
    assert torch.equal(C.corrupt(photo, name, 0), photo)
    for images in (photo, photo[None].repeat(2, 1, 1, 1), photo.float() / 255, photo[:1]):
        out = C.corrupt(images, name, 3, seed=1)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert not torch.equal(out, images), name  # severity 3 changes every kind of image


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_distortion_grows_with_severity(photo, name):
    values = [C.psnr(photo, C.corrupt(photo, name, s, seed=0)) for s in C.SEVERITIES]
    assert all(a > b for a, b in zip(values, values[1:])), (name, values)
    assert values[0] < 40  # severity 1 is visible, not a rounding error


def test_blur_and_contrast_leave_a_flat_image_flat():
    flat = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    assert torch.equal(C.corrupt(flat, "gaussian_blur", 5), flat)
    assert torch.equal(C.corrupt(flat, "contrast", 5), flat)


def test_parameters_follow_the_table():
    x = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(C.corrupt(x, "brightness", 5), torch.full_like(x, 0.5))  # factor 2.0
    ramp = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    low = C.corrupt(ramp, "contrast", 1)  # 0.4 x image + 0.6 x its mean grey level
    assert torch.allclose(low, 0.4 * ramp + 0.6 * ramp.mean(), atol=1e-3)  # grey weights sum to 0.9999
    # noise: on a mid-grey image (too far from 0 and 1 to clip) the change has the table's s
    grey = torch.full((3, 128, 128), 0.5)
    change = C.corrupt(grey, "gaussian_noise", 1, seed=3) - grey
    assert abs(change.std().item() - 0.08) < 0.002


def test_jpeg_matches_pillow_at_the_tables_quality(photo):
    buffer = io.BytesIO()
    Image.fromarray(photo.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=7)
    expected = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)
    assert torch.equal(C.corrupt(photo, "jpeg", 5), expected)


@pytest.mark.parametrize("name", ["gaussian_noise", "haze"])
def test_random_corruptions_are_reproducible_from_the_seed(photo, name):
    a = C.corrupt(photo, name, 4, seed=7)
    assert torch.equal(a, C.corrupt(photo, name, 4, seed=7))
    assert not torch.equal(a, C.corrupt(photo, name, 4, seed=8))


def test_haze_field_spans_zero_to_one_and_is_smooth():
    field = C.haze_field(2, 64, 64, torch.Generator().manual_seed(0))
    assert field.shape == (2, 1, 64, 64)
    assert field.amin().item() == pytest.approx(0) and field.amax().item() == pytest.approx(1)
    step = (field[..., 1:] - field[..., :-1]).abs().mean().item()
    white = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert step < 0.2 * (white[..., 1:] - white[..., :-1]).abs().mean().item()


def test_corruption_error_and_mce_by_hand():
    model = {"noise": [0.2, 0.3, 0.5], "blur": [0.1, 0.1, 0.1]}
    baseline = {"noise": [0.4, 0.6, 0.5], "blur": [0.2, 0.3, 0.1]}
    assert C.corruption_error(model["noise"], baseline["noise"]) == pytest.approx(1.0 / 1.5)
    assert C.corruption_error(model["blur"], baseline["blur"]) == pytest.approx(0.5)
    assert C.mean_corruption_error(model, baseline) == pytest.approx((1.0 / 1.5 + 0.5) / 2)
    assert C.mean_corruption_error(baseline, baseline) == pytest.approx(1.0)
    # relative CE: rises 0.1, 0.2, 0.4 over a clean 0.1, against the baseline's 0.3, 0.5, 0.4 over 0.1
    rel = C.relative_corruption_error(model["noise"], 0.1, baseline["noise"], 0.1)
    assert rel == pytest.approx(0.7 / 1.2)


def test_score_errors_are_one_line():
    with pytest.raises(C.CorruptionError, match="same corruptions"):
        C.mean_corruption_error({"noise": [0.1]}, {"blur": [0.1]})
    with pytest.raises(C.CorruptionError, match="one rate per severity"):
        C.corruption_error([0.1, 0.2], [0.1])
    with pytest.raises(C.CorruptionError, match="no errors"):
        C.corruption_error([0.1], [0.0])
    with pytest.raises(C.CorruptionError, match=r"in \[0, 1\]"):
        C.corruption_error([12.0], [0.5])
    with pytest.raises(C.CorruptionError, match="does not rise"):
        C.relative_corruption_error([0.3], 0.1, [0.2], 0.2)


def test_bad_input_is_refused_with_one_line(photo):
    for name, severity, match in (("snow", 1, "unknown corruption 'snow'; choose one of"),
                                  ("haze", 6, "severity must be a whole number from 1 to 5"),
                                  ("haze", -1, "severity"), ("haze", 2.0, "severity"),
                                  ("haze", True, "severity")):
        with pytest.raises(C.CorruptionError, match=match) as info:
            C.corrupt(photo, name, severity)
        assert "\n" not in str(info.value)
    with pytest.raises(C.CorruptionError, match=r"values in \[0, 1\]"):
        C.corrupt(photo.float(), "haze", 1)
    with pytest.raises(C.CorruptionError, match="C = 1 or 3"):
        C.corrupt(torch.zeros(4, 8, 8, dtype=torch.uint8), "haze", 1)
    with pytest.raises(C.CorruptionError, match="uint8"):
        C.corrupt(torch.zeros(3, 8, 8, dtype=torch.int32), "haze", 1)
    with pytest.raises(C.CorruptionError, match="same shape"):
        C.psnr(photo, photo[:, :10])
    assert math.isinf(C.psnr(photo, photo))


def test_corrupted_dataset_copies_keep_the_original():
    d = data.load("shapes", n_train=40, n_val=0, n_test=20, seed=0)
    before_test, before_train = d.test.images.clone(), d.train.images.clone()
    hazy = C.with_corrupted_test(d, "haze", 3, seed=0)
    assert torch.equal(d.test.images, before_test) and not torch.equal(hazy.test.images, before_test)
    assert hazy.train is d.train and hazy.mean == d.mean and torch.equal(hazy.test.labels, d.test.labels)
    aug = C.with_corrupted_training(d, share=0.5, seed=0)
    changed = (aug.train.images != before_train).flatten(1).any(1)
    assert torch.equal(d.train.images, before_train)
    assert 5 <= int(changed.sum()) <= 35 and aug.test is d.test
    assert torch.equal(aug.train.images, C.with_corrupted_training(d, share=0.5, seed=0).train.images)
    assert torch.equal(C.with_corrupted_training(d, share=0.0).train.images, before_train)
    with pytest.raises(C.CorruptionError, match="share must be in"):
        C.with_corrupted_training(d, share=1.5)
    with pytest.raises(C.CorruptionError, match="unknown corruption"):
        C.with_corrupted_training(d, names=("fog",))
