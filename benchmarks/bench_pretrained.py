"""Speed of the ImageNet network that ships offline (EfficientNet-Lite0, lib.pretrained) on this machine.

    python benchmarks/bench_pretrained.py [--device cpu] [--repeats 5] [--threads N]

1. batch-1 latency: one preprocessed 224x224 image through the network, milliseconds (median of
   `--repeats` runs after a warm-up);
2. batch-64 throughput: 64 preprocessed images per forward pass, images/s (median);
3. end to end: the sample photos of lib.photos from PIL image to top-5 (decode excluded, resize,
   crop, normalise and network included), images/s.

Each figure is given twice: wall-clock time, and the CPU time of this process (all its threads).
On a machine shared with other work the wall-clock figures stretch with the load while the CPU
time stays close to what the work needs; on an idle machine with N threads, wall-clock time is at
best the CPU time divided by N. Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lib import photos, pretrained


def _median_seconds(work, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of `work()` over `repeats` runs, after one warm-up run."""
    work()  # warm-up: first-call allocations and kernel choices
    wall, cpu = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started, started_cpu = time.perf_counter(), time.process_time()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    net = pretrained.load("efficientnet_lite0", device)
    load_seconds = time.perf_counter() - started
    print(f"{net}\nloaded in {load_seconds:.2f} s; torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{platform.processor() or platform.machine()}, {device}")

    generator = torch.Generator().manual_seed(0)
    one = torch.randn(1, 3, 224, 224, generator=generator)
    batch = torch.randn(64, 3, 224, 224, generator=generator)
    wall, cpu = _median_seconds(lambda: net.logits(one), args.repeats, device)
    print(f"1. batch 1: {wall * 1000:.1f} ms per image wall-clock, {cpu * 1000:.1f} ms CPU "
          f"(median of {args.repeats})")
    wall, cpu = _median_seconds(lambda: net.logits(batch), args.repeats, device)
    print(f"2. batch 64: {wall:.2f} s per batch = {64 / wall:,.1f} images/s wall-clock; {cpu:.2f} CPU s = "
          f"{64 / cpu:,.1f} images per CPU second (median of {args.repeats})")
    images = list(photos.samples().values())
    wall, cpu = _median_seconds(lambda: net.predict(images, k=5), max(1, args.repeats // 2), device)
    print(f"3. end to end on the {len(images)} sample photos (preprocessing and top-5): "
          f"{len(images) / wall:,.1f} images/s wall-clock, {len(images) / cpu:,.1f} images per CPU second")


if __name__ == "__main__":
    main()
