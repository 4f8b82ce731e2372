"""Common corruptions at five severities, in the style of ImageNet-C, and the corruption error.
Chapter 6.5 ("Robustness, for driving") explains them and measures networks with them.

Hendrycks and Dietterich (ICLR 2019) built ImageNet-C from the ImageNet validation set: 15 kinds
of corruption that cameras and transmission produce without anyone meaning harm, each at five
severities. `corrupt` applies six of them to a batch of images, `with_corrupted_test` to a
dataset's test split, and `corruption_error` / `mean_corruption_error` score a model the way the
paper does.

| name | what it does | severities 1 to 5 | relation to ImageNet-C's code |
| --- | --- | --- | --- |
| gaussian_noise | adds N(0, s^2) to every pixel value in [0, 1], then clips | s = 0.08, 0.12, 0.18, 0.26, 0.38 | same constants |
| gaussian_blur | Gaussian filter (torchvision), standard deviation s x sqrt(side / 224) pixels | s = 1, 2, 3, 4, 6 | same constants at 224 pixels; our own scaling for other sides |
| brightness | multiplies every value by f, then clips (torchvision) | f = 1.2, 1.4, 1.6, 1.8, 2.0 | ImageNet-C adds c = 0.1 ... 0.5 to the HSV value; f = 1 + 2c brightens a mid-grey pixel (0.5) as much |
| contrast | blends each image with its mean grey level: c x image + (1 - c) x mean (torchvision) | c = 0.4, 0.3, 0.2, 0.1, 0.05 | same constants; ImageNet-C blends with each channel's mean |
| haze | adds a smooth random bright field f in [0, 1] with weight a, then rescales: (x + a f) m / (m + a), m the image's maximum | a = 0.25, 0.5, 1.0, 1.5, 2.5 | ImageNet-C's fog formula with weaker weights of our own (its fog uses a = 1.5 ... 3); value noise (bilinear octaves) instead of its diamond-square plasma fractal |
| jpeg | saves and reloads as JPEG (Pillow) at quality q | q = 25, 18, 15, 10, 7 | same constants, same library |

The constants marked "same" were checked against ImageNet-C's code (the `imagenet_c` package of
github.com/hendrycks/robustness); the others are this module's own choices. Severity 0 means no
corruption (the image is returned unchanged), so that curves can start at the clean image.

Randomness (noise, haze) comes from a torch generator seeded by (seed, corruption): the same seed
and batch give the same pixels, and the severities of one corruption share one random field, so
that a higher severity is the same pattern, stronger.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "haze", "jpeg")
SEVERITIES = (1, 2, 3, 4, 5)

# One row per corruption: its parameter at severities 1..5 (see the table above).
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "brightness": (1.2, 1.4, 1.6, 1.8, 2.0),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "haze": (0.25, 0.5, 1.0, 1.5, 2.5),
    "jpeg": (25, 18, 15, 10, 7),
}
# gaussian_blur's sigmas are in pixels at this image side; for a side d they are multiplied by
# sqrt(d / 224). (Scaling them with d itself would leave severities 1 and 2 invisible on the
# course's 32-pixel images, a blur of a seventh of a pixel; not scaling them would blur a
# 32-pixel image away entirely at severity 5.)
BLUR_REFERENCE_SIDE = 224
HAZE_DECAY = 2.0  # each finer octave of the haze field has 1 / HAZE_DECAY the amplitude


class CorruptionError(ValueError):
    """An unknown corruption, a severity outside 0-5, or images of the wrong kind. The message says what to do."""


def check(name: str, severity: int) -> None:
    """Raise CorruptionError unless `name` is one of CORRUPTIONS and `severity` a whole number 0-5."""
    if name not in CORRUPTIONS:
        raise CorruptionError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise CorruptionError(f"severity must be a whole number from 1 to 5 (0: no corruption), got {severity!r}")


def _as_float_batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(N, C, H, W) float32 in [0, 1] from uint8 or float images, (C, H, W) or (N, C, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise CorruptionError(f"images must be a torch tensor (uint8 0-255 or float 0-1), got {type(images).__name__}")
    if images.dim() not in (3, 4) or images.shape[-3] not in (1, 3):
        raise CorruptionError(f"images must have shape (C, H, W) or (N, C, H, W) with C = 1 or 3, "
                              f"got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise CorruptionError("float images must have values in [0, 1]; divide 8-bit values by 255 first")
        x = images.float()
    else:
        raise CorruptionError(f"images must be uint8 (0-255) or float (0-1), got dtype {images.dtype}")
    return (x if images.dim() == 4 else x[None]), images.dim() == 3


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1009 + CORRUPTIONS.index(name))


def haze_field(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random fields (n, 1, height, width) in [0, 1]: octaves of uniform noise on grids of
    2, 4, 8, ... cells, bilinearly upsampled, each finer octave 1 / HAZE_DECAY as strong, then each
    field scaled to span [0, 1]. Chapter 6.5."""
    field = torch.zeros(n, 1, height, width)
    cells, amplitude = 2, 1.0
    while cells <= max(height, width):
        coarse = torch.rand(n, 1, cells + 1, cells + 1, generator=generator)
        field += amplitude * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
        cells, amplitude = cells * 2, amplitude / HAZE_DECAY
    low = field.amin(dim=(2, 3), keepdim=True)
    high = field.amax(dim=(2, 3), keepdim=True)
    return (field - low) / (high - low).clamp_min(1e-8)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    pixels = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        out.append(decoded.reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` after corruption `name` at `severity` (1 mild ... 5 strong; 0 returns a copy).
    Images are uint8 (0-255) or float (0-1) tensors, (C, H, W) or (N, C, H, W), C = 1 or 3, on
    the CPU; the result has the same shape and dtype. Noise and haze are drawn from `seed`.
    The module docstring lists every corruption's parameters. Chapter 6.5."""
    check(name, severity)
    x, single = _as_float_batch(images)
    if severity == 0:
        return images.clone()
    import torchvision.transforms.v2.functional as TF

    c = PARAMETERS[name][severity - 1]
    n, channels, height, width = x.shape
    if name == "gaussian_noise":
        noise = torch.randn(x.shape, generator=_generator(seed, name))
        y = (x + c * noise).clamp(0, 1)
    elif name == "gaussian_blur":
        sigma = c * math.sqrt(min(height, width) / BLUR_REFERENCE_SIDE)
        size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(height, width) - 1)
        y = TF.gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])
    elif name == "brightness":
        y = TF.adjust_brightness(x, c)
    elif name == "contrast":
        y = TF.adjust_contrast(x, c)
    elif name == "haze":
        field = haze_field(n, height, width, _generator(seed, name))
        top = x.amax(dim=(1, 2, 3), keepdim=True)
        y = ((x + c * field) * top / (top + c)).clamp(0, 1)
    else:
        y = _jpeg(x, int(c))
    y = y[0] if single else y
    if images.dtype == torch.uint8:
        return (y * 255).round().clamp(0, 255).to(torch.uint8)
    return y.to(images.dtype)


def with_corrupted_test(data, name: str, severity: int, seed: int = 0):
    """A copy of `data` (a `lib.data.Dataset` held in memory) whose test split is corrupted; the
    training statistics, classes and other splits are kept, so `train.predict(model, copy)` scores
    a trained model on it. Chapter 6.5."""
    from lib.data import TensorSplit

    check(name, severity)
    if not isinstance(data.test, TensorSplit):
        raise CorruptionError(f"{data.name}'s test split is streamed from disk; load it in memory "
                              "(in_memory=True) to corrupt it")
    test = TensorSplit(corrupt(data.test.images, name, severity, seed), data.test.labels)
    return replace(data, test=test)


def with_corrupted_training(data, names=("gaussian_noise", "gaussian_blur"), share: float = 0.5, seed: int = 0):
    """A copy of `data` (held in memory) in which a random `share` of the training images is
    replaced, once, by a copy corrupted with one of `names` at a random severity 1-5, each chosen
    uniformly from `seed`; validation and test splits are kept. The augmentation of chapter 6.5:
    training sees the corruptions the model should tolerate."""
    from lib.data import TensorSplit

    for name in names:
        check(name, 1)
    if not names:
        raise CorruptionError("names must list at least one corruption to train with")
    if not 0 <= share <= 1:
        raise CorruptionError(f"share must be in [0, 1], got {share!r}")
    if not isinstance(data.train, TensorSplit):
        raise CorruptionError(f"{data.name}'s training split is streamed from disk; load it in memory "
                              "(in_memory=True) to corrupt it")
    rng = np.random.default_rng([int(seed), 65])
    n = len(data.train)
    chosen = rng.random(n) < share
    kind = rng.integers(0, len(names), n)
    level = rng.integers(1, 6, n)
    images = data.train.images.clone()
    for k, name in enumerate(names):
        for severity in SEVERITIES:
            index = torch.from_numpy(np.flatnonzero(chosen & (kind == k) & (level == severity)))
            if len(index):
                images[index] = corrupt(images[index], name, severity, seed=seed * 10 + severity)
    return replace(data, train=TensorSplit(images, data.train.labels))


def psnr(clean: torch.Tensor, changed: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB between two images of the same shape (uint8 or [0, 1]
    float): 10 log10(1 / mean squared difference on the [0, 1] scale); infinite when identical.
    Chapter 6.5 measures how strongly each severity distorts with it."""
    a, _ = _as_float_batch(clean)
    b, _ = _as_float_batch(changed)
    if a.shape != b.shape:
        raise CorruptionError(f"images to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _errors(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) == 0:
        raise CorruptionError(f"{what} must be a non-empty sequence of error rates, one per severity")
    if not np.all((array >= 0) & (array <= 1)):
        raise CorruptionError(f"{what} must be error rates in [0, 1], got {array.tolist()}")
    return array


def corruption_error(errors, baseline_errors) -> float:
    """The corruption error CE of Hendrycks and Dietterich: a model's top-1 error rates on one
    corruption, summed over its severities, divided by the same sum for a baseline model (AlexNet
    in the paper). 1 means as robust as the baseline; lower is better. Chapter 6.5."""
    e, b = _errors(errors, "errors"), _errors(baseline_errors, "baseline_errors")
    if len(e) != len(b):
        raise CorruptionError(f"errors and baseline_errors need one rate per severity each, got {len(e)} and {len(b)}")
    if b.sum() == 0:
        raise CorruptionError("the baseline makes no errors on this corruption, so CE is undefined; "
                              "choose a weaker baseline or a stronger corruption")
    return float(e.sum() / b.sum())


def mean_corruption_error(errors: dict, baseline_errors: dict) -> float:
    """mCE: the corruption error averaged over corruptions. `errors` and `baseline_errors` map each
    corruption's name to its error rates at the severities (same names in both). Chapter 6.5."""
    if not errors or set(errors) != set(baseline_errors):
        raise CorruptionError(f"errors and baseline_errors must name the same corruptions, got "
                              f"{sorted(errors)} and {sorted(baseline_errors)}")
    return float(np.mean([corruption_error(errors[k], baseline_errors[k]) for k in errors]))


def relative_corruption_error(errors, clean_error: float, baseline_errors, baseline_clean_error: float) -> float:
    """The paper's relative CE: the rise of the error over the clean error, summed over severities,
    divided by the baseline's rise. It measures how much a model degrades, not how wrong it is.
    Chapter 6.5."""
    e, b = _errors(errors, "errors"), _errors(baseline_errors, "baseline_errors")
    clean = _errors([clean_error, baseline_clean_error], "clean errors")
    if len(e) != len(b):
        raise CorruptionError(f"errors and baseline_errors need one rate per severity each, got {len(e)} and {len(b)}")
    rise = float((b - clean[1]).sum())
    if rise <= 0:
        raise CorruptionError("the baseline's error does not rise under this corruption, so relative CE is undefined")
    return float((e - clean[0]).sum() / rise)
