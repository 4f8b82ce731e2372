"""Run the `airbench` package's airbench94 on the same CIFAR-10 images as lib.fast, where it can run.

Used by benchmarks/fast_cifar10.py (CPU) and benchmarks/gpu_check.py (GPU). airbench is a
benchmark-only dependency (`pip install airbench`, pure Python, MIT licence); nothing in `lib`
imports it.

airbench 0.1.8 runs only on a CUDA GPU, as published: its loader loads the data with
`map_location=torch.device(0)` (CUDA device 0), `make_net94` calls `.half().cuda()`, its training
loop times itself with `torch.cuda.Event` and `torch.cuda.synchronize()`, and the test loader inside
`train94` reads `cifar10/test.pt` relative to the working directory (downloading CIFAR-10 with
torchvision when that file is missing). `cannot_run` says which of these stops it on a machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from pathlib import Path

import torch

CUDA_ONLY = ("airbench 0.1.8 runs on a CUDA GPU only: its CifarLoader loads the data onto CUDA device 0 "
             "(map_location=torch.device(0)), make_net94 calls .half().cuda(), and train94 times itself "
             "with torch.cuda.Event and torch.cuda.synchronize()")


def cannot_run() -> str | None:
    """Why airbench94 cannot run here (one line), or None when it can."""
    if importlib.util.find_spec("airbench") is None:
        return "the airbench package is not installed (pip install airbench==0.1.8)"
    if not torch.cuda.is_available():
        return CUDA_ONLY + "; this machine has no CUDA GPU"
    return None


def write_airbench_data(data, folder: Path) -> Path:
    """Write lib.data's CIFAR-10 (train + val = all 50,000 training images, and the test split) as
    airbench's cache files folder/cifar10/{train,test}.pt (uint8 images N x 32 x 32 x 3, labels,
    class names), so that airbench reads exactly the images lib.fast trains on, offline."""
    target = Path(folder) / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    train_images = torch.cat([data.train.images, data.val.images]).permute(0, 2, 3, 1).contiguous()
    train_labels = torch.cat([data.train.labels, data.val.labels])
    for name, images, labels in (("train", train_images, train_labels),
                                 ("test", data.test.images.permute(0, 2, 3, 1).contiguous(), data.test.labels)):
        torch.save({"images": images.cpu(), "labels": labels.cpu(), "classes": list(data.classes)},
                   target / f"{name}.pt")
    return target


@contextlib.contextmanager
def _working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_airbench94(data, folder: Path, seeds=(0,), warmup: bool = True) -> list[dict]:
    """Train airbench94 once per seed on `data` (written to `folder` first) and score it with its own
    test-time augmentation (level 2). Each row: seed, test accuracy, seconds (training + TTA
    evaluation, timed with CUDA synchronisation, after one untimed warm-up run)."""
    reason = cannot_run()
    if reason is not None:
        raise RuntimeError(reason)
    import airbench

    write_airbench_data(data, folder)
    rows = []
    with _working_directory(Path(folder)):
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        if warmup:
            airbench.warmup94(verbose=False)
        for seed in seeds:
            torch.manual_seed(seed)
            train_loader = airbench.CifarLoader("cifar10", train=True, batch_size=1024,
                                                aug={"flip": True, "translate": 2}, altflip=True)
            torch.cuda.synchronize()
            started = time.perf_counter()
            model = airbench.train94(train_loader, verbose=False)
            accuracy = airbench.evaluate(model, test_loader, tta_level=2)
            torch.cuda.synchronize()
            rows.append({"seed": seed, "test_accuracy": float(accuracy), "seconds": time.perf_counter() - started})
    return rows
