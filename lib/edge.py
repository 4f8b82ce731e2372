"""What a network costs on a small device, and two ways to make it cheaper.

Explained in chapter 6.7 ("Cost on the edge, for smart homes"). The measures: parameters, floating-point
operations per image (FLOPs, counted by PyTorch's `torch.utils.flop_counter`), the bytes its weights
take on disk, a lower bound on the memory its activations need, and the time one image takes (batch 1,
the case of a camera that sees one frame at a time), as the median of many runs. The two cheaper
versions: int8 post-training quantisation with PyTorch's own FX graph mode tools, and export to ONNX
run by ONNX Runtime. `agreement` says how often a cheaper version gives the same top-1 class.

On PyTorch's quantisation tools: `torch.ao.quantization` (eager and FX graph mode) still ships and
works in PyTorch 2.x, but has been deprecated in favour of the separate `torchao` package, whose PT2E
flow needs `torch.compile` to produce fast int8 CPU code. This module uses FX graph mode, which runs
int8 kernels (fbgemm/oneDNN on x86, QNNPACK on ARM) with nothing but PyTorch, and silences only
that deprecation warning. Chapter 6.7 discusses the choice.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

QUANTIZATION_BACKENDS = ("x86", "qnnpack")


class EdgeError(ValueError):
    """Settings or inputs a measurement or conversion cannot use. The message says what to do."""


# ---------------------------------------------------------------------------------------------
# Size, arithmetic, memory


def parameter_count(model: nn.Module) -> int:
    """Every parameter of the model (trainable or not). Chapter 6.7."""
    return sum(p.numel() for p in model.parameters())


def _check_example(example) -> torch.Tensor:
    if not isinstance(example, torch.Tensor) or example.ndim != 4:
        shape = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
        raise EdgeError(f"the example input must be one image batch (N, C, H, W), got {shape}")
    return example


def flops(model: nn.Module, example: torch.Tensor) -> int:
    """Floating-point operations of one forward pass on `example`, as PyTorch's FlopCounterMode counts
    them: convolutions and matrix products, two per multiply-add; element-wise work (activations,
    batch norm, additions) is not counted. Divide by the batch size for FLOPs per image. Chapter 6.7."""
    from torch.utils.flop_counter import FlopCounterMode

    example = _check_example(example)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved state dict (weights, buffers and, for a quantised model, its packed
    int8 weights and scales): what the device must store. Chapter 6.7."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """A lower bound on the memory for activations in one forward pass: the largest input plus output
    of any single layer (both must exist at once). Residual connections and the framework's own
    buffers need more; the weights come on top. Chapter 6.7."""
    example = _check_example(example)
    largest = 0

    def size(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        return 0

    def hook(module, inputs, output):
        nonlocal largest
        largest = max(largest, size(inputs) + size(output))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return largest


# ---------------------------------------------------------------------------------------------
# Time


@dataclass
class Latency:
    """Wall-clock times of repeated runs, in milliseconds: the median and the quartiles."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    threads: int

    def __str__(self) -> str:
        return (f"{self.median_ms:.2f} ms (quartiles {self.q1_ms:.2f}-{self.q3_ms:.2f}, {self.runs} runs, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''})")


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with `threads` intra-op threads (None: leave PyTorch's setting)."""
    if threads is None:
        yield
        return
    if not isinstance(threads, int) or threads < 1:
        raise EdgeError(f"threads must be a whole number of at least 1, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency(run: Callable[[torch.Tensor], object], example: torch.Tensor, repeats: int = 30, warmup: int = 3,
            threads: int | None = None) -> Latency:
    """Time `run(example)` `repeats` times after `warmup` untimed runs, without gradients; report the
    median and quartiles (robust to the odd slow run when other programs share the machine).
    `threads` sets PyTorch's intra-op threads for the measurement. Chapter 6.7."""
    if not isinstance(repeats, int) or repeats < 3:
        raise EdgeError(f"repeats must be a whole number of at least 3, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise EdgeError(f"warmup must be a whole number of at least 0, got {warmup!r}")
    times = []
    with torch_threads(threads), torch.no_grad():
        for _ in range(warmup):
            run(example)
        for _ in range(repeats):
            start = time.perf_counter()
            run(example)
            times.append(1000 * (time.perf_counter() - start))
        used = torch.get_num_threads()
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(median, q1, q3, repeats, used)


# ---------------------------------------------------------------------------------------------
# int8 quantisation with PyTorch's own tools


@contextmanager
def _quiet_quantization_warnings():
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call; the module docstring says why
        # it is still the right tool here. Only these deprecation notices are silenced.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        yield


def default_backend() -> str:
    """The int8 kernels for this CPU: "x86" (fbgemm and oneDNN) where PyTorch has them, else "qnnpack"
    (ARM: phones, boards, Apple silicon)."""
    engines = torch.backends.quantized.supported_engines
    if "x86" in engines:
        return "x86"
    if "qnnpack" in engines:
        return "qnnpack"
    raise EdgeError(f"this PyTorch build has no int8 CPU kernels (it has: {', '.join(engines)})")


def relu6_convolutions(model: nn.Module) -> list[str]:
    """Names of the convolutions whose output goes (through a batch norm or not) straight into a ReLU6
    in the same `nn.Sequential`: their outputs always end up in [0, 6]. Chapter 6.7."""
    names = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d):
                continue
            following = [c for _, c in children[i + 1:i + 3]]
            if following and isinstance(following[0], nn.BatchNorm2d):
                following = following[1:]
            if following and isinstance(following[0], nn.ReLU6):
                names.append(f"{prefix}.{name}" if prefix else name)
    return names


def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor], *, backend: str | None = None,
                  keep_float: Iterable[type] = (), bound_relu6: bool = True) -> nn.Module:
    """Post-training static int8 quantisation in PyTorch's FX graph mode. Chapter 6.7.

    The model is traced into a graph, batch norm is folded into the convolutions, observers record the
    range of every activation while the `calibration` batches (normalised images, as the model takes
    them) run through it, and each convolution and linear layer becomes an int8 kernel with one weight
    scale per output channel and one scale per activation tensor. `backend`: "x86" (fbgemm and
    oneDNN kernels, Intel and AMD CPUs) or "qnnpack" (ARM); None picks this CPU's (`default_backend`).
    With `bound_relu6`, a convolution followed by ReLU6 gets the fixed output range [0, 6] instead of
    the observed one, which can be far wider before the clipping: the int8 steps then stay fine where
    the values survive. Modules of the classes in `keep_float` stay in float (layers the tracer cannot
    follow). The original model is not changed; the result runs on the CPU only, and PyTorch's
    quantised engine is set to `backend`. Chapter 6.7 checks "x86" on EfficientNet-Lite0; "qnnpack" is
    tested on small networks only (EfficientNet-Lite0 through QNNPACK on an x86 CPU did not agree with
    float), so measure `agreement` before trusting it.
    """
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping, quantize_fx
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.observer import (
        FixedQParamsObserver,
        HistogramObserver,
        default_per_channel_weight_observer,
    )

    backend = backend or default_backend()
    if backend not in QUANTIZATION_BACKENDS:
        raise EdgeError(f"unknown quantisation backend {backend!r}; choose one of {', '.join(QUANTIZATION_BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise EdgeError(f"this PyTorch build has no {backend!r} int8 kernels; it has: "
                        f"{', '.join(torch.backends.quantized.supported_engines)}")
    batches = [_check_example(b) for b in calibration]
    if not batches:
        raise EdgeError("quantize_int8 needs at least one calibration batch of images")
    float_model = copy.deepcopy(model).cpu().eval()
    # x86 kernels multiply unsigned 8-bit activations by signed 8-bit weights in 16-bit sums, which can
    # overflow on CPUs without VNNI instructions: PyTorch's x86 default keeps activations to 7 bits.
    seven_bits = backend == "x86"
    top = 127 if seven_bits else 255
    with _quiet_quantization_warnings():
        mapping = get_default_qconfig_mapping(backend)
        mapping.set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=seven_bits),
                                   weight=default_per_channel_weight_observer))
        if bound_relu6:
            bounded = QConfig(activation=FixedQParamsObserver.with_args(
                scale=6.0 / top, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=top),
                weight=default_per_channel_weight_observer)
            for name in relu6_convolutions(float_model):
                mapping.set_module_name(name, bounded)
        config = PrepareCustomConfig().set_non_traceable_module_classes(list(keep_float))
        torch.backends.quantized.engine = backend
        with torch.no_grad():
            prepared = quantize_fx.prepare_fx(float_model, mapping, (batches[0][:1],), prepare_custom_config=config)
            for batch in batches:
                prepared(batch)
            quantized = quantize_fx.convert_fx(prepared)
    return _Quiet(quantized)


class _Quiet(nn.Module):
    """Wraps a quantised model so that calling it does not repeat PyTorch's deprecation notices."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _quiet_quantization_warnings():
            return self.model(x)


# ---------------------------------------------------------------------------------------------
# ONNX and ONNX Runtime


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export the model to one ONNX file with PyTorch's exporter (torch.export based), the batch size
    left free; returns the path. Needs the `onnx` and `onnxscript` packages. Chapter 6.7."""
    example = _check_example(example)
    path = Path(path)
    if path.suffix != ".onnx":
        raise EdgeError(f"the ONNX file name must end in .onnx, got {path.name}")
    if path.exists():
        raise EdgeError(f"{path} exists already; choose a new file name (nothing is overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    import contextlib
    import logging

    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(model, (example[:1],), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)
    return path


class OnnxModel:
    """An ONNX file run by ONNX Runtime on the CPU, called like a PyTorch model: float tensor in,
    float tensor out. `threads` sets ONNX Runtime's intra-op threads (None: its default). Chapter 6.7."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise EdgeError(f"ONNX file {path} not found; export one with edge.export_onnx")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def file_bytes(path: str | Path) -> int:
    """Size of a file in bytes (an exported model, for instance)."""
    return Path(path).stat().st_size


# ---------------------------------------------------------------------------------------------
# Agreement


def agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Fraction of rows whose top-1 class is the same in two (N, classes) score tensors: how often a
    cheaper version of a network gives the answer the original gives. Chapter 6.7."""
    reference, other = torch.as_tensor(reference), torch.as_tensor(other)
    if reference.ndim != 2 or reference.shape != other.shape:
        raise EdgeError(f"need two score tensors of the same shape (N, classes), got {tuple(reference.shape)} "
                        f"and {tuple(other.shape)}")
    return (reference.argmax(1) == other.argmax(1)).double().mean().item()
