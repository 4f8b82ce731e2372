"""Adversarial examples: the fast gradient sign method (FGSM) of Goodfellow, Shlens and Szegedy (2015).

Explained in chapter 8 ("Trends and challenges"), which attacks the real ImageNet network of
`lib.pretrained` on the photos of `lib.photos`.

FGSM changes every pixel by the same small amount, `epsilon`, in the direction that increases the
classifier's loss for the given labels: x' = clip(x + epsilon * sign(grad_x loss(f(x), y)), 0, 1).
Images are pixels in [0, 1] *before* the network's normalisation, so that `epsilon` is in pixel
units (8/255 changes an 8-bit pixel by at most 8 levels) and the result is still an image; the
normalisation is passed separately and applied inside the attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class AttackError(ValueError):
    """A bad argument to an attack (epsilon, images or labels). The message says what to do."""


def check_epsilon(epsilon) -> float:
    """`epsilon` as a float, if it is a number between 0 and 1 (pixel units of [0, 1] images)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise AttackError(f"epsilon must be a number between 0 and 1 (pixel units), got "
                          f"{type(epsilon).__name__} {epsilon!r}")
    if not math.isfinite(epsilon) or not 0 <= epsilon <= 1:
        raise AttackError(f"epsilon must be between 0 and 1 (pixel units; 8/255 is about 0.031), "
                          f"got {epsilon!r}")
    return float(epsilon)


def _check_batch(images, labels) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise AttackError(f"images must be a float tensor (N, C, H, W) of pixels in [0, 1], got {shape}; "
                          "use torchvision's to_tensor (not the network's normalised input)")
    if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
        raise AttackError(f"image pixels must lie in [0, 1], got values from {float(images.min()):.3g} to "
                          f"{float(images.max()):.3g}; attack the pixels and pass the normalisation "
                          "as `normalize`")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise AttackError(f"labels must be an int64 tensor with one class index per image "
                          f"({images.shape[0]}), got {shape}")


def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         normalize: Callable | None = None) -> torch.Tensor:
    """Cross-entropy of `model` on each image (pixels in [0, 1]) for `labels`: a tensor (N,)."""
    _check_batch(images, labels)
    device = next(model.parameters()).device
    with torch.no_grad():
        x = images.to(device)
        logits = model(normalize(x) if normalize else x)
        return F.cross_entropy(logits.float(), labels.to(device), reduction="none").cpu()


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epsilon: float,
         normalize: Callable | None = None) -> torch.Tensor:
    """The fast gradient sign method: `images` (N, C, H, W), pixels in [0, 1], each moved by
    `epsilon` per pixel in the direction that raises the cross-entropy loss for `labels`, then
    clipped back to [0, 1]. `normalize` (for example `net.normalize` of `lib.pretrained`) is applied
    before the model. The model's parameters and its gradients are left untouched; the result is a
    new tensor on the images' device, without gradient. epsilon = 0 returns the images unchanged.
    Chapter 8."""
    epsilon = check_epsilon(epsilon)
    _check_batch(images, labels)
    if epsilon == 0:
        return images.detach().clone()
    device = next(model.parameters()).device
    x = images.detach().to(device).requires_grad_(True)
    with torch.enable_grad():
        logits = model(normalize(x) if normalize else x)
        total = F.cross_entropy(logits.float(), labels.to(device), reduction="sum")
        (gradient,) = torch.autograd.grad(total, x)
    adversarial = (x.detach() + epsilon * gradient.sign()).clamp_(0, 1)
    return adversarial.to(images.device)
