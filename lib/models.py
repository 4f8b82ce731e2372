"""Models by name: the article's CNN, a small ResNet, and torchvision's ImageNet architectures.

`seed_cnn` is explained in chapter 5 (the hands-on project); the classic architectures in chapter 1.
"""

from __future__ import annotations

import torch
from torch import nn

OWN_MODELS = ("seed_cnn", "small_resnet")


class ModelError(ValueError):
    """An unknown model name, or settings a model cannot take. The message says what to do."""


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's image-classification models (alexnet, vgg16, resnet18, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_name(name: str) -> None:
    """Raise ModelError, listing the choices, unless `name` is a model that `build` knows."""
    if name in OWN_MODELS:
        return
    names = torchvision_classifiers()
    if name not in names:
        raise ModelError(f"unknown model {name!r}; choose seed_cnn, small_resnet or one of torchvision's: "
                         f"{', '.join(names[:12])}, ... ({len(names)} in all)")


def seed_cnn(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, keras_init: bool = True) -> nn.Sequential:
    """The article's CNN (its section 5.2.3) in PyTorch. Defined in chapter 5.

    Three 3x3 convolutions with 32, 64 and 64 channels and no padding ('valid', as in Keras), a 2x2
    max-pooling after each of the first two, a 64-unit dense layer and a `num_classes`-way output.
    The output is raw scores (logits): the softmax lives in the loss. With `keras_init` the weights
    start as Keras would start them (Glorot-uniform weights, zero biases).
    """
    side = image_size
    for _ in range(2):
        side = (side - 2) // 2
    side -= 2
    if side < 1:
        raise ModelError(f"seed_cnn needs images of at least 18x18 pixels, got {image_size}x{image_size}")
    model = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * side * side, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )
    if keras_init:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return model


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to a shortcut (He et al., 2016). Chapter 5."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def small_resnet(in_channels: int = 3, num_classes: int = 10, widths=(32, 64, 128), blocks: int = 1) -> nn.Sequential:
    """A small residual network for small images: a 3x3 stem, one stage per width (each after the
    first halves the resolution), `blocks` residual blocks per stage, global average pooling and a
    linear classifier. With the defaults it has eight weight layers. Defined in chapter 5."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                               nn.ReLU(inplace=True)]
    c_in = widths[0]
    for stage, width in enumerate(widths):
        for b in range(blocks):
            layers.append(BasicBlock(c_in, width, stride=2 if stage > 0 and b == 0 else 1))
            c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


class GrayToRGB(nn.Module):
    """Repeats a single channel three times, so that grayscale images fit an RGB network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


def build(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
          pretrained: bool = False, seed: int | None = 0, widths: tuple[int, ...] | None = None) -> nn.Module:
    """A model by name, checked to run on (in_channels, image_size, image_size) inputs.

    `seed_cnn` and `small_resnet` are the course's own; any name from `torchvision_classifiers()`
    builds that architecture without weights, or with its ImageNet weights when `pretrained=True`
    (a download, so it needs internet; the classifier is then replaced for `num_classes`).
    `seed` fixes the initial weights without touching the global random state (None: don't fix).
    `widths` sets small_resnet's channels per stage (its default otherwise; other models refuse it).
    """
    if widths is not None and name != "small_resnet":
        raise ModelError(f"widths applies to small_resnet only, not to {name}")
    if seed is None:
        return _build(name, num_classes, in_channels, image_size, pretrained, widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(name, num_classes, in_channels, image_size, pretrained, widths)


def for_dataset(name: str, data, *, seed: int | None = 0, pretrained: bool = False,
                widths: tuple[int, ...] | None = None) -> nn.Module:
    """`build(name, ...)` with the number of classes, channels and image size of `data` (a
    `lib.data.Dataset`). Chapter 0 builds its first model with it."""
    return build(name, data.num_classes, data.channels, data.image_size, pretrained=pretrained, seed=seed,
                 widths=widths)


def _build(name, num_classes, in_channels, image_size, pretrained, widths=None) -> nn.Module:
    if name == "seed_cnn":
        model = seed_cnn(in_channels, num_classes, image_size)
    elif name == "small_resnet":
        shape = {} if widths is None else {"widths": tuple(widths)}
        model = small_resnet(in_channels, num_classes, **shape)
    else:
        model = _torchvision_model(name, num_classes, pretrained)
        if in_channels == 1:
            model = nn.Sequential(GrayToRGB(), model)
        elif in_channels != 3:
            raise ModelError(f"{name} takes 3-channel images, got {in_channels} channels")
    if pretrained and name in OWN_MODELS:
        raise ModelError(f"{name} has no pretrained weights; pretrained=True is for torchvision's models")
    _check_input_size(model, name, in_channels, image_size)
    return model


def _torchvision_model(name: str, num_classes: int, pretrained: bool) -> nn.Module:
    import torchvision

    check_name(name)
    options = {}
    if name in ("googlenet", "inception_v3"):
        options = {"aux_logits": False, "init_weights": not pretrained}
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT", **({"aux_logits": True} if options else {}))
    except Exception as error:  # no internet, or a damaged download
        raise ModelError(f"could not get the pretrained weights of {name} ({type(error).__name__}: {error}); "
                         "they are downloaded once and need internet") from None
    if name in ("googlenet", "inception_v3"):
        model.aux_logits, model.aux1, model.aux2 = False, None, None
        if name == "inception_v3":
            model.AuxLogits = None
    if num_classes != 1000:
        replace_classifier(model, num_classes)
    return model


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last linear layer of a torchvision classifier for a new one with `num_classes` outputs."""
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None:
        raise ModelError("this model has no linear layer to replace")
    parent = model.get_submodule(last_name.rsplit(".", 1)[0]) if "." in last_name else model
    setattr(parent, last_name.rsplit(".", 1)[-1], nn.Linear(last.in_features, num_classes))
    return model


def _check_input_size(model: nn.Module, name: str, in_channels: int, image_size: int) -> None:
    """Run one tiny forward pass so that an input too small for the architecture fails now, clearly."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as error:
        raise ModelError(f"{name} cannot take {image_size}x{image_size} images ({str(error).splitlines()[0]}); "
                         "use a larger image size") from None
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
