"""lib.edge: size, FLOPs, memory and latency; int8 quantisation; ONNX export run with ONNX Runtime
(chapter 6.7). Small models only: the ImageNet network is measured in the chapter."""

import pytest
import torch
from torch import nn

from lib import edge, models

X86 = "x86" in torch.backends.quantized.supported_engines


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()


def test_parameter_count_and_flops_by_hand():
    conv = nn.Conv2d(3, 8, 3)  # on 10x10: 8x8 outputs, each 3*3*3 multiply-adds per channel
    assert edge.parameter_count(conv) == 8 * 3 * 3 * 3 + 8
    assert edge.flops(conv, torch.zeros(1, 3, 10, 10)) == 2 * (8 * 8 * 8) * (3 * 3 * 3)
    assert edge.flops(conv, torch.zeros(4, 3, 10, 10)) == 4 * 2 * (8 * 8 * 8) * (3 * 3 * 3)
    linear = nn.Linear(64, 10)
    assert edge.flops(linear, torch.zeros(1, 1, 1, 64)) == 2 * 64 * 10
    net = models.seed_cnn()
    assert edge.parameter_count(net) == models.count_parameters(net)


def test_activation_bytes_is_the_largest_layer_input_plus_output():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = torch.zeros(1, 3, 16, 16)
    # the ReLU's input and output are both (8, 16, 16) float32; the convolution's input is smaller
    assert edge.activation_bytes(net, x) == 2 * 8 * 16 * 16 * 4


def test_weight_bytes_and_file_bytes(tmp_path):
    net = small_cnn()
    assert edge.weight_bytes(net) > 4 * edge.parameter_count(net)
    path = tmp_path / "w.bin"
    path.write_bytes(b"12345")
    assert edge.file_bytes(path) == 5


def test_latency_reports_median_and_quartiles():
    calls = []
    result = edge.latency(lambda x: calls.append(x), torch.zeros(1, 3, 4, 4), repeats=5, warmup=2, threads=1)
    assert len(calls) == 7 and result.runs == 5 and result.threads == 1
    assert 0 <= result.q1_ms <= result.median_ms <= result.q3_ms
    assert "ms" in str(result)
    with pytest.raises(edge.EdgeError, match="repeats"):
        edge.latency(lambda x: x, torch.zeros(1, 3, 4, 4), repeats=1)
    with pytest.raises(edge.EdgeError, match="threads"):
        edge.latency(lambda x: x, torch.zeros(1, 3, 4, 4), threads=0)
    with pytest.raises(edge.EdgeError, match="one image batch"):
        edge.flops(nn.Identity(), torch.zeros(3, 4, 4))


def test_relu6_convolutions_are_found():
    assert edge.relu6_convolutions(small_cnn()) == ["0"]
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU6()), nn.Conv2d(3, 3, 1))
    assert edge.relu6_convolutions(nested) == ["0.0"]


@pytest.mark.skipif(not X86, reason="no x86 int8 kernels in this PyTorch build")
def test_quantize_int8_stays_close_and_leaves_the_original_alone():
    net = small_cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.rand(16, 3, 16, 16, generator=generator) * 4 for _ in range(2)]
    quantized = edge.quantize_int8(net, calibration)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.rand(32, 3, 16, 16, generator=generator) * 4
    with torch.no_grad():
        reference, approx = net(x), quantized(x)
    assert torch.nn.functional.cosine_similarity(reference, approx).mean() > 0.99
    assert edge.agreement(reference, approx) >= 0.9
    assert edge.weight_bytes(quantized) < edge.weight_bytes(net)


def test_quantize_int8_rejects_bad_settings():
    with pytest.raises(edge.EdgeError, match="unknown quantisation backend 'arm'"):
        edge.quantize_int8(small_cnn(), [torch.zeros(1, 3, 8, 8)], backend="arm")
    with pytest.raises(edge.EdgeError, match="at least one calibration batch"):
        edge.quantize_int8(small_cnn(), [], backend=edge.default_backend())


def test_onnx_export_runs_in_onnx_runtime(tmp_path):
    pytest.importorskip("onnxscript")
    net = small_cnn()
    x = torch.rand(3, 3, 16, 16)
    path = edge.export_onnx(net, x, tmp_path / "small.onnx")
    runtime = edge.OnnxModel(path, threads=1)
    with torch.no_grad():
        assert torch.allclose(runtime(x), net(x), atol=1e-5)  # any batch size: the batch axis is free
        assert torch.allclose(runtime(x[:1]), net(x[:1]), atol=1e-5)
    with pytest.raises(edge.EdgeError, match="exists already"):
        edge.export_onnx(net, x, path)
    with pytest.raises(edge.EdgeError, match=r"end in \.onnx"):
        edge.export_onnx(net, x, tmp_path / "small.bin")
    with pytest.raises(edge.EdgeError, match="not found"):
        edge.OnnxModel(tmp_path / "missing.onnx")


def test_agreement():
    a = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [5.0, 1.0], [0.0, 1.0]])
    assert edge.agreement(a, b) == 0.75
    with pytest.raises(edge.EdgeError, match="same shape"):
        edge.agreement(a, b[:2])
